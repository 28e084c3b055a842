"""cuBLAS provider of ``perspective_cross_entropy``: vendor GEMMs, mindcore's fused row pass.

Same provider signature and semantics as ``mindcore.reference.perspective_cross_entropy``.

The three GEMMs (6*N*d*V, the whole floor) run where no hand tuning is needed: cuBLAS through
``torch.mm``. What no library does runs in one Triton kernel per token chunk of R rows:

  torch.mm     L = H_c W^T, fp32 (R x V). 16-bit inputs: a tensor-core GEMM with an fp32 output
               (``out_dtype``): fp32 accumulation, and no logit rounded to 16 bits before the softmax.
  _row_kernel  one program per row. Pass 1: blockwise online max / sum of exp -> lse, the target
               logit, the token's CE. Pass 2 (only if a gradient is wanted): G = w_p/n_p * (softmax -
               onehot) in the input dtype, written *in place* over the row's own fp32 bytes: a 16-bit
               G is an (R, V) view of the same buffer with row stride 2V elements, which cuBLAS reads
               as its leading dimension. No second R x V buffer.
  torch.mm     grad_H[c] = G W                                  (only if hidden needs a gradient)
  torch.addmm  grad_W (+)= G^T H_c, fp32 output/accumulation     (only if the weight needs one)

Then the per-path sums (index_add of the per-token CE), path means, weighted loss and inertia update:
a few P- and S-sized ops, no host sync. float16: G is pre-scaled by a power of two computed on the
device (``grad_prescale``) and its gradients come back in fp32, as in the fused Triton provider.
Without an fp32-output 16-bit GEMM (CPU under the interpreter, torch < 2.8) the GEMMs run in fp32 on
upcast operands: correct, slower, for tests and old installs.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from mindcore.reference.perspective_cross_entropy import (finish, grad_dtype, path_counts,
                                                          token_scale)

from ._provider_op import provider_op
from .perspective_cross_entropy import _cast, _interpreting, grad_prescale

# fp32 logits held at once (the chunk). 960 MiB: under 1 GB of extra memory at every target head,
# and few chunks (each chunk re-reads and re-writes the fp32 grad_W accumulator: V x d x 8 bytes).
CHUNK_BYTES = int(os.environ.get("MINDCORE_PCE_CHUNK_MB", "960")) << 20
ROW_ALIGN = 128  # chunk rows in whole GEMM tiles


@triton.jit
def _row_kernel(l_ptr, g_ptr, b_ptr, tgt_ptr, scale_ptr, gscale_ptr, lse_ptr, ce_ptr,
                row0, V, stride_l, stride_g, ignore_index,
                HAS_BIAS: tl.constexpr, WRITE_GRAD: tl.constexpr, IN_PLACE_16: tl.constexpr,
                RNE_BF16: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    x_row = l_ptr + r.to(tl.int64) * stride_l
    cols = tl.arange(0, BLOCK)
    t = tl.load(tgt_ptr + row0 + r)
    valid = t != ignore_index
    # Pass 1: one exp per logit (block max first, then one rescale of the running sum per block).
    m = tl.max(tl.full((BLOCK,), float("-inf"), tl.float32), 0)
    s = tl.sum(tl.zeros((BLOCK,), tl.float32), 0)
    for v0 in range(0, V, BLOCK):
        c = v0 + cols
        msk = c < V
        x = tl.load(x_row + c, mask=msk, other=float("-inf"))
        if HAS_BIAS:
            x += tl.load(b_ptr + c, mask=msk, other=0.0)
        m_new = tl.maximum(m, tl.max(x, 0))
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # all -inf so far: no inf - inf
        s = s * tl.exp(m - m_ref) + tl.sum(tl.exp(x - m_ref), 0)
        m = m_new
    lse = tl.where(m == float("-inf"), 0.0, m) + tl.log(s)
    hit = valid & (t >= 0) & (t < V)
    x_t = tl.load(x_row + t, mask=hit, other=0.0)
    if HAS_BIAS:
        x_t += tl.load(b_ptr + t, mask=hit, other=0.0)
    tl.store(lse_ptr + row0 + r, lse)
    tl.store(ce_ptr + row0 + r, tl.where(valid, lse - x_t, 0.0))
    if WRITE_GRAD:
        sc = tl.load(scale_ptr + row0 + r) * tl.load(gscale_ptr)
        g_row = g_ptr + r.to(tl.int64) * stride_g
        for v0 in range(0, V, BLOCK):
            c = v0 + cols
            msk = c < V
            x = tl.load(x_row + c, mask=msk, other=0.0)
            if HAS_BIAS:
                x += tl.load(b_ptr + c, mask=msk, other=0.0)
            g = sc * (tl.exp(x - lse) - tl.where(c == t, 1.0, 0.0))
            if IN_PLACE_16:
                # 16-bit stores of this block land on the first half of its fp32 bytes: every
                # warp's loads of the block must be done before any store (later blocks lie above).
                tl.debug_barrier()
            tl.store(g_row + c, _cast(g, g_ptr.dtype.element_ty, RNE_BF16), mask=msk)


@functools.cache
def _fp32_out_gemm(device_type: str, dtype: torch.dtype) -> bool:
    """Whether torch here has 16-bit GEMMs with an fp32 output (``mm/addmm(out_dtype=)``: CUDA, torch >= 2.8)."""
    if device_type != "cuda":
        return False
    try:
        a = torch.ones(16, 16, dtype=dtype, device=device_type)
        c = torch.zeros(16, 16, dtype=torch.float32, device=device_type)
        torch.addmm(c, a, a, out_dtype=torch.float32, out=c)
        return torch.mm(a, a, out_dtype=torch.float32).dtype == torch.float32
    except (TypeError, RuntimeError, NotImplementedError):
        return False


def _gemm_f32(a, b, out, accumulate=False):
    """out (fp32) (+)= a @ b for 16-bit a, b: fp32-output tensor-core GEMM where torch has one."""
    if _fp32_out_gemm(a.device.type, a.dtype):
        if accumulate:
            return torch.addmm(out, a, b, out_dtype=torch.float32, out=out)
        return torch.mm(a, b, out_dtype=torch.float32, out=out)
    if accumulate:
        return out.addmm_(a.float(), b.float())
    return torch.mm(a.float(), b.float(), out=out)


def _chunk_rows(n, v):
    max_rows = max(1, CHUNK_BYTES // (4 * max(v, 1)))
    if max_rows >= ROW_ALIGN:
        max_rows = max_rows // ROW_ALIGN * ROW_ALIGN
    per_chunk = triton.cdiv(n, triton.cdiv(max(n, 1), max_rows))  # balanced: no starved tail chunk
    return min(max_rows, triton.cdiv(per_chunk, ROW_ALIGN) * ROW_ALIGN) if max_rows >= ROW_ALIGN else max_rows


def _launch(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count,
            path_slots, ignore_index, momentum, output_mask, chunk_rows: Optional[int] = None):
    dev = hidden.device
    guard = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with guard:  # Triton launches on the current device
        return _launch_here(hidden, weight, bias, targets, path_ids, path_weights, inertia_value,
                            inertia_count, path_slots, ignore_index, momentum, output_mask, chunk_rows)


def _launch_here(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count,
                 path_slots, ignore_index, momentum, output_mask, chunk_rows):
    n, d = hidden.shape
    v = weight.shape[0]
    num_paths = path_weights.shape[0]
    dev, dt = hidden.device, hidden.dtype
    hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
    b32 = None if bias is None else bias.float().contiguous()
    need_h, need_w, need_b = (bool(x) for x in output_mask)
    need_b = need_b and bias is not None
    grad = need_h or need_w or need_b
    lowp = dt != torch.float32
    gd = grad_dtype(dt)
    f32 = dict(dtype=torch.float32, device=dev)

    path_tokens = path_counts(targets, path_ids, num_paths, ignore_index)
    scale = token_scale(targets, path_ids, path_weights, path_tokens, ignore_index).contiguous()
    gscale, inv_gscale = grad_prescale(scale, dt)
    fast16 = lowp and _fp32_out_gemm(dev.type, dt)
    w_logits = weight if (not lowp or fast16) else weight.float()  # fallback: one fp32 copy per call

    rows = max(1, min(n, chunk_rows or _chunk_rows(n, v)))
    starts = range(0, n, rows)
    buf = torch.empty(rows, v, **f32)
    lse = torch.empty(n, **f32)
    token_ce = torch.empty(n, **f32)
    g_h = torch.empty(n, d, dtype=gd, device=dev) if need_h else None
    # grad_W straight into the output when one chunk (or fp32) needs no accumulator, else fp32.
    direct_w = gd != torch.float32 and 0 < n <= rows
    g_w = None
    if need_w:
        g_w = torch.empty(v, d, dtype=dt, device=dev) if direct_w else torch.zeros(v, d, **f32)
    g_b = torch.zeros(v, **f32) if need_b else None
    interp = _interpreting()
    block = 64 if interp else 4096

    for s in starts:
        r = min(rows, n - s)
        hc = hidden[s:s + r]
        L = buf[:r]
        if fast16:
            torch.mm(hc, weight.t(), out_dtype=torch.float32, out=L)
        else:
            torch.mm(hc if not lowp else hc.float(), w_logits.t(), out=L)
        # 16-bit G lives in the first half of each fp32 row: an (r, v) view with row stride 2v.
        G = L.view(dt)[:, :v] if lowp else L
        _row_kernel[(r,)](
            L, G, b32 if b32 is not None else L, targets, scale, gscale, lse, token_ce,
            s, v, L.stride(0), G.stride(0), ignore_index,
            HAS_BIAS=b32 is not None, WRITE_GRAD=grad, IN_PLACE_16=lowp,
            RNE_BF16=interp and dt == torch.bfloat16, BLOCK=block, num_warps=1 if interp else 8)
        if not grad:
            continue
        if need_h:
            out = g_h[s:s + r]
            if lowp and not fast16:  # fallback: fp32 GEMM on the weight converted once per call
                out.copy_(G.float() @ w_logits)
            elif dt == torch.float16:
                torch.mm(G, weight, out_dtype=torch.float32, out=out)
            else:
                torch.mm(G, weight, out=out)
            if dt == torch.float16:
                out.mul_(inv_gscale)
        if need_w:
            if direct_w and (fast16 or not lowp):
                torch.mm(G.t(), hc, out=g_w)
            elif direct_w:
                g_w.copy_(G.t().float() @ hc.float())
            elif not lowp:
                g_w.addmm_(G.t(), hc) if s else torch.mm(G.t(), hc, out=g_w)
            else:
                _gemm_f32(G.t(), hc, g_w, accumulate=s > 0)
        if need_b:
            g_b += G.sum(0, dtype=torch.float32)

    path_sum = torch.zeros(num_paths, **f32).index_add_(0, path_ids, token_ce)
    loss, path_loss, new_value, new_count = finish(
        path_sum, path_tokens, path_weights, inertia_value, inertia_count, path_slots, momentum)
    if dt == torch.float16:  # undo the pre-scale (fp32 grads, see grad_prescale)
        for g in (g_w, g_b):
            if g is not None:
                g.mul_(inv_gscale)
    grads = (g_h, None if g_w is None else g_w.to(gd), None if g_b is None else g_b.to(gd))
    return (loss, path_loss, path_tokens, new_value, new_count) + tuple(
        hidden.new_empty(0) if g is None else g for g in grads)


_op, perspective_cross_entropy = provider_op("perspective_cross_entropy_cublas", _launch)

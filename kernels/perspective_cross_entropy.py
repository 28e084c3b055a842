"""Triton provider of ``perspective_cross_entropy`` (fused LM head + CE + per-path sums + inertia).

Same provider signature and semantics as ``mindcore.reference.perspective_cross_entropy``.

Design. Rows (tokens) are processed in chunks of R so that a chunk's R x V softmax fits a scratch
budget (``SCRATCH_BYTES``). Per chunk, four launches, all stream-ordered (no host sync):

  _logits_kernel       grid R/BM x V/BN   logits tile = H W^T (+ b), fp32 accumulation. Writes
                                          e = exp(logit - tile max) in the input dtype, the per
                                          (row, vocab tile) max and sum of e, and the target logit.
  _rows_kernel         grid R/BR x VSPLIT online logsumexp across the tile stats -> lse, CE, atomic
                                          per-path CE sums; with grads rewrites e in place into
                                          dlogits = w_p / n_p * (softmax - onehot). The last program
                                          of the call (atomic ticket, acq_rel) runs the epilogue:
                                          path_loss, loss and the inertia update.
  _grad_hidden_kernel  grid R/BM x d/BN   grad_H = dlogits @ W          (direct store)
  _grad_weight_kernel  grid V/BM x d/BN   grad_W (+)= dlogits^T @ H_c   (+ grad_b column sums)

Why this and not recompute: the three GEMMs are the 6*N*d*V floor. Recomputing the logits in a
backward costs 8NdV with atomics on grad_W (which then needs a V x d fp32 buffer: 2.1 GB for
Llama-3) or 10NdV with two owner-computes passes. Storing e = exp(logit - tile max) instead of the
logits keeps bf16 storage safe: its relative error is one bf16 rounding of the probability (the
same as a bf16 dlogits), whereas bf16 logits would be off by up to ~0.06 absolute before exp. The
extra memory traffic (write e, read e / write dlogits, two GEMM reads: ~4 bytes x 2 per logit) is
a few ms at H100 bandwidth against ~60-80 ms of tensor-core work at Llama-3 shapes.

grad_W: one chunk -> direct store; several chunks (or float16) -> an fp32 V x d accumulator (never
a running sum rounded to 16 bits once per chunk). float16: dlogits are stored pre-scaled by a
power of two (2^-floor(log2 max w_p/n_p), computed on the device) so small softmax terms stay in
its normal range; the gradient GEMMs undo it in fp32 and the gradients come back in fp32 (the
backward applies grad_output, e.g. a 2^16 loss scale, before their one rounding).
Only the gradients in ``output_mask`` are formed.
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from mindcore.reference.perspective_cross_entropy import grad_dtype, token_scale

from ._provider_op import provider_op

# Softmax-chunk scratch per call (the fp32 grad_W accumulator, when needed, comes on top). 896 MiB
# keeps it (plus ~16 MB of tile stats) under 1 GB at Llama-3-8B (N=16384: 5 chunks of 3328 rows).
SCRATCH_BYTES = int(os.environ.get("MINDCORE_PCE_SCRATCH_MB", "896")) << 20


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _tile_index(pid, num_m, num_n, GROUP_M: tl.constexpr):
    # Grouped ordering: GROUP_M row blocks sweep the columns together so operand strips stay in L2.
    group = GROUP_M * num_n
    first_m = (pid // group) * GROUP_M
    size_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group) % size_m
    pid_n = (pid % group) // size_m
    return pid_m, pid_n


@triton.jit
def _mma(a, b, acc, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    if UPCAST:  # interpreter: its bf16 arithmetic is not exact, products in fp32 are (like the MMA)
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def _cast(x, ty, RNE_BF16: tl.constexpr):
    if RNE_BF16:  # interpreter: its fp32 -> bf16 cast truncates; round to nearest even like the GPU
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(ty)


@triton.jit
def _logits_kernel(h_ptr, w_ptr, b_ptr, tgt_ptr, e_ptr, stat_m_ptr, stat_s_ptr, tlogit_ptr,
                   row0, rows, V, D, n_tiles,
                   HAS_BIAS: tl.constexpr, STORE_E: tl.constexpr, UPCAST: tl.constexpr, RNE_BF16: tl.constexpr,
                   IEEE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                   GROUP_M: tl.constexpr):
    pid_m, pid_n = _tile_index(tl.program_id(0), tl.cdiv(rows, BM), n_tiles, GROUP_M)
    r = pid_m * BM + tl.arange(0, BM)  # chunk-local rows
    c = pid_n * BN + tl.arange(0, BN)
    rmask = r < rows
    cmask = c < V
    hrow = (row0 + r).to(tl.int64) * D
    wcol = c.to(tl.int64) * D
    k = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, D, BK):
        kk = k0 + k
        kmask = kk < D
        a = tl.load(h_ptr + hrow[:, None] + kk[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        b = tl.load(w_ptr + wcol[None, :] + kk[:, None], mask=kmask[:, None] & cmask[None, :], other=0.0)
        acc = _mma(a, b, acc, UPCAST, IEEE)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
    acc = tl.where(cmask[None, :], acc, float("-inf"))
    # Target logit first, so the accumulator can be overwritten by e (register pressure at 128x256).
    t = tl.load(tgt_ptr + row0 + r, mask=rmask, other=-1)
    hit = rmask & (t >= pid_n * BN) & (t < pid_n * BN + BN) & (t < V)
    t_logit = tl.sum(tl.where(c[None, :] == t[:, None], acc, 0.0), axis=1)
    tl.store(tlogit_ptr + row0 + r, t_logit, mask=hit)
    m = tl.max(acc, axis=1)
    e = tl.exp(acc - m[:, None])
    stat = r.to(tl.int64) * n_tiles + pid_n
    tl.store(stat_m_ptr + stat, m, mask=rmask)
    tl.store(stat_s_ptr + stat, tl.sum(e, axis=1), mask=rmask)
    if STORE_E:
        e_ptrs = e_ptr + r.to(tl.int64)[:, None] * V + c[None, :]
        tl.store(e_ptrs, _cast(e, e_ptr.dtype.element_ty, RNE_BF16), mask=rmask[:, None] & cmask[None, :])


@triton.jit
def _epilogue(psum_ptr, pw_ptr, ptok_ptr, ploss_ptr, loss_ptr, val_ptr, cnt_ptr, slots_ptr,
              nval_ptr, ncnt_ptr, P, momentum, one_minus_momentum,
              HAS_SLOTS: tl.constexpr, BP: tl.constexpr):
    # Path sums were added by every program with atomics: read them from L2 (.cg), not L1.
    loss = tl.zeros((BP,), dtype=tl.float32)
    for p0 in range(0, P, BP):
        pp = p0 + tl.arange(0, BP)
        pm = pp < P
        ps = tl.load(psum_ptr + pp, mask=pm, other=0.0, cache_modifier=".cg")
        nt = tl.load(ptok_ptr + pp, mask=pm, other=0)
        w = tl.load(pw_ptr + pp, mask=pm, other=0.0)
        pl = tl.where(nt > 0, ps / tl.maximum(nt, 1).to(tl.float32), 0.0)
        tl.store(ploss_ptr + pp, pl, mask=pm)
        loss += w * pl
    tl.store(loss_ptr, tl.sum(loss, axis=0))
    if HAS_SLOTS:
        # slot sums over paths sharing a slot: a P x P match (P is small; no scratch, no atomics).
        for p0 in range(0, P, BP):
            pp = p0 + tl.arange(0, BP)
            pm = pp < P
            sl = tl.load(slots_ptr + pp, mask=pm, other=-1)
            tracked = pm & (sl >= 0) & (tl.load(ptok_ptr + pp, mask=pm, other=0) > 0)
            s_sum = tl.zeros((BP,), dtype=tl.float32)
            s_tok = tl.zeros((BP,), dtype=tl.int64)
            for q0 in range(0, P, BP):
                qq = q0 + tl.arange(0, BP)
                qm = qq < P
                sq = tl.load(slots_ptr + qq, mask=qm, other=-1)
                nq = tl.load(ptok_ptr + qq, mask=qm, other=0)
                psq = tl.load(psum_ptr + qq, mask=qm, other=0.0, cache_modifier=".cg")
                match = (sl[:, None] == sq[None, :]) & (qm & (sq >= 0) & (nq > 0))[None, :]
                s_sum += tl.sum(tl.where(match, psq[None, :], 0.0), axis=1)
                s_tok += tl.sum(tl.where(match, nq[None, :], 0), axis=1)
            s_loss = s_sum / tl.maximum(s_tok, 1).to(tl.float32)
            upd = tracked & (s_loss == s_loss) & (tl.abs(s_loss) != float("inf"))
            slot = tl.where(tracked, sl, 0)
            v = tl.load(val_ptr + slot, mask=tracked, other=0.0)
            n = tl.load(cnt_ptr + slot, mask=tracked, other=0)
            blended = tl.where(n == 0, s_loss, momentum * v + one_minus_momentum * s_loss)
            # Paths sharing a slot store the same values: benign duplicate writes.
            tl.store(nval_ptr + slot, blended, mask=upd)
            tl.store(ncnt_ptr + slot, n + 1, mask=upd)


@triton.jit
def _rows_kernel(tgt_ptr, pid_ptr, pw_ptr, ptok_ptr, e_ptr, stat_m_ptr, stat_s_ptr, tlogit_ptr,
                 psum_ptr, ticket_ptr, total_programs, gscale_ptr,
                 ploss_ptr, loss_ptr, val_ptr, cnt_ptr, slots_ptr, nval_ptr, ncnt_ptr,
                 row0, rows, V, n_tiles, P, ignore_index, momentum, one_minus_momentum,
                 WRITE_GRAD: tl.constexpr, HAS_SLOTS: tl.constexpr, RNE_BF16: tl.constexpr, BR: tl.constexpr,
                 VSPLIT: tl.constexpr,
                 BT: tl.constexpr, TILE_N: tl.constexpr, BP: tl.constexpr):
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    rmask = r < rows
    stat_row = r.to(tl.int64) * n_tiles
    # logsumexp across vocab tiles: lse = M + log(sum_t s_t exp(m_t - M)).
    big_m = tl.full((BR,), float("-inf"), dtype=tl.float32)
    for t0 in range(0, n_tiles, BT):
        tt = t0 + tl.arange(0, BT)
        msk = rmask[:, None] & (tt < n_tiles)[None, :]
        m = tl.load(stat_m_ptr + stat_row[:, None] + tt[None, :], mask=msk, other=float("-inf"))
        big_m = tl.maximum(big_m, tl.max(m, axis=1))
    big_m = tl.where(rmask, big_m, 0.0)
    total = tl.zeros((BR,), dtype=tl.float32)
    for t0 in range(0, n_tiles, BT):
        tt = t0 + tl.arange(0, BT)
        msk = rmask[:, None] & (tt < n_tiles)[None, :]
        m = tl.load(stat_m_ptr + stat_row[:, None] + tt[None, :], mask=msk, other=float("-inf"))
        s = tl.load(stat_s_ptr + stat_row[:, None] + tt[None, :], mask=msk, other=0.0)
        total += tl.sum(s * tl.exp(m - big_m[:, None]), axis=1)
    lse = big_m + tl.log(tl.where(rmask, total, 1.0))

    t = tl.load(tgt_ptr + row0 + r, mask=rmask, other=ignore_index)
    path = tl.load(pid_ptr + row0 + r, mask=rmask, other=0)
    # An out-of-range path id (unchecked on the GPU unless MINDCORE_DEBUG=1) drops the token rather
    # than write outside the path arrays.
    valid = rmask & (t != ignore_index) & (path >= 0) & (path < P)
    split = tl.program_id(1)
    t_logit = tl.load(tlogit_ptr + row0 + r, mask=valid, other=0.0)
    if split == 0:
        ce = tl.where(valid, lse - t_logit, 0.0)
        tl.atomic_add(psum_ptr + path, ce, mask=valid)

    if WRITE_GRAD:  # this program rewrites vocab tiles split, split + VSPLIT, ...: more loads in flight
        w = tl.load(pw_ptr + path, mask=valid, other=0.0)
        n = tl.load(ptok_ptr + path, mask=valid, other=1)
        scale = tl.where(valid, w / tl.maximum(n, 1).to(tl.float32), 0.0) * tl.load(gscale_ptr)
        e_row = r.to(tl.int64) * V
        for tile in range(split, n_tiles, VSPLIT):
            c = tile * TILE_N + tl.arange(0, TILE_N)
            msk = rmask[:, None] & (c < V)[None, :]
            f = tl.exp(tl.load(stat_m_ptr + stat_row + tile, mask=rmask, other=0.0) - lse)
            ptrs = e_ptr + e_row[:, None] + c[None, :]
            prob = tl.load(ptrs, mask=msk, other=0.0).to(tl.float32) * f[:, None]
            # Target column from the fp32 target logit: p_t - 1 near p_t = 1 would otherwise cancel
            # the bf16 rounding of e into a large relative error (confident tokens are common).
            is_t = (c[None, :] == t[:, None]) & valid[:, None]
            prob = tl.where(is_t, tl.exp(t_logit - lse)[:, None] - 1.0, prob)
            tl.store(ptrs, _cast(scale[:, None] * prob, e_ptr.dtype.element_ty, RNE_BF16), mask=msk)

    # Last program of the whole call (over all chunks) runs the epilogue: the ticket is acq_rel, so
    # every other program's path-sum atomics are visible once it holds the final ticket.
    tl.debug_barrier()
    ticket = tl.atomic_add(ticket_ptr, 1, sem="acq_rel")
    if ticket == total_programs - 1:
        _epilogue(psum_ptr, pw_ptr, ptok_ptr, ploss_ptr, loss_ptr, val_ptr, cnt_ptr, slots_ptr,
                  nval_ptr, ncnt_ptr, P, momentum, one_minus_momentum, HAS_SLOTS, BP)


@triton.jit
def _grad_hidden_kernel(g_ptr, w_ptr, gh_ptr, inv_gscale_ptr, row0, rows, V, D,
                        UPCAST: tl.constexpr, RNE_BF16: tl.constexpr, IEEE: tl.constexpr, BM: tl.constexpr,
                        BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
    pid_m, pid_n = _tile_index(tl.program_id(0), tl.cdiv(rows, BM), tl.cdiv(D, BN), GROUP_M)
    r = pid_m * BM + tl.arange(0, BM)
    dc = pid_n * BN + tl.arange(0, BN)
    rmask = r < rows
    dmask = dc < D
    g_row = r.to(tl.int64) * V
    k = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for v0 in range(0, V, BK):
        vv = v0 + k
        vmask = vv < V
        a = tl.load(g_ptr + g_row[:, None] + vv[None, :], mask=rmask[:, None] & vmask[None, :], other=0.0)
        b = tl.load(w_ptr + vv.to(tl.int64)[:, None] * D + dc[None, :],
                    mask=vmask[:, None] & dmask[None, :], other=0.0)
        acc = _mma(a, b, acc, UPCAST, IEEE)
    acc = acc * tl.load(inv_gscale_ptr)
    out = gh_ptr + (row0 + r).to(tl.int64)[:, None] * D + dc[None, :]
    tl.store(out, _cast(acc, gh_ptr.dtype.element_ty, RNE_BF16), mask=rmask[:, None] & dmask[None, :])


@triton.jit
def _grad_weight_kernel(g_ptr, h_ptr, gw_ptr, gb_ptr, inv_gscale_ptr, row0, rows, V, D,
                        ACCUMULATE: tl.constexpr, HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr,
                        RNE_BF16: tl.constexpr,
                        IEEE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                        GROUP_M: tl.constexpr):
    pid_m, pid_n = _tile_index(tl.program_id(0), tl.cdiv(V, BM), tl.cdiv(D, BN), GROUP_M)
    vr = pid_m * BM + tl.arange(0, BM)  # vocab rows of grad_W: owned by this program
    dc = pid_n * BN + tl.arange(0, BN)
    vmask = vr < V
    dmask = dc < D
    k = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    bias_acc = tl.zeros((BM,), dtype=tl.float32)
    for k0 in range(0, rows, BK):
        kk = k0 + k
        kmask = kk < rows
        a = tl.load(g_ptr + kk.to(tl.int64)[None, :] * V + vr[:, None],
                    mask=vmask[:, None] & kmask[None, :], other=0.0)  # dlogits^T tile
        b = tl.load(h_ptr + (row0 + kk).to(tl.int64)[:, None] * D + dc[None, :],
                    mask=kmask[:, None] & dmask[None, :], other=0.0)
        acc = _mma(a, b, acc, UPCAST, IEEE)
        if HAS_BIAS:
            if pid_n == 0:
                bias_acc += tl.sum(a.to(tl.float32), axis=1)
    unscale = tl.load(inv_gscale_ptr)
    acc = acc * unscale
    bias_acc = bias_acc * unscale
    out = gw_ptr + vr.to(tl.int64)[:, None] * D + dc[None, :]
    omask = vmask[:, None] & dmask[None, :]
    if ACCUMULATE:
        acc += tl.load(out, mask=omask, other=0.0).to(tl.float32)
    tl.store(out, _cast(acc, gw_ptr.dtype.element_ty, RNE_BF16), mask=omask)
    if HAS_BIAS:
        if pid_n == 0:  # fp32 scratch, zero-initialised: accumulate over chunks
            tl.store(gb_ptr + vr, tl.load(gb_ptr + vr, mask=vmask, other=0.0) + bias_acc, mask=vmask)


def _configs(device, dtype, d):
    """Block sizes: tiny under the interpreter, else by GPU generation and dtype."""
    if _interpreting() or device.type != "cuda":
        return dict(mm=dict(BM=16, BN=16, BK=16, GROUP_M=2), bn_d=16, warps=1, stages=1, BR=8, BT=16,
                    BP=16, VSPLIT=2)
    return gpu_configs(torch.cuda.get_device_capability(device)[0], dtype, d)


def gpu_configs(major, dtype, d):
    """GEMM tiles (BM x BN x BK, GROUP_M L2 swizzle) shared by the three GEMM kernels.

    sm90+, 16-bit: 128x256x64, 8 warps, 3 stages (147 KB smem, wgmma, no spills when compiled for
    sm_90a). fp32 (exact, no tensor cores) and older GPUs: smaller tiles that fit shared memory.
    bn_d: tile over d for the gradient GEMMs; 128 when d is not a multiple of 256 (d=896).
    """
    rows = dict(BR=16, BT=128, BP=32, VSPLIT=8)
    bn_d = 256 if d % 256 == 0 else 128
    if dtype == torch.float32:
        return dict(mm=dict(BM=64, BN=128, BK=32, GROUP_M=8), bn_d=128, warps=8, stages=3, **rows)
    if major >= 9:
        return dict(mm=dict(BM=128, BN=256, BK=64, GROUP_M=8), bn_d=bn_d, warps=8, stages=3, **rows)
    return dict(mm=dict(BM=128, BN=128, BK=32, GROUP_M=8), bn_d=128, warps=4, stages=4, **rows)


def _launch(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count,
            path_slots, ignore_index, momentum, output_mask, chunk_rows: Optional[int] = None):
    dev = hidden.device
    # Triton launches on the current device: make it the tensors' one (a non-current GPU otherwise
    # reads foreign pointers).
    guard = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with guard:
        return _launch_here(hidden, weight, bias, targets, path_ids, path_weights, inertia_value,
                            inertia_count, path_slots, ignore_index, momentum, output_mask, chunk_rows)


def grad_prescale(scale, dtype):
    """(gscale, 1 / gscale) as 1-element device tensors: float16 stores dlogits pre-scaled by a power
    of two that brings max |w_p / n_p| into [0.5, 1] (its normal range keeps small softmax terms);
    other dtypes have fp32's exponent range and use 1. No host sync."""
    one = torch.ones(1, dtype=torch.float32, device=scale.device)
    if dtype != torch.float16 or scale.numel() == 0:
        return one, one
    smax = scale.max().reshape(1)
    g = torch.where((smax > 0) & torch.isfinite(smax), torch.exp2(-torch.floor(torch.log2(smax))), one)
    return g, 1.0 / g


def _launch_here(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count,
                 path_slots, ignore_index, momentum, output_mask, chunk_rows):
    n, d = hidden.shape
    v = weight.shape[0]
    num_paths = path_weights.shape[0]
    dev = hidden.device
    hidden, weight = hidden.contiguous(), weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    targets, path_ids = targets.contiguous(), path_ids.contiguous()
    path_weights = path_weights.float().contiguous()
    path_slots = path_slots.contiguous()
    need_h, need_w, need_b = (bool(x) for x in output_mask)
    need_b = need_b and bias is not None
    compute_grad = need_h or need_w or need_b
    cfg = _configs(dev, hidden.dtype, d)
    mm = cfg["mm"]
    launch = dict(num_warps=cfg["warps"], num_stages=cfg["stages"])
    tile_n = mm["BN"]
    n_tiles = triton.cdiv(v, tile_n)
    upcast = _interpreting()
    rne = upcast and hidden.dtype == torch.bfloat16
    ieee = hidden.dtype == torch.float32
    e_dtype = hidden.dtype
    g_dtype = grad_dtype(hidden.dtype)

    # Tokens per path first (scale = w_p / n_p is needed while forming dlogits); no host sync.
    valid = (targets != ignore_index).to(torch.int64)
    path_tokens = torch.zeros(num_paths, dtype=torch.int64, device=dev).index_add_(0, path_ids, valid)
    gscale, inv_gscale = grad_prescale(
        token_scale(targets, path_ids, path_weights, path_tokens, ignore_index), hidden.dtype)

    if chunk_rows is None:
        per_row = v * e_dtype.itemsize if compute_grad else n_tiles * 8
        max_rows = max(mm["BM"], (SCRATCH_BYTES // max(per_row, 1)) // mm["BM"] * mm["BM"])
        # Balanced chunks (no small tail chunk with a starved GEMM grid), rounded up to BM rows.
        per_chunk = triton.cdiv(n, triton.cdiv(max(n, 1), max_rows))
        chunk_rows = min(max_rows, triton.cdiv(per_chunk, mm["BM"]) * mm["BM"])
    rows_c = max(1, min(n, chunk_rows))
    chunks = [(s, min(n, s + rows_c) - s) for s in range(0, n, rows_c)] or [(0, 0)]
    single = len(chunks) == 1

    e_buf = torch.empty((rows_c, v) if compute_grad else (1,), dtype=e_dtype, device=dev)
    stat_m = torch.empty(rows_c, n_tiles, dtype=torch.float32, device=dev)
    stat_s = torch.empty_like(stat_m)
    t_logit = torch.empty(n, dtype=torch.float32, device=dev)
    path_sum = torch.zeros(num_paths, dtype=torch.float32, device=dev)
    ticket = torch.zeros(1, dtype=torch.int32, device=dev)
    loss = torch.empty((), dtype=torch.float32, device=dev)
    path_loss = torch.empty(num_paths, dtype=torch.float32, device=dev)
    new_value, new_count = inertia_value.clone(), inertia_count.clone()
    has_slots = inertia_value.shape[0] > 0

    grad_hidden = torch.empty(n, d, dtype=g_dtype, device=dev) if need_h else None
    grad_weight = gw_target = None
    if need_w or need_b:  # the grad_W kernel also sums the bias gradient
        grad_weight = torch.zeros(v, d, dtype=g_dtype, device=dev) if n == 0 else \
            torch.empty(v, d, dtype=g_dtype, device=dev)
        # fp32 accumulation across chunks; one chunk (or fp32/fp16 grads) writes the output directly.
        gw_target = grad_weight if (single or g_dtype == torch.float32) else \
            torch.empty(v, d, dtype=torch.float32, device=dev)
    grad_bias32 = torch.zeros(v, dtype=torch.float32, device=dev) if need_b else None
    br = cfg["BR"]
    vsplit = min(cfg["VSPLIT"], n_tiles) if compute_grad else 1
    total_programs = sum(max(1, triton.cdiv(rows, br)) * vsplit for _, rows in chunks)
    dummy = path_sum  # stands in for absent optional pointers (never dereferenced)
    for i, (row0, rows) in enumerate(chunks):
        if rows:
            _logits_kernel[(triton.cdiv(rows, mm["BM"]) * n_tiles,)](
                hidden, weight, bias if bias is not None else dummy, targets, e_buf, stat_m, stat_s,
                t_logit, row0, rows, v, d, n_tiles, HAS_BIAS=bias is not None, STORE_E=compute_grad,
                UPCAST=upcast, RNE_BF16=rne, IEEE=ieee, **mm, **launch)
        _rows_kernel[(max(1, triton.cdiv(rows, br)), vsplit)](
            targets, path_ids, path_weights, path_tokens, e_buf, stat_m, stat_s, t_logit,
            path_sum, ticket, total_programs, gscale,
            path_loss, loss, inertia_value, inertia_count, path_slots, new_value, new_count,
            row0, rows, v, n_tiles, num_paths, ignore_index, float(momentum), 1.0 - float(momentum),
            WRITE_GRAD=compute_grad, HAS_SLOTS=has_slots, RNE_BF16=rne, BR=br, VSPLIT=vsplit, BT=cfg["BT"],
            TILE_N=tile_n, BP=cfg["BP"], num_warps=4 if not upcast else 1)
        if not compute_grad or not rows:
            continue
        bm, bk, bn_d = mm["BM"], mm["BK"], cfg["bn_d"]
        if need_h:
            _grad_hidden_kernel[(triton.cdiv(rows, bm) * triton.cdiv(d, bn_d),)](
                e_buf, weight, grad_hidden, inv_gscale, row0, rows, v, d, UPCAST=upcast, RNE_BF16=rne,
                IEEE=ieee, BM=bm, BN=bn_d, BK=bk, GROUP_M=mm["GROUP_M"], **launch)
        if gw_target is not None:
            _grad_weight_kernel[(triton.cdiv(v, bm) * triton.cdiv(d, bn_d),)](
                e_buf, hidden, gw_target, grad_bias32 if need_b else dummy, inv_gscale, row0, rows, v, d,
                ACCUMULATE=i > 0, HAS_BIAS=need_b, UPCAST=upcast, RNE_BF16=rne and gw_target.dtype != torch.float32,
                IEEE=ieee, BM=bm, BN=bn_d, BK=bk, GROUP_M=mm["GROUP_M"], **launch)
    if gw_target is not None and gw_target is not grad_weight:
        grad_weight.copy_(gw_target)
    grads = (grad_hidden if need_h else hidden.new_empty(0), grad_weight if need_w else hidden.new_empty(0),
             grad_bias32.to(g_dtype) if need_b else hidden.new_empty(0))  # distinct: outputs may not alias
    return (loss, path_loss, path_tokens, new_value, new_count) + grads


_op, perspective_cross_entropy = provider_op("perspective_cross_entropy_triton", _launch)

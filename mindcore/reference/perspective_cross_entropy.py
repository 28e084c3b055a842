"""Plain-PyTorch definition of ``perspective_cross_entropy``.

Every provider implements the same functional signature (``PCE_SIGNATURE`` below) and is tested
against :func:`perspective_cross_entropy` here, which is in turn tested against the naive float64
oracle :func:`naive_perspective_cross_entropy` (full logits + autograd).

Provider signature (all tensors on one device; nothing is mutated)::

    impl(hidden, weight, bias, targets, path_ids, path_weights,
         inertia_value, inertia_count, path_slots,
         ignore_index, momentum, output_mask)
    -> (loss, path_loss, path_tokens, new_value, new_count, grad_hidden, grad_weight, grad_bias)

- ``loss``: 0-dim float32, sum_p path_weights[p] * path_loss[p].
- ``path_loss`` (P,) float32: mean CE over the path's non-ignored tokens, 0 where it has none.
- ``path_tokens`` (P,) int64.
- ``new_value`` (S,) float32 / ``new_count`` (S,) int64: the inertia state after this call
  (S may be 0; ``path_slots`` is (P,) int64 with -1 = untracked).
- ``output_mask``: three bools (hidden, weight, bias): which gradients to compute. Only those are
  formed (no grad_weight GEMM for a frozen head, nothing at all under ``no_grad``).
- ``grad_*``: d loss / d input for grad_output = 1; an empty (0,) tensor where the mask is False
  (``grad_bias`` also when ``bias`` is None). dtype: the input's, except float16, whose gradients come
  back in float32 (``grad_dtype``): the loss scale (e.g. GradScaler's 2^16) is only known in the
  backward, and small softmax terms at scale 1 would already be flushed by float16's range.
"""
from __future__ import annotations

import torch

# Rows of logits materialised at once: bounds memory at CHUNK_ELEMS fp32 values (~256 MB).
CHUNK_ELEMS = 1 << 26


def _empty(like):
    return like.new_empty(0)


def grad_dtype(dtype):
    """dtype of a provider's gradients for inputs of ``dtype`` (float16 -> float32, see above)."""
    return torch.float32 if dtype == torch.float16 else dtype


def path_counts(targets, path_ids, num_paths, ignore_index):
    """Non-ignored tokens per path, (P,) int64, without a host sync."""
    valid = (targets != ignore_index).to(torch.int64)
    return torch.zeros(num_paths, dtype=torch.int64, device=targets.device).index_add_(0, path_ids, valid)


def token_scale(targets, path_ids, path_weights, path_tokens, ignore_index):
    """d loss / d token_ce for each token: w[p] / n[p] on valid tokens, 0 on ignored ones."""
    per_path = path_weights.float() / path_tokens.clamp(min=1).float()
    return torch.where(targets != ignore_index, per_path[path_ids], 0.0)


def inertia_update(value, count, path_sum, path_tokens, path_slots, momentum):
    """Functional inertia update (returns new tensors, never mutates its inputs).

    slot_loss[s] = sum of CE sums of the paths with tokens mapped to s / their token count;
    first observation initialises the slot, later ones blend with ``momentum``; a slot whose
    slot_loss is not finite keeps its value and count.
    """
    num_slots = value.shape[0]
    if num_slots == 0:
        return value.clone(), count.clone()
    tracked = (path_slots >= 0) & (path_tokens > 0)
    slot = torch.where(tracked, path_slots, 0)
    slot_sum = torch.zeros(num_slots, dtype=torch.float32, device=value.device).index_add_(
        0, slot, torch.where(tracked, path_sum.float(), 0.0))
    slot_tok = torch.zeros(num_slots, dtype=torch.int64, device=value.device).index_add_(
        0, slot, torch.where(tracked, path_tokens, 0))
    slot_loss = slot_sum / slot_tok.clamp(min=1).float()
    upd = (slot_tok > 0) & torch.isfinite(slot_loss)
    blended = torch.where(count == 0, slot_loss, momentum * value + (1.0 - momentum) * slot_loss)
    return torch.where(upd, blended, value), count + upd.to(count.dtype)


def finish(path_sum, path_tokens, path_weights, value, count, path_slots, momentum):
    """Shared epilogue: per-path means, weighted loss, inertia update."""
    path_loss = torch.where(path_tokens > 0, path_sum / path_tokens.clamp(min=1).float(), 0.0)
    loss = (path_weights.float() * path_loss).sum()
    new_value, new_count = inertia_update(value, count, path_sum, path_tokens, path_slots, momentum)
    return loss, path_loss, new_value, new_count


def perspective_cross_entropy(hidden, weight, bias, targets, path_ids, path_weights,
                              inertia_value, inertia_count, path_slots,
                              ignore_index=-100, momentum=0.9, output_mask=(True, True, True),
                              chunk_rows=None):
    """Chunked reference: never holds more than ``chunk_rows`` x V logits; gradient in the forward."""
    n, d = hidden.shape
    v = weight.shape[0]
    num_paths = path_weights.shape[0]
    dev = hidden.device
    path_tokens = path_counts(targets, path_ids, num_paths, ignore_index)
    scale = token_scale(targets, path_ids, path_weights, path_tokens, ignore_index)
    w32 = weight.float()
    b32 = None if bias is None else bias.float()
    rows = chunk_rows or max(1, min(n, CHUNK_ELEMS // max(v, 1)))
    token_ce = torch.zeros(n, dtype=torch.float32, device=dev)
    need_h, need_w, need_b = output_mask
    need_b = need_b and bias is not None
    compute_grad = need_h or need_w or need_b
    g_h = torch.empty(n, d, dtype=torch.float32, device=dev) if need_h else None
    g_w = torch.zeros(v, d, dtype=torch.float32, device=dev) if need_w else None
    g_b = torch.zeros(v, dtype=torch.float32, device=dev) if need_b else None
    for s in range(0, n, rows):
        e = min(n, s + rows)
        h = hidden[s:e].float()
        logits = h @ w32.t()
        if b32 is not None:
            logits += b32
        tgt = targets[s:e]
        valid = tgt != ignore_index
        safe = torch.where(valid, tgt, 0)
        lse = torch.logsumexp(logits, dim=1)
        ce = lse - logits.gather(1, safe[:, None]).squeeze(1)
        token_ce[s:e] = torch.where(valid, ce, 0.0)
        if compute_grad:
            # dlogits = scale * (softmax - onehot), built in place over the logits buffer.
            g = logits.sub_(lse[:, None]).exp_()
            g.scatter_add_(1, safe[:, None], -valid.float()[:, None])
            g.mul_(scale[s:e, None])
            if g_h is not None:
                g_h[s:e] = g @ w32
            if g_w is not None:
                g_w.addmm_(g.t(), h)
            if g_b is not None:
                g_b += g.sum(0)
    path_sum = torch.zeros(num_paths, dtype=torch.float32, device=dev).index_add_(0, path_ids, token_ce)
    loss, path_loss, new_value, new_count = finish(
        path_sum, path_tokens, path_weights, inertia_value, inertia_count, path_slots, momentum)
    gd = grad_dtype(hidden.dtype)
    grads = tuple(_empty(hidden) if g is None else g.to(gd) for g in (g_h, g_w, g_b))
    return (loss, path_loss, path_tokens, new_value, new_count) + grads


def naive_perspective_cross_entropy(hidden, weight, bias, targets, path_ids, path_weights,
                                    ignore_index=-100):
    """Test oracle: full logits, differentiable through autograd; compute in hidden's dtype.

    Returns (loss, path_loss, path_tokens); call ``loss.backward()`` for the gradients.
    """
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    ce = torch.nn.functional.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="none")
    num_paths = path_weights.shape[0]
    path_tokens = path_counts(targets, path_ids, num_paths, ignore_index)
    path_sum = torch.zeros(num_paths, dtype=ce.dtype, device=ce.device).index_add(0, path_ids, ce)
    path_loss = torch.where(path_tokens > 0, path_sum / path_tokens.clamp(min=1).to(ce.dtype), 0.0)
    loss = (path_weights.to(ce.dtype) * path_loss).sum()
    return loss, path_loss, path_tokens

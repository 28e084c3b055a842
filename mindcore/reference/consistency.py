"""Plain-PyTorch definition of MIND's answer-consistency term (MIND.md section 5).

    L_cons = mean_b  sum_{i<j} alpha[b,i] * alpha[b,j] * mean_a JSD(P[b,i,a] || P[b,j,a])

P[b,k,a] is the student's next-token distribution at answer-span position a after rationale k of
question b. Only the few answer rows are needed (hidden[answer rows] @ lm_head.weight.T), never the
full logits. Paths outside the kept set have alpha = 0 and drop out of the sum.
"""
from __future__ import annotations

import math

import torch

LOG2 = math.log(2.0)


def _kl_to_mixture(logp, logm):
    """sum_v p * (log p - log m), with 0 * log 0 = 0 (p = exp(logp))."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logm), 0.0).sum(-1)


def check_inputs(logits, answer_mask, alpha):
    """The one place for input checks (reference and mindcore op). Returns the (B, K, A) bool mask."""
    name = "answer_consistency"
    for arg, t in (("logits", logits), ("answer_mask", answer_mask), ("alpha", alpha)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {arg} is a {type(t).__name__}; pass a torch.Tensor")
    if logits.dim() != 4:
        raise ValueError(f"{name}: logits has shape {tuple(logits.shape)}; pass (B, K, A, V)")
    if not logits.is_floating_point():
        raise TypeError(f"{name}: logits has dtype {logits.dtype}; pass float32/bfloat16/float16 logits")
    b, k, a, _ = logits.shape
    if answer_mask.is_floating_point() or answer_mask.is_complex():
        # a float mask may be a soft weight: casting 0.3 to True silently would be wrong
        raise TypeError(f"{name}: answer_mask has dtype {answer_mask.dtype}; pass a bool (or integer 0/1) "
                        "mask, e.g. answer_mask > 0.5")
    if answer_mask.dim() == 2 and answer_mask.shape == (b, a):
        answer_mask = answer_mask[:, None, :].expand(b, k, a)
    if answer_mask.shape != (b, k, a):
        raise ValueError(f"{name}: answer_mask has shape {tuple(answer_mask.shape)}; "
                         f"pass ({b}, {k}, {a}) or ({b}, {a})")
    if alpha.shape != (b, k):
        raise ValueError(f"{name}: alpha has shape {tuple(alpha.shape)}; pass ({b}, {k})")
    if not alpha.is_floating_point():
        raise TypeError(f"{name}: alpha has dtype {alpha.dtype}; pass floating path weights, e.g. alpha.float()")
    for arg, t in (("answer_mask", answer_mask), ("alpha", alpha)):
        if t.device != logits.device:
            raise ValueError(f"{name}: {arg} is on {t.device} but logits on {logits.device}; "
                             f"move it with .to(logits.device)")
    return answer_mask.bool()


def answer_consistency(logits, answer_mask, alpha):
    """alpha-weighted pairwise Jensen-Shannon divergence over the answer span.

    logits: (B, K, A, V) logits or log-probabilities (float32 / bfloat16 / float16; computed in fp32).
    answer_mask: (B, K, A) or (B, A) bool; a pair averages over positions valid on both paths.
    alpha: (B, K) path weights (pass them detached for MIND).
    Returns a float32 scalar (mean over the B questions).
    """
    mask = check_inputs(logits, answer_mask, alpha)
    b, k = mask.shape[:2]
    logp = torch.log_softmax(logits.float(), dim=-1)
    alpha = alpha.float()
    total = logits.new_zeros(b, dtype=torch.float32)
    # K(K-1)/2 pairs of (B, A, V): plain autograd keeps every pair's intermediates for backward
    # (~3 GB at the Qwen2.5-0.5B head, B=8 K=8 A=4); mindcore.ops.answer_consistency keeps only logp.
    for i in range(k):
        for j in range(i + 1, k):
            logm = torch.logaddexp(logp[:, i], logp[:, j]) - LOG2
            jsd = 0.5 * (_kl_to_mixture(logp[:, i], logm) + _kl_to_mixture(logp[:, j], logm))  # (B, A)
            both = mask[:, i] & mask[:, j]
            per_q = torch.where(both, jsd, 0.0).sum(-1) / both.sum(-1).clamp(min=1)
            total = total + alpha[:, i] * alpha[:, j] * per_q
    return total.mean() if b else total.sum()


def naive_answer_consistency(logits, answer_mask, alpha):
    """Test oracle: explicit loops over questions, pairs and positions, in logits' dtype (use float64)."""
    b, k, a, _ = logits.shape
    if answer_mask.dim() == 2:
        answer_mask = answer_mask[:, None, :].expand(b, k, a)
    out = logits.new_zeros(())
    for q in range(b):
        for i in range(k):
            for j in range(i + 1, k):
                acc, n = logits.new_zeros(()), 0
                for t in range(a):
                    if not (answer_mask[q, i, t] and answer_mask[q, j, t]):
                        continue
                    p = torch.softmax(logits[q, i, t], -1)
                    r = torch.softmax(logits[q, j, t], -1)
                    m = 0.5 * (p + r)
                    acc = acc + 0.5 * (p * (p / m).log()).sum() + 0.5 * (r * (r / m).log()).sum()
                    n += 1
                if n:
                    out = out + alpha[q, i] * alpha[q, j] * acc / n
    return out / max(b, 1)

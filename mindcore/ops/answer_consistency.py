"""MIND's answer-consistency term with an analytic backward that keeps only log p for backward.

Same definition, signature and errors as ``mindcore.reference.consistency.answer_consistency``:

    L = mean_b  sum_{i<j} alpha[b,i] alpha[b,j] * mean_{a valid on both} JSD(P[b,i,a] || P[b,j,a])

The reference is plain autograd over the pair loop, so autograd keeps every pair's (B, A, V)
intermediates alive until backward. Here the forward runs the pairs without a graph and saves only
logp = log_softmax(logits) (fp32, the size of the logits); backward recomputes each pair's mixture and
accumulates dL/dp analytically: dJSD/dp_i = 0.5 * log(p_i / m) (the terms through m cancel), then one
softmax backward per path. Peak extra memory: logp + the gradient buffer + a few (B, A, V) temporaries.
Terms are selected with torch.where, never multiplied by a 0/1 mask, so NaN/-inf logits at masked
(padding) positions and tokens with p = 0 cannot leak into the gradients.
"""
from __future__ import annotations

import math

import torch

from ..reference.consistency import check_inputs

LOG2 = math.log(2.0)


def _pair(logp, i, j):
    """log m and both log-ratio terms for paths i, j: (B, A, V) each."""
    lp_i, lp_j = logp[:, i], logp[:, j]
    logm = torch.logaddexp(lp_i, lp_j) - LOG2
    return lp_i, lp_j, logm


def _kl_to_mixture(lp, logm):
    """sum_v p (log p - log m) with 0 log 0 = 0."""
    return torch.where(lp > -math.inf, lp.exp() * (lp - logm), 0.0).sum(-1)


class AnswerConsistency(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, mask, alpha):
        b, k = mask.shape[:2]
        with torch.no_grad():
            logp = torch.log_softmax(logits.float(), dim=-1)
            alpha32 = alpha.float()
            per_q = logp.new_zeros(b, k, k)  # symmetric, zero diagonal: per-pair mean JSD
            total = logp.new_zeros(b)
            for i in range(k):
                for j in range(i + 1, k):
                    lp_i, lp_j, logm = _pair(logp, i, j)
                    jsd = 0.5 * (_kl_to_mixture(lp_i, logm) + _kl_to_mixture(lp_j, logm))  # (B, A)
                    both = mask[:, i] & mask[:, j]
                    q = torch.where(both, jsd, 0.0).sum(-1) / both.sum(-1).clamp(min=1)
                    per_q[:, i, j] = q
                    per_q[:, j, i] = q
                    total = total + alpha32[:, i] * alpha32[:, j] * q
            loss = total.mean() if b else total.sum()
        ctx.save_for_backward(logp, mask, alpha32, per_q)
        ctx.logits_dtype, ctx.alpha_dtype = logits.dtype, alpha.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        logp, mask, alpha, per_q = ctx.saved_tensors
        b, k = mask.shape[:2]
        scale = grad_out.float() / max(b, 1)
        grad_logits = grad_alpha = None
        if ctx.needs_input_grad[0]:
            g = torch.zeros_like(logp)  # dL/dp, then in place dL/dlogits
            for i in range(k):
                for j in range(i + 1, k):
                    lp_i, lp_j, logm = _pair(logp, i, j)
                    both = mask[:, i] & mask[:, j]
                    c = scale * alpha[:, i, None] * alpha[:, j, None] / both.sum(-1, keepdim=True).clamp(min=1)
                    c = torch.where(both, 0.5 * c, 0.0)[..., None]  # (B, A, 1)
                    for lp, path in ((lp_i, i), (lp_j, j)):
                        use = both[..., None] & (lp > -math.inf)
                        g[:, path].add_(torch.where(use, lp - logm, 0.0).mul_(c))
                    del logm
            for path in range(k):  # softmax backward: p * (g - sum_v p g), rows never used stay 0
                p = logp[:, path].exp()
                gk = g[:, path]
                gk.sub_((p * gk).sum(-1, keepdim=True)).mul_(p)
                gk.masked_fill_(~mask[:, path, :, None], 0.0)  # NaN logits at padding rows stay out
            grad_logits = g.to(ctx.logits_dtype)
        if ctx.needs_input_grad[2]:
            grad_alpha = (scale * (per_q @ alpha[..., None]).squeeze(-1)).to(ctx.alpha_dtype)
        return grad_logits, None, grad_alpha


def answer_consistency(logits, answer_mask, alpha):
    """alpha-weighted pairwise Jensen-Shannon divergence over the answer span (float32 scalar).

    logits: (B, K, A, V) logits or log-probabilities (float32 / bfloat16 / float16; computed in fp32).
    answer_mask: (B, K, A) or (B, A) bool; a pair averages over positions valid on both paths.
    alpha: (B, K) path weights (MIND passes them detached; a grad is returned if they require one).
    """
    mask = check_inputs(logits, answer_mask, alpha)
    return AnswerConsistency.apply(logits, mask, alpha)

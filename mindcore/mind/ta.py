"""Teaching Assistant (MetaNet, MIND.md section 3) and capability-aware selection (section 5).

Features of a question's K paths -> shared MLP -> synergy (self-attention across the K paths,
switchable for the ablation) -> several scoring heads, averaged -> softplus (positive scores).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def mean_pool(hidden, attention_mask):
    """Default encoder: the student's hidden states (R, L, d) mean-pooled over non-pad tokens, detached."""
    m = attention_mask.to(torch.float32)[..., None]
    return ((hidden.detach().float() * m).sum(1) / m.sum(1).clamp(min=1.0))


class TeachingAssistant(nn.Module):
    def __init__(self, in_dim: int, hidden: int = 64, num_heads: int = 4, num_score_heads: int = 3,
                 synergy: bool = True):
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"TeachingAssistant: hidden={hidden} must be divisible by num_heads={num_heads}")
        self.norm = nn.LayerNorm(in_dim)  # student features drift in scale as it trains
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.synergy = synergy
        if synergy:
            self.attn = nn.MultiheadAttention(hidden, num_heads, batch_first=True)
            self.mix = nn.Linear(2 * hidden, hidden)  # concat(path, context) + linear
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
                                   for _ in range(num_score_heads))

    def forward(self, features, valid=None):
        """features (B, K, in_dim), valid (B, K) bool (paths that exist) -> scores (B, K) > 0."""
        x = self.mlp(self.norm(features.float()))
        if self.synergy:
            pad = None if valid is None else ~valid
            if pad is not None:  # a question with no valid path would make attention NaN: let it see all
                pad = pad & ~pad.all(-1, keepdim=True)
            ctx, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)
            x = x + self.mix(torch.cat([x, ctx], -1))
        raw = torch.stack([h(x).squeeze(-1) for h in self.heads], 0).mean(0)
        return F.softplus(raw)


def _masked_log_softmax(x, valid):
    return torch.log_softmax(x.masked_fill(~valid, float("-inf")), dim=-1)


def meta_loss(scores, target_loss, valid, tau: float = 1.0):
    """Listwise TA objective: KL(softmax(s/tau) || softmax(-L/tau)) per question, target detached.

    Questions with fewer than two valid paths carry no ranking signal and are left out.
    """
    valid = valid.bool()
    log_p = _masked_log_softmax(scores.float() / tau, valid)
    log_q = _masked_log_softmax(-target_loss.detach().float() / tau, valid)
    kl = torch.where(valid, log_p.exp() * (log_p - log_q), 0.0).sum(-1)
    use = (valid.sum(-1) >= 2).float()
    return (kl * use).sum() / use.sum().clamp(min=1.0)


@torch.no_grad()
def select(scores, valid, beta: float = 0.7, tau_s: float = 1.0):
    """Keep k if s_k >= beta * max_j s_j; alpha = softmax over the kept set of s / tau_s (0 elsewhere).

    Returns (alpha (B, K) float32, detached; kept (B, K) bool).
    """
    s = scores.detach().float()
    valid = valid.bool()
    best = s.masked_fill(~valid, float("-inf")).amax(-1, keepdim=True)
    kept = valid & (s >= beta * best)
    alpha = torch.softmax((s / tau_s).masked_fill(~kept, float("-inf")), -1)
    return torch.where(kept, alpha, 0.0), kept


def uniform_weights(valid):
    """Equal weights over a question's valid paths (modes `uniform` and `consistency`)."""
    v = valid.float()
    return v / v.sum(-1, keepdim=True).clamp(min=1.0)


def perspective_normalised(target, inertia, K: int):
    """Ablation target (``ta_target=perspective_normalised``): each path's loss divided by its
    perspective's mean smoothed loss over the questions seen so far, times the overall mean.

    A style whose template words are easy has a low CE on every question; this removes that per-style
    offset so the TA ranks paths by how hard they are for the student relative to their style, in CE units.
    """
    v = inertia.value.view(-1, K)
    seen = (inertia.count.view(-1, K) > 0).float()
    per = (v * seen).sum(0) / seen.sum(0).clamp(min=1.0)
    overall = (v * seen).sum() / seen.sum().clamp(min=1.0)
    return target * (overall / per.clamp(min=1e-6))[None]

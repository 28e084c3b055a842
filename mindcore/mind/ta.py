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


def answer_span_ce(logits, labels, mask):
    """(R, A, V) logits at each path's answer rows, their labels and mask (R, A) -> (mean CE (R,), tokens (R,))."""
    logp = torch.log_softmax(logits.detach().float(), -1)
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    m = mask.float()
    return (nll * m).sum(-1) / m.sum(-1).clamp(min=1.0), mask.sum(-1)


class TATarget:
    """What the TA ranks a question's paths by (config ``ta_target``; lower = better for the student).

    ce (the paper's, MIND.md section 4): the inertia-smoothed path CE (the instantaneous CE under
      mode mind-no-inertia).
    perspective_normalised (ablation): that loss divided by its perspective's mean (``perspective_normalised``).
    answer_span (ablation): the student's CE on the answer span only, smoothed per slot like the path CE
      (its own InertiaState), so template words outside the answer do not count.
    loss_improvement (ablation): minus the decrease of the smoothed path CE at this visit, in CE units
      (= L_real - L_smoothed_before; 0 on a slot's first visit): paths the student is improving on rank first.
    """

    def __init__(self, kind, inertia, K):
        from .. import InertiaState
        self.kind, self.inertia, self.K = kind, inertia, K
        self.answer = (InertiaState(inertia.num_slots, inertia.momentum, device=inertia.device)
                       if kind == "answer_span" else None)

    @property
    def needs_answer_logits(self):
        return self.answer is not None

    def before(self, slots):
        """Snapshot of the smoothed path loss of ``slots`` before this step's update (loss_improvement only)."""
        if self.kind != "loss_improvement":
            return None
        return self.inertia.value[slots].clone(), self.inertia.count[slots] > 0

    def observe_answer(self, logits, labels, mask, slots, reduce=False):
        """Update the answer-span state (``reduce``: sum the observation over ranks first)."""
        ce, tok = answer_span_ce(logits, labels, mask)
        tok = torch.where(torch.isfinite(ce), tok, 0)   # a non-finite path never reaches the state
        ce = torch.nan_to_num(ce, nan=0.0, posinf=0.0, neginf=0.0)
        if reduce:
            from .distributed import slot_observation
            ce, tok = slot_observation(ce, tok, slots, self.answer.num_slots)
            slots = torch.arange(self.answer.num_slots, device=ce.device)
        self.answer.update(ce, tok, slots)

    def __call__(self, path_loss, slots, before=None, instantaneous=False):
        b = path_loss.shape[0]
        if self.kind == "answer_span":
            return self.answer.value[slots].view(b, -1)
        if self.kind == "loss_improvement":
            prev, seen = before
            now = self.inertia.value[slots]
            return torch.where(seen, -(prev - now) / (1.0 - self.inertia.momentum), 0.0).view(b, -1)
        target = path_loss if instantaneous else self.inertia.value[slots].view(b, -1)
        if self.kind == "perspective_normalised":
            target = perspective_normalised(target, self.inertia, self.K)
        return target

    def state_dict(self):
        return {} if self.answer is None else {"answer": self.answer.state_dict()}

    def load_state_dict(self, state):
        if self.answer is not None and "answer" in state:
            self.answer.load_state_dict(state["answer"])

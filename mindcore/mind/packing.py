"""Padding-free batches: the paths of a PathBatch laid end to end in rows of at most ``pack_len`` tokens.

Each path keeps its own position ids (0..n-1, as in the padded layout) and attends only to itself:
a block-diagonal causal mask for SDPA/eager, or no mask and the position-id resets for flash-attn
varlen (transformers derives the sequence boundaries from them). Paths are never split; a path
longer than ``pack_len`` gets a row of its own. Row order stays question-major, so path r of the
padded batch is segment r here.

The trainer reads either layout through the same flat view (``flat_view``): per token the path it
belongs to (-1 = padding), its label, and for every path the flat indices of its answer-span rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .batching import IGNORE, PathBatch


@dataclass
class PackedBatch:
    input_ids: torch.Tensor       # (Rp, Lp)
    position_ids: torch.Tensor    # (Rp, Lp): 0..n-1 within each path; padding continues as its own run
    labels: torch.Tensor          # (Rp, Lp) shifted within each path, -100 on prompt / padding
    segment: torch.Tensor         # (Rp, Lp) index of the path (row of the padded batch), -1 = padding
    answer_flat: torch.Tensor     # (R, A) flat index into Rp * Lp of each answer row
    answer_mask: torch.Tensor     # (R, A)
    path_mask: torch.Tensor       # (R,)
    num_paths: int

    @property
    def attention_mask(self):
        """(Rp, 1, Lp, Lp) bool, True = attend: causal within a path; padding sees only itself."""
        s = self.segment
        lp = s.shape[1]
        causal = torch.ones(lp, lp, dtype=torch.bool, device=s.device).tril()
        same = (s[:, :, None] == s[:, None, :]) & (s[:, :, None] >= 0)
        eye = torch.eye(lp, dtype=torch.bool, device=s.device)
        return ((same & causal) | eye)[:, None]


def pack(batch: PathBatch, pack_len: int) -> PackedBatch:
    lengths = batch.attention_mask.sum(1).tolist()
    rows, cur, used = [], [], 0
    for r, n in enumerate(lengths):   # sequential first fit keeps question-major order
        if cur and used + n > pack_len:
            rows.append(cur)
            cur, used = [], 0
        cur.append(r)
        used += n
    if cur:
        rows.append(cur)
    lp = max(sum(lengths[r] for r in row) for row in rows)
    R, A = batch.input_ids.shape[0], batch.answer_pos.shape[1]
    ids = torch.zeros((len(rows), lp), dtype=torch.long)   # padding ids are never attended to nor scored
    pos = torch.zeros((len(rows), lp), dtype=torch.long)
    labels = torch.full((len(rows), lp), IGNORE, dtype=torch.long)
    seg = torch.full((len(rows), lp), -1, dtype=torch.long)
    answer_flat = torch.zeros((R, A), dtype=torch.long)
    for i, row in enumerate(rows):
        off = 0
        for r in row:
            n = lengths[r]
            ids[i, off:off + n] = batch.input_ids[r, :n]
            pos[i, off:off + n] = torch.arange(n)
            labels[i, off:off + n] = batch.labels[r, :n]   # already shifted within the path
            seg[i, off:off + n] = r
            answer_flat[r] = i * lp + off + batch.answer_pos[r]
            off += n
        pos[i, off:] = torch.arange(lp - off)
    return PackedBatch(ids, pos, labels, seg, answer_flat, batch.answer_mask.clone(), batch.path_mask.clone(), R)


@dataclass
class FlatView:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None   # 2D padding mask, 4D block mask, or None (varlen)
    position_ids: torch.Tensor
    token_path: torch.Tensor              # (N,) path of each token, padding -> 0 (its label is -100)
    token_real: torch.Tensor              # (N,) float 1 for real tokens (feature pooling)
    labels: torch.Tensor                  # (N,)
    answer_flat: torch.Tensor             # (R, A)
    answer_mask: torch.Tensor             # (R, A)
    num_paths: int


def flat_view(batch, varlen: bool = False) -> FlatView:
    """The loss-side view of a padded PathBatch or a PackedBatch. ``varlen``: flash-attn (no mask)."""
    if isinstance(batch, PackedBatch):
        seg = batch.segment.reshape(-1)
        return FlatView(batch.input_ids, None if varlen else batch.attention_mask, batch.position_ids,
                        seg.clamp(min=0), (seg >= 0).float(), batch.labels.reshape(-1), batch.answer_flat,
                        batch.answer_mask, batch.num_paths)
    R, L = batch.input_ids.shape
    return FlatView(batch.input_ids, batch.attention_mask, batch.position_ids,
                    torch.arange(R).repeat_interleave(L), batch.attention_mask.reshape(-1).float(),
                    batch.labels.reshape(-1), torch.arange(R)[:, None] * L + batch.answer_pos,
                    batch.answer_mask, R)


def pool_paths(hidden_flat, token_path, token_real, num_paths):
    """Mean of each path's hidden states over its real tokens, detached (the TA's default encoder)."""
    h = hidden_flat.detach().float() * token_real[:, None]
    s = torch.zeros(num_paths, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, token_path, h)
    n = torch.zeros(num_paths, dtype=h.dtype, device=h.device).index_add_(0, token_path, token_real)
    return s / n.clamp(min=1.0)[:, None]

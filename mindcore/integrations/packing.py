"""Which path (sample) each token belongs to: a batch row, or a sequence inside a packed row.

Packed / padding-free batches are one row ``(1, N)`` of concatenated sequences, described either by
``cu_seq_lens_q`` (flash-attention kwargs: cumulative lengths, no host sync) or by ``position_ids`` that
restart at 0 (one host sync, to count the sequences: the number of paths is a shape).
"""
from __future__ import annotations

import torch


def token_paths(batch: int, seq: int, device, position_ids=None, cu_seq_lens=None):
    """-> (path_ids (batch*seq,) int64, num_paths). A token's path is the sequence its input position is in."""
    if cu_seq_lens is not None and batch == 1:
        cu = cu_seq_lens.to(device=device, dtype=torch.int64)
        num = cu.numel() - 1
        if num < 1:
            raise ValueError("mindcore.integrations: cu_seq_lens_q has fewer than 2 entries; pass the cumulative "
                             "sequence lengths [0, len0, len0+len1, ...] of the packed row")
        pos = torch.arange(seq, device=device)
        return torch.searchsorted(cu[1:], pos, right=True).clamp(max=num - 1), num
    if position_ids is not None and batch == 1 and seq > 1:
        starts = position_ids.reshape(-1).to(device) == 0
        starts[0] = True                      # a row that does not start at 0 still starts a sequence
        path = torch.cumsum(starts.long(), 0) - 1
        return path, int(starts.sum())        # host sync: pass cu_seq_lens_q to avoid it
    return torch.arange(batch, device=device).repeat_interleave(seq), batch

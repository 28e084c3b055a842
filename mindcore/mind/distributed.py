"""torch.distributed glue: process group from torchrun's env, grad/slot all-reduce helpers.

The student runs under DDP; the Teaching Assistant is tiny and stays replicated (its grads are
all-reduced by hand); per-slot loss sums and token counts are all-reduced before the inertia update so
every rank holds the same state.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str = "cpu") -> DistInfo:
    """Join the process group torchrun (or accelerate launch) describes; no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def all_reduce_(tensor, op="sum"):
    if current().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def average_grads_(params):
    """Mean of each parameter's grad across ranks (one flat all-reduce)."""
    info = current()
    grads = [p.grad for p in params if p.grad is not None]
    if not info.enabled or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def slot_observation(path_loss, path_tokens, path_slots, num_slots):
    """Per-slot loss sums and token counts of this rank's paths, all-reduced: (slot_loss, slot_tok)."""
    tracked = (path_slots >= 0) & (path_tokens > 0)
    slot = torch.where(tracked, path_slots, 0)
    slot_sum = torch.zeros(num_slots, dtype=torch.float32, device=path_loss.device).index_add_(
        0, slot, torch.where(tracked, path_loss.float() * path_tokens.float(), 0.0))
    slot_tok = torch.zeros(num_slots, dtype=torch.int64, device=path_loss.device).index_add_(
        0, slot, torch.where(tracked, path_tokens, 0))
    all_reduce_(slot_sum)
    all_reduce_(slot_tok)
    return slot_sum / slot_tok.clamp(min=1).float(), slot_tok

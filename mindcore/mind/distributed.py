"""torch.distributed glue: process group from torchrun's env, grad/slot all-reduce helpers, FSDP2.

The student runs under DDP, or sharded with FSDP2 (``fsdp: true``: one ``fully_shard`` unit per decoder
layer, the rest, LM head included, in the root unit). The Teaching Assistant is tiny and stays
replicated (its grads are all-reduced by hand); per-slot loss sums and token counts are all-reduced
before the inertia update so every rank holds the same state.

Under FSDP2 the root unit keeps its parameters gathered from its forward to the end of the backward
(FSDP2 never reshards the root after forward), so the fused loss may read the head weight right after
the backbone's forward; its gradient is reduce-scattered with the rest of the root unit.
Checkpoints hold full (unsharded, FQN-keyed) state dicts: no shard layout in the file.
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


def barrier():
    """Every rank waits here (no-op without a process group)."""
    if current().enabled:
        dist.barrier()


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


# ---------- FSDP2 ----------
def shard_student(core, model, mp_policy=None):
    """``fully_shard`` each decoder layer of ``model``, then ``core`` (the module whose forward runs the
    backbone) as the root unit; the parameters become DTensors in place."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from ..integrations.fsdp import decoder_layers
    mp = mp_policy or MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=mp)
    fully_shard(core, mp_policy=mp)
    return core


def clip_grad_norm_(params, max_norm, device=None):
    """clip_grad_norm_ that also takes DTensor (FSDP2) grads: the total norm as a plain 0-d tensor."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros((), device=device)
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if hasattr(norm, "full_tensor"):        # a DTensor: the sum over shards needs one all-reduce
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, **kw)


def full_state(model, opt=None):
    """(model, optimiser) state dicts gathered whole on rank 0 (CPU; empty dicts elsewhere). Collective:
    every rank calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
    ms = get_model_state_dict(model, options=_options(cpu_offload=True))
    os_ = None if opt is None else get_optimizer_state_dict(model, opt, options=_options(cpu_offload=True))
    return ms, os_


def load_full_state(model, model_state, opt=None, opt_state=None):
    """Inverse of full_state on every rank (each passes the whole dicts, e.g. read from the checkpoint)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
    set_model_state_dict(model, model_state, options=_options())
    if opt is not None:
        set_optimizer_state_dict(model, opt, opt_state, options=_options())


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (identity without a process group)."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]

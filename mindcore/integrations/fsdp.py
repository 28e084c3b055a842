"""FSDP2 for a (patched) transformers causal LM: one ``fully_shard`` unit per decoder layer, then the root.

The patch calls the LM head *module* with the loss arguments, so FSDP2's own hooks gather the head
before the fused op and reduce-scatter its gradient after, whether the head sits in the root unit
(the default; required when it is tied to the input embedding) or is its own unit (``head_unit=True``).
Run under ``torchrun`` / ``accelerate launch``; nothing here starts processes.
"""
from __future__ import annotations

import torch

from .causal_lm import _target


def decoder_layers(model) -> list[torch.nn.Module]:
    """The blocks transformers itself never splits (``_no_split_modules``): the FSDP units."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"mindcore.integrations.fsdp.shard: {type(model).__name__} names no decoder layer class "
                         "(_no_split_modules); call torch.distributed.fsdp.fully_shard on its blocks yourself")
    return layers


def shard(model, *, mesh=None, head_unit: bool = False, reshard_after_forward: bool = True, mp_policy=None):
    """``fully_shard`` the decoder layers (and the head if ``head_unit``), then the whole model; returns it."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    m = _target(model)
    kw = dict(mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp_policy or MixedPrecisionPolicy())
    for layer in decoder_layers(m):
        fully_shard(layer, **kw)
    if head_unit:
        head, emb = m.get_output_embeddings(), m.get_input_embeddings()
        if head.weight is emb.weight:
            raise ValueError("mindcore.integrations.fsdp.shard: the LM head is tied to the input embedding; "
                             "keep it in the root unit (head_unit=False)")
        fully_shard(head, **kw)
    fully_shard(model, **kw)
    return model

"""The torch.library wrapping shared by the Triton-driven providers: one custom op per provider over
its launcher (opaque to torch.compile, with the shared fake impl), and the provider entry point."""
from __future__ import annotations

from typing import Optional

import torch


def provider_op(name: str, launch):
    """(custom op ``mindcore::<name>``, provider entry point) for ``launch(*provider signature)``."""

    @torch.library.custom_op(f"mindcore::{name}", mutates_args=())
    def op(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], targets: torch.Tensor,
           path_ids: torch.Tensor, path_weights: torch.Tensor, inertia_value: torch.Tensor,
           inertia_count: torch.Tensor, path_slots: torch.Tensor, ignore_index: int, momentum: float,
           output_mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                             torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return launch(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count,
                      path_slots, ignore_index, momentum, output_mask)

    @op.register_fake
    def _(*args):
        from mindcore.ops.perspective_cross_entropy import fake_outputs  # lazy: avoids an import cycle
        return fake_outputs(*args)

    def entry(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count, path_slots,
              ignore_index=-100, momentum=0.9, output_mask=(True, True, True)):
        """Provider entry point (signature of mindcore.reference.perspective_cross_entropy)."""
        return op(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count,
                  path_slots, int(ignore_index), float(momentum), [bool(x) for x in output_mask])

    return op, entry

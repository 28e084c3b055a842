"""Per-(question, perspective) smoothed loss: the Teaching Assistant's long-term feedback."""
from __future__ import annotations

import torch

from .reference.perspective_cross_entropy import inertia_update


class InertiaState:
    """Holds ``value`` (S,) float32 and ``count`` (S,) int64 for S slots.

    The fused op returns the updated state functionally and :func:`perspective_cross_entropy`
    copies it in only once the whole call has succeeded, so a failed call leaves the state as it was
    and a non-finite loss never reaches it.
    """

    def __init__(self, num_slots: int, momentum: float = 0.9, device=None):
        if not isinstance(num_slots, int) or num_slots < 0:
            raise ValueError(f"num_slots must be a non-negative int, got {num_slots!r}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.value = torch.zeros(num_slots, dtype=torch.float32, device=device)
        self.count = torch.zeros(num_slots, dtype=torch.int64, device=device)

    @property
    def num_slots(self) -> int:
        return self.value.shape[0]

    @property
    def device(self):
        return self.value.device

    def to(self, device):
        self.value = self.value.to(device)
        self.count = self.count.to(device)
        return self

    def update(self, path_loss, path_tokens, path_slots):
        """Apply one observation from per-path mean losses (e.g. after an all-reduce across ranks)."""
        path_sum = path_loss.float() * path_tokens.float()
        value, count = inertia_update(self.value, self.count, path_sum.to(self.device),
                                      path_tokens.to(self.device), path_slots.to(self.device),
                                      self.momentum)
        self.assign(value, count)

    def assign(self, value, count):
        self.value.copy_(value)
        self.count.copy_(count)

    def state_dict(self):
        return {"value": self.value.detach().cpu().clone(), "count": self.count.detach().cpu().clone(),
                "momentum": self.momentum}

    def load_state_dict(self, state):
        for key in ("value", "count", "momentum"):
            if key not in state:
                raise KeyError(f"InertiaState.load_state_dict: missing key {key!r}")
        value, count = torch.as_tensor(state["value"]), torch.as_tensor(state["count"])
        if value.shape != (self.num_slots,) or count.shape != (self.num_slots,):
            raise ValueError(f"InertiaState.load_state_dict: state has {tuple(value.shape)} slots, "
                             f"this state has ({self.num_slots},); build it with the same num_slots")
        self.momentum = float(state["momentum"])
        self.assign(value.to(torch.float32), count.to(torch.int64))

    def __repr__(self):
        return f"InertiaState(num_slots={self.num_slots}, momentum={self.momentum}, device={self.device})"

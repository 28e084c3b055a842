"""Public ``perspective_cross_entropy``: validation, provider dispatch, autograd, inertia commit."""
from __future__ import annotations

import os
from typing import NamedTuple, Optional

import torch

from .. import dispatch
from ..inertia import InertiaState
from ..reference.perspective_cross_entropy import grad_dtype

OP = "perspective_cross_entropy"


class PerspectiveCEOutput(NamedTuple):
    loss: torch.Tensor         # scalar float32, differentiable wrt hidden, weight, bias
    path_loss: torch.Tensor    # (P,) float32, detached
    path_tokens: torch.Tensor  # (P,) int64


def fake_outputs(hidden, weight, bias, targets, path_ids, path_weights,
                 inertia_value, inertia_count, path_slots, ignore_index, momentum, output_mask):
    """Shapes and dtypes of every provider's outputs (the fake impl for torch.compile / opcheck)."""
    num_paths = path_weights.shape[0]
    f32 = dict(dtype=torch.float32, device=hidden.device)
    gd = grad_dtype(hidden.dtype)
    grads = tuple(torch.empty(t.shape, dtype=gd, device=t.device) if (need and t is not None)
                  else hidden.new_empty(0) for need, t in zip(output_mask, (hidden, weight, bias)))
    return (torch.empty((), **f32), torch.empty(num_paths, **f32),
            torch.empty(num_paths, dtype=torch.int64, device=hidden.device),
            torch.empty_like(inertia_value), torch.empty_like(inertia_count)) + grads


class _Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, path_ids, path_weights,
                inertia_value, inertia_count, path_slots, ignore_index, momentum, output_mask, impl):
        (loss, path_loss, path_tokens, new_value, new_count,
         g_hidden, g_weight, g_bias) = impl(hidden, weight, bias, targets, path_ids, path_weights,
                                            inertia_value, inertia_count, path_slots,
                                            ignore_index, momentum, list(output_mask))
        ctx.output_mask = output_mask
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(g_hidden, g_weight, g_bias)
        ctx.mark_non_differentiable(path_loss, path_tokens, new_value, new_count)
        return loss, path_loss, path_tokens, new_value, new_count

    @staticmethod
    def backward(ctx, g_loss, *unused):
        # The gradient was formed in the forward for grad_output = 1: scale it in place, so the
        # backward allocates nothing (a copy would be a second V x d weight gradient).
        if getattr(ctx, "consumed", False):
            raise RuntimeError("perspective_cross_entropy: backward ran twice through the same call "
                               "(retain_graph=True); call the op again for a second backward")
        ctx.consumed = True
        # float16 gradients arrive in float32: the scale is applied before their one rounding.
        grads = tuple(g.mul_(g_loss).to(dt) if (made and need) else None for g, made, need, dt in
                      zip(ctx.saved_tensors, ctx.output_mask, ctx.needs_input_grad[:3], ctx.dtypes))
        return grads + (None,) * 10


def _fail(arg, problem, fix):
    raise ValueError(f"perspective_cross_entropy: {arg} {problem}; {fix}")


def _check(hidden, weight, bias, targets, path_ids, path_weights, inertia, path_slots, ignore_index):
    """Shape / dtype / device checks (free); value-range checks only where they cost no GPU sync."""
    for name, t in (("hidden", hidden), ("weight", weight), ("targets", targets),
                    ("path_ids", path_ids), ("path_weights", path_weights)):
        if not isinstance(t, torch.Tensor):
            _fail(name, f"is a {type(t).__name__}", "pass a torch.Tensor")
    if hidden.dim() != 2:
        _fail("hidden", f"has shape {tuple(hidden.shape)}", "pass (N, d) final hidden states (flatten batch and sequence)")
    if hidden.dtype not in dispatch.FLOAT_DTYPES:
        _fail("hidden", f"has dtype {hidden.dtype}", "use float32, bfloat16 or float16")
    n, d = hidden.shape
    if weight.dim() != 2 or weight.shape[1] != d:
        _fail("weight", f"has shape {tuple(weight.shape)} for hidden width d={d}", "pass the LM head weight as (V, d)")
    if weight.dtype != hidden.dtype:
        _fail("weight", f"has dtype {weight.dtype} but hidden has {hidden.dtype}", "cast both to one dtype")
    v = weight.shape[0]
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (v,):
            _fail("bias", f"has shape {tuple(getattr(bias, 'shape', ()))}", f"pass a ({v},) tensor or None")
        if bias.dtype != hidden.dtype:
            _fail("bias", f"has dtype {bias.dtype} but hidden has {hidden.dtype}", "cast it to hidden's dtype")
    for name, t in (("targets", targets), ("path_ids", path_ids)):
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            _fail(name, f"has dtype {t.dtype}", "pass integer (int64) indices")
        if t.shape != (n,):
            _fail(name, f"has shape {tuple(t.shape)} but hidden has N={n} rows", f"pass one entry per row: ({n},)")
    if path_weights.dim() != 1 or path_weights.shape[0] < 1:
        _fail("path_weights", f"has shape {tuple(path_weights.shape)}", "pass (P,) weights, one per path, P >= 1")
    if not path_weights.dtype.is_floating_point:
        _fail("path_weights", f"has dtype {path_weights.dtype}", "pass floating-point weights")
    num_paths = path_weights.shape[0]
    tensors = {"hidden": hidden, "weight": weight, "targets": targets, "path_ids": path_ids,
               "path_weights": path_weights}
    if bias is not None:
        tensors["bias"] = bias
    if inertia is not None:
        if not isinstance(inertia, InertiaState):
            _fail("inertia", f"is a {type(inertia).__name__}", "pass a mindcore.InertiaState or None")
        if path_slots is None:
            _fail("path_slots", "is None while inertia is given", "pass (P,) int64 slot ids, -1 = untracked")
        tensors["inertia"] = inertia.value
    if path_slots is not None:
        if inertia is None:
            _fail("path_slots", "is given without inertia", "pass inertia=mindcore.InertiaState(...) or drop path_slots")
        if path_slots.dtype.is_floating_point or path_slots.shape != (num_paths,):
            _fail("path_slots", f"has shape {tuple(path_slots.shape)} and dtype {path_slots.dtype}",
                  f"pass ({num_paths},) integer slot ids, -1 = untracked")
        tensors["path_slots"] = path_slots
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        _fail("tensors", f"are on several devices {devices}", "move them (and the InertiaState) to one device")
    check_values = (hidden.device.type == "cpu" or os.environ.get("MINDCORE_DEBUG") == "1") \
        and not torch.compiler.is_compiling()
    if check_values:
        bad = (targets != ignore_index) & ((targets < 0) | (targets >= v))
        if bool(bad.any()):
            _fail("targets", f"has values outside [0, {v}) (e.g. {targets[bad][0].item()})",
                  f"use class ids < V={v} or ignore_index={ignore_index} for tokens without a target")
        if n and bool(((path_ids < 0) | (path_ids >= num_paths)).any()):
            _fail("path_ids", f"has values outside [0, {num_paths})", "number paths 0..P-1, P = len(path_weights)")
        if path_slots is not None and bool(((path_slots < -1) | (path_slots >= inertia.num_slots)).any()):
            _fail("path_slots", f"has values outside [-1, {inertia.num_slots})",
                  "use slot ids of the InertiaState, or -1 for untracked paths")


def perspective_cross_entropy(hidden, weight, targets, path_ids, path_weights, *, bias=None,
                              ignore_index: int = -100, inertia: Optional[InertiaState] = None,
                              path_slots=None, provider: Optional[str] = None) -> PerspectiveCEOutput:
    """Fused LM head + per-token CE + per-path means + weighted loss + inertia update.

    ``loss = sum_p path_weights[p] * path_loss[p]``; ``path_weights`` is treated as a constant.
    The inertia state (if given) is updated once per call, only after the call succeeds.
    """
    _check(hidden, weight, bias, targets, path_ids, path_weights, inertia, path_slots, ignore_index)
    _, impl = dispatch.select(OP, hidden.device, hidden.dtype, provider)
    # Only the gradients someone will read: none under no_grad / inference_mode, none for frozen inputs.
    grad_on = torch.is_grad_enabled()
    output_mask = tuple(grad_on and t is not None and t.requires_grad for t in (hidden, weight, bias))
    num_paths = path_weights.shape[0]
    if inertia is not None:
        value, count, momentum = inertia.value, inertia.count, inertia.momentum
        slots = path_slots.to(torch.int64)
    else:
        value = torch.zeros(0, dtype=torch.float32, device=hidden.device)
        count = torch.zeros(0, dtype=torch.int64, device=hidden.device)
        slots, momentum = torch.full((num_paths,), -1, dtype=torch.int64, device=hidden.device), 0.0
    loss, path_loss, path_tokens, new_value, new_count = _Function.apply(
        hidden.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous(),
        targets.to(torch.int64).contiguous(), path_ids.to(torch.int64).contiguous(),
        path_weights.to(torch.float32).contiguous(), value, count, slots.contiguous(),
        int(ignore_index), float(momentum), output_mask, impl)
    if inertia is not None:
        inertia.assign(new_value, new_count)
    return PerspectiveCEOutput(loss, path_loss, path_tokens)


class PerspectiveCrossEntropy(torch.nn.Module):
    """Module form for training code: ``loss_fn(hidden, lm_head.weight, targets, path_ids, path_weights)``.

    With ``num_slots`` it owns an :class:`InertiaState` (saved in its state_dict as buffers).
    """

    def __init__(self, num_slots: int = 0, momentum: float = 0.9, ignore_index: int = -100,
                 provider: Optional[str] = None):
        super().__init__()
        self.ignore_index, self.provider = ignore_index, provider
        self.inertia = InertiaState(num_slots, momentum) if num_slots else None
        if self.inertia is not None:
            self.register_buffer("inertia_value", self.inertia.value)
            self.register_buffer("inertia_count", self.inertia.count)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        if self.inertia is not None:  # keep the state object pointing at the moved buffers
            self.inertia.value, self.inertia.count = self.inertia_value, self.inertia_count
        return out

    def forward(self, hidden, weight, targets, path_ids, path_weights, bias=None, path_slots=None):
        if self.inertia is not None and path_slots is None:
            path_slots = torch.full_like(path_weights, -1, dtype=torch.int64)
        return perspective_cross_entropy(hidden, weight, targets, path_ids, path_weights, bias=bias,
                                         ignore_index=self.ignore_index, inertia=self.inertia,
                                         path_slots=path_slots, provider=self.provider)

"""Provider registry: who can serve an op, in which order, and why the others cannot.

Capability checks return a reason string (None = can serve). Dispatch walks the device's priority
list; an explicit choice (``provider=`` or ``MINDCORE_PROVIDER``) that cannot serve raises with its
reason instead of silently falling back.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import _ext

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# CUDA: the cuBLAS-GEMM providers first (vendor GEMMs at their measured speed without tuning of ours;
# mindcore's kernels do the row pass), the fully fused Triton kernel after them. No GPU run has yet
# measured these against each other; the device check's rows are to decide the order.
PRIORITY = {"cuda": ("cublas", "cuda", "triton", "reference"), "cpu": ("cpu", "reference", "cublas", "triton")}


@dataclass(frozen=True)
class Provider:
    name: str
    reason: Callable[[torch.device, Optional[torch.dtype]], Optional[str]]
    load: Callable[[], Callable]  # returns the implementation (imported lazily)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_reason(module):
    def reason(device, dtype):
        if dtype is not None and dtype not in FLOAT_DTYPES:
            return f"dtype {dtype} not supported"
        if device.type == "cpu" and not _interpreting():
            return "triton runs on CUDA devices (on the CPU only under TRITON_INTERPRET=1)"
        if device.type not in ("cpu", "cuda"):
            return f"no triton support for device {device.type}"
        try:
            import triton  # noqa: F401
        except Exception as exc:
            return f"triton is not importable ({type(exc).__name__}: {exc})"
        return _module_reason(f"mindcore.kernels.{module}")
    return reason


def _module_reason(module):
    """None if ``module`` can be found; else why not. find_spec raises (not returns None) when a
    parent package is missing, e.g. ``mindcore.kernels`` after a failed install: a reason, not a crash."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:
        return f"{module} is not importable ({type(exc).__name__}: {exc})"
    return None if found else f"{module} is not installed"


def _native_reason(op, device_type):
    def reason(device, dtype):
        if device.type != device_type:
            return f"the {device_type} provider serves {device_type} tensors, got {device.type}"
        if dtype is not None and dtype not in FLOAT_DTYPES:
            return f"dtype {dtype} not supported"
        if not _ext.available():
            return f"mindcore._C is not loaded ({_ext.load_error or 'not built'})"
        info = _ext.build_info()
        if device_type == "cuda" and not info.get("cuda"):
            return "mindcore._C was built without CUDA (torch without CUDA or no nvcc at build time)"
        if not hasattr(torch.ops.mindcore, op):
            return f"mindcore._C does not register mindcore::{op}"
        return None
    return reason


def _native_impl(op):
    return lambda: getattr(torch.ops.mindcore, op)


def _module_impl(module, attr):
    return lambda: getattr(importlib.import_module(module), attr)


def _providers_for(op):
    return {
        "reference": Provider("reference", lambda device, dtype: None,
                              _module_impl(f"mindcore.reference.{op}", op)),
        "cpu": Provider("cpu", _native_reason(op, "cpu"), _native_impl(op)),
        "cuda": Provider("cuda", _native_reason(op, "cuda"), _native_impl(op)),
        "triton": Provider("triton", _triton_reason(op), _module_impl(f"mindcore.kernels.{op}", op)),
        # cuBLAS GEMMs (torch.mm) + a Triton row kernel; on the CPU only under the interpreter (tests).
        "cublas": Provider("cublas", _triton_reason(f"{op}_cublas"),
                           _module_impl(f"mindcore.kernels.{op}_cublas", op)),
    }


REGISTRY = {"perspective_cross_entropy": _providers_for("perspective_cross_entropy")}


def _providers(op):
    if op not in REGISTRY:
        raise ValueError(f"unknown op {op!r}; known ops: {sorted(REGISTRY)}")
    return REGISTRY[op]


def reasons(op: str, device="cpu", dtype=None) -> dict:
    """{provider: None if it can serve, else why not}, in the device's priority order."""
    device = torch.device(device)
    providers = _providers(op)
    order = PRIORITY.get(device.type, ("reference",))
    return {name: providers[name].reason(device, dtype) for name in order}


def available_providers(op: str, device="cpu", dtype=None) -> list:
    """Providers that can serve ``op`` on ``device``, best first."""
    return [name for name, why in reasons(op, device, dtype).items() if why is None]


_LOADED: dict = {}
_CHOSEN: dict = {}  # (op, device, dtype, explicit choice, interpreter flag) -> provider name


@torch.compiler.assume_constant_result
def _resolve(op: str, device_type: str, device_index, dtype, provider) -> str:
    """Pick (and import) the provider; torch.compile runs this once at trace time as a constant.

    Cached per call signature and environment, so an eager training loop pays one dict lookup.
    """
    explicit = provider or os.environ.get("MINDCORE_PROVIDER") or None
    key = (op, device_type, device_index, dtype, explicit, _interpreting())
    if key not in _CHOSEN:
        _CHOSEN[key] = _choose(op, device_type, device_index, dtype, explicit)
    return _CHOSEN[key]


def _choose(op, device_type, device_index, dtype, explicit) -> str:
    providers = _providers(op)
    device = torch.device(device_type, device_index) if device_index is not None else torch.device(device_type)
    if explicit:
        if explicit not in providers:
            raise ValueError(f"provider={explicit!r} is unknown; choose one of {sorted(providers)} or None")
        why = providers[explicit].reason(device, dtype)
        if why is not None:
            raise RuntimeError(f"provider {explicit!r} cannot serve {op} on {device} ({dtype}): {why}. "
                               f"Available here: {available_providers(op, device, dtype)}")
        name = explicit
    else:
        name = next((n for n, why in reasons(op, device, dtype).items() if why is None), None)
        if name is None:
            raise RuntimeError(f"no provider can serve {op} on {device}: {reasons(op, device, dtype)}")
    if (op, name) not in _LOADED:
        _LOADED[(op, name)] = providers[name].load()
    return name


def select(op: str, device, dtype, provider: Optional[str] = None):
    """(name, implementation) for this call; traceable by torch.compile without graph breaks."""
    device = torch.device(device)
    name = _resolve(op, device.type, device.index, dtype, provider)
    return name, _LOADED[(op, name)]

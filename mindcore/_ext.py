"""Loads the compiled extension ``mindcore._C``; never raises, records why it is missing."""
from __future__ import annotations

import os

_C = None
load_error = None

if os.environ.get("MINDCORE_SKIP_EXT") == "1":
    load_error = "MINDCORE_SKIP_EXT=1"
else:
    try:
        import importlib

        import torch  # noqa: F401  (the extension links against libtorch)
        _C = importlib.import_module("mindcore._C")
    except Exception as exc:  # ImportError, undefined symbols from a torch mismatch, ...
        _C = None
        load_error = f"{type(exc).__name__}: {exc}"


def available() -> bool:
    return _C is not None


def build_info() -> dict:
    """What the extension was built with (from its pybind11 helper), or why it is absent."""
    if _C is None:
        return {"loaded": False, "reason": load_error or "mindcore._C was not built (MINDCORE_SKIP_BUILD=1?)"}
    info = dict(_C.build_info())
    info["loaded"] = True
    return info

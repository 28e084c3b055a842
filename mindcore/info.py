"""``python -m mindcore.info``: versions, what was built, and which provider serves each op."""
from __future__ import annotations

import platform
import sys

import torch

from . import __version__, _ext, dispatch


def report(devices=None) -> str:
    lines = [f"mindcore {__version__}", f"python {platform.python_version()} ({sys.platform})",
             f"torch {torch.__version__} (cuda {torch.version.cuda}, cuda available: {torch.cuda.is_available()})"]
    try:
        import triton
        lines.append(f"triton {triton.__version__}")
    except Exception as exc:
        lines.append(f"triton: not importable ({type(exc).__name__})")
    for name in ("transformers", "flash_attn", "xformers"):
        try:
            mod = __import__(name)
            lines.append(f"{name} {getattr(mod, '__version__', '?')}")
        except Exception as exc:
            lines.append(f"{name}: not importable ({type(exc).__name__})")
    info = _ext.build_info()
    lines.append("extension mindcore._C: " + (
        ", ".join(f"{k}={v}" for k, v in info.items() if k != "loaded") if info["loaded"]
        else f"not loaded ({info['reason']})"))
    devices = devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    for op in dispatch.REGISTRY:
        for dev in devices:
            lines.append(f"op {op} on {dev}:")
            for name, why in dispatch.reasons(op, dev).items():
                lines.append(f"  {name:<10} {'available' if why is None else 'unavailable: ' + why}")
            best = dispatch.available_providers(op, dev)
            lines.append(f"  -> serves: {best[0] if best else 'none'}")
    return "\n".join(lines)


def main():
    print(report())


if __name__ == "__main__":
    main()

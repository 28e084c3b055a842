"""Drop-in use of mindcore's fused loss from the training code people run (docs/integrations.md).

Nothing here patches anything at import: call ``patch(model)`` (or use the trainer classes).

    import mindcore.integrations as mi
    model = mi.patch(AutoModelForCausalLM.from_pretrained(...))   # loss through the fused op, logits=None
"""
from . import fsdp  # noqa: F401
from .causal_lm import is_patched, patch, unpatch  # noqa: F401
from .families import UnsupportedModelError  # noqa: F401

__all__ = ["patch", "unpatch", "is_patched", "fsdp", "UnsupportedModelError", "MindcoreTrainer",
           "MindcoreSFTTrainer"]


def __getattr__(name):   # the trainer classes import transformers / trl only when asked for
    if name in ("MindcoreTrainer", "MindcoreSFTTrainer"):
        from . import trainers
        return getattr(trainers, name)
    raise AttributeError(f"module 'mindcore.integrations' has no attribute {name!r}")

"""What each model family does to its logits after the LM head, and whether the op can reproduce it.

The fused op computes ``hidden @ W.T + b`` and the cross-entropy of that. A family that rescales the
logits by a constant is served by rescaling the hidden states (``(s*h) @ W.T == s * (h @ W.T)``); a
non-linear change (Gemma-2/3's tanh softcapping) is not, and is refused.
"""
from __future__ import annotations


class UnsupportedModelError(ValueError):
    """The patch cannot compute this model's loss exactly; the message says why and what to do."""


def logit_multiplier(model) -> float:
    """The constant the family multiplies its logits by (1.0 for most); raises for what the op cannot do."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    name = type(model).__name__
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap is not None:
        raise UnsupportedModelError(
            f"mindcore.integrations.patch: {name} soft-caps its logits (final_logit_softcapping={cap}), which the "
            "fused op does not compute; set model.config.final_logit_softcapping = None before patching "
            "(this changes the model's loss) or train this model without the patch")
    scale = 1.0
    for attr in ("logit_scale", "output_multiplier", "lm_head_multiplier"):   # Cohere, Falcon-H1: logits * s
        if getattr(cfg, attr, None) is not None:
            scale *= float(getattr(cfg, attr))
    if getattr(cfg, "logits_scaling", None) is not None:                      # Granite: logits / s
        scale /= float(cfg.logits_scaling)
    return scale

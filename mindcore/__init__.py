"""mindcore: fused kernels and the training loop for MIND multi-perspective CoT distillation."""
from ._ext import build_info  # noqa: F401
from .dispatch import available_providers  # noqa: F401
from .inertia import InertiaState  # noqa: F401
from .ops import answer_consistency  # noqa: F401
from .ops import PerspectiveCEOutput, PerspectiveCrossEntropy, perspective_cross_entropy  # noqa: F401

__version__ = "0.1.0"
__all__ = ["perspective_cross_entropy", "answer_consistency", "PerspectiveCrossEntropy", "PerspectiveCEOutput",
           "InertiaState", "available_providers", "build_info", "__version__"]

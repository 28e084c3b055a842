from .answer_consistency import AnswerConsistency, answer_consistency  # noqa: F401
from .perspective_cross_entropy import (PerspectiveCEOutput, PerspectiveCrossEntropy,  # noqa: F401
                                        perspective_cross_entropy)
from . import _native  # noqa: F401,E402  (fake impls of the compiled ops)

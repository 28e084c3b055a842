from .perspective_cross_entropy import (PerspectiveCEOutput, PerspectiveCrossEntropy,  # noqa: F401
                                        perspective_cross_entropy)

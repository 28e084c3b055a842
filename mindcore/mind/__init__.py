"""The MIND distillation loop: data, teacher, student, batching, evaluation, trainer.

Kept import-light on purpose: ``transformers`` and ``reasoning_gym`` are imported inside the
submodules that need them, so ``import mindcore`` never pulls them in.
"""

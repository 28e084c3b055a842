"""What a skipped (non-finite) step must leave exactly as it found.

The optimisers never step on a bad step, so the weights and Adam moments are safe by construction. Two
things move before the finiteness verdict is known: the inertia state (the fused op updates it inside
the forward, from whichever paths came out finite; also the answer_span ablation's own state) and the Teaching Assistant's gradient window (its
optimiser steps every ``ta_accum_scale`` steps, so gradients of earlier good steps sit in ``.grad``).
A snapshot taken before the step restores both, and the TA window counter, on a skip. The TA window is
checked every step (not only at its end), so a bad gradient is dropped on the step that made it and
never poisons the window's earlier, good contributions.
"""
from __future__ import annotations


class StepGuard:
    def __init__(self, trainer):
        self.value = trainer.inertia.value.clone()
        self.count = trainer.inertia.count.clone()
        self.ta_micro = trainer.ta_micro
        answer = getattr(getattr(trainer, "ta_target", None), "answer", None)   # ablation answer_span's state
        self.answer = None if answer is None else (answer.value.clone(), answer.count.clone())
        self.ta_grads = None
        if trainer.ta is not None:
            self.ta_grads = [None if p.grad is None else p.grad.detach().clone() for p in trainer.ta.parameters()]

    @staticmethod
    def ta_grad_sum(trainer):
        """Sum of the TA's accumulated gradients: non-finite iff any entry is (0-d, no host sync)."""
        import torch
        grads = [p.grad.sum() for p in trainer.ta.parameters() if p.grad is not None] if trainer.ta else []
        return torch.stack(grads).sum() if grads else torch.zeros((), device=trainer.inertia.device)

    def restore(self, trainer):
        trainer.inertia.assign(self.value, self.count)
        trainer.ta_micro = self.ta_micro
        if self.answer is not None:
            trainer.ta_target.answer.assign(*self.answer)
        if self.ta_grads is not None:
            for p, g in zip(trainer.ta.parameters(), self.ta_grads):
                p.grad = g

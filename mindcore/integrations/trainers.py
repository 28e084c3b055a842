"""HF Trainer and TRL SFTTrainer with mindcore's loss: rename the class, nothing else.

Both patch the model (``patch``) and let it compute its own loss, so ``num_items_in_batch`` (gradient
accumulation), packing and ``sample_weights`` (a dataset column / collator key, one float per sample)
behave as in ``patch``. TRL's ``compute_loss_func`` only sees logits, which the patch never builds, so
the SFT trainer goes through the model instead of TRL's own fused head.
"""
from __future__ import annotations

from transformers import Trainer

from .causal_lm import patch


class MindcoreTrainer(Trainer):
    """``transformers.Trainer`` whose model computes its loss with ``perspective_cross_entropy``.

    ``mindcore_options`` are passed to ``patch`` (e.g. ``{"provider": "cpu"}``).
    """

    def __init__(self, model=None, *args, mindcore_options: dict | None = None, **kwargs):
        if model is not None:
            patch(model, **(mindcore_options or {}))
        super().__init__(model, *args, **kwargs)


def _sft_trainer_class():
    from trl import SFTTrainer

    class MindcoreSFTTrainer(SFTTrainer):
        """``trl.SFTTrainer`` (TRL >= 1.x, padding-free / packing included) with mindcore's loss.

        TRL's token-accuracy and entropy metrics need the logits and are not logged; the loss and
        ``num_tokens`` are.
        """

        def __init__(self, *args, mindcore_options: dict | None = None, **kwargs):
            super().__init__(*args, **kwargs)      # TRL loads / wraps (PEFT) the model and adds its own head
            if self.args.loss_type != "nll" or self.label_smoother is not None or self.compute_loss_func is not None:
                raise ValueError("MindcoreSFTTrainer: loss_type must be 'nll' with no label smoothing and no "
                                 "compute_loss_func (the fused loss is plain next-token CE); use trl.SFTTrainer")
            patch(self.model, **(mindcore_options or {}))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            loss, outputs = Trainer.compute_loss(self, model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            if mode == "train":                    # TRL's token counter, as its own compute_loss keeps it
                ref = inputs.get("attention_mask", inputs["input_ids"])
                n = ref.sum() if "attention_mask" in inputs else ref.new_tensor(ref.numel())
                self._total_train_tokens += int(self.accelerator.gather_for_metrics(n).sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    return MindcoreSFTTrainer


def __getattr__(name):   # trl is optional: imported when the class is asked for
    if name == "MindcoreSFTTrainer":
        cls = _sft_trainer_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)

"""LoRA (peft) students: only the adapters train, the frozen LM head still feeds the fused loss."""
import pytest
import torch

from mindcore.mind import batching, data, evaluate
from mindcore.mind.config import TrainConfig
from mindcore.mind.student import add_lora
from mindcore.mind.trainer import Trainer
from tiny_setup import PERSP, splits, tiny_model


def test_lora_trains_only_adapters():
    pytest.importorskip("peft")
    d, tk = splits()
    cfg = TrainConfig(mode="mind", perspectives=PERSP, steps=2, questions_per_step=2, warmup_steps=1,
                      ta_warmup_steps=1, ta_hidden=16, max_len=160, lora_r=4, log_every=1000)
    model = add_lora(tiny_model(tk), r=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def batch_fn(records, golden_only=None):
        return batching.make_batch(records, tk, PERSP, cfg.max_len, golden_only=golden_only)
    tr = Trainer(cfg, model, tk, d["train"], data.PERSPECTIVES, batch_fn,
                 lambda m, t, r: evaluate.evaluate(m, t, r, max_new_tokens=4), log=lambda m: None)
    tr.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert not model.lm_head.weight.requires_grad
    assert 0 <= tr.evaluate(d["id_eval"], max_n=2)["accuracy"] <= 1

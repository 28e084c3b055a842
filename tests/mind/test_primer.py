"""The arithmetic primer: text no teacher wrote, deterministic, shared by every mode of a seed."""
import random

import torch

from mindcore.mind import primer
from mindcore.mind.config import TrainConfig
from mindcore.mind.trainer import Trainer

from tiny_setup import splits, tiny_model


def test_primer_rows_hold_facts_and_copies_but_no_split_text():
    d, _ = splits()
    text = " ".join(primer.rows(random.Random(0), 50))
    assert "12-5=7" in primer.facts() and "copy " in text and "Final answer" not in text
    assert not any(r.question in text for s in d.values() for r in s)
    for drill in text.split("copy ")[1:]:
        left, right = drill.split(" : ")
        assert right.startswith(left)


def test_prime_trains_deterministically_and_caches_per_seed():
    _, tk = splits()
    primer._CACHE.clear()
    a, b, c = tiny_model(tk, 0), tiny_model(tk, 0), tiny_model(tk, 0)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    primer.prime(a, tk, steps=3, seed=0)
    assert len(primer._CACHE) == 1
    primer._CACHE.clear()
    primer.prime(b, tk, steps=3, seed=0)      # recomputed: the same weights
    primer.prime(c, tk, steps=3, seed=0)      # from the cache: the same weights
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k])
        torch.testing.assert_close(v, c.state_dict()[k])
    assert any(not torch.equal(v, before[k]) for k, v in a.state_dict().items())


def test_every_mode_starts_from_the_same_primed_student():
    d, tk = splits()
    primer._CACHE.clear()
    base = dict(student="tiny-llama", n_train=16, primer_steps=2, steps=1, max_len=160, vocab_size=300)
    w = [Trainer.from_config(TrainConfig(**base, mode=m), splits=d, tokenizer=tk, log=lambda s: None)
         .model.state_dict()["lm_head.weight"] for m in ("single", "mind")]
    torch.testing.assert_close(w[0], w[1])
    plain = Trainer.from_config(TrainConfig(**dict(base, primer_steps=0), mode="single"), splits=d, tokenizer=tk,
                                log=lambda s: None).model.state_dict()["lm_head.weight"]
    assert not torch.equal(plain, w[0])

"""Shared tiny setup for the trainer tests: built-in data, offline tokenizer, a 2-layer hidden-32 Llama."""
from __future__ import annotations

import functools

import torch

from mindcore.mind import batching, data, evaluate, tokenizer
from mindcore.mind.config import TrainConfig
from mindcore.mind.trainer import Trainer

PERSP = list(data.PERSPECTIVES[:4])


@functools.lru_cache(maxsize=None)
def splits():
    d = data.builtin_dataset(seed=0, n_train=16, n_id=6, n_ood=6)
    tk = tokenizer.build_tokenizer(tokenizer.training_texts(d["train"]), vocab_size=300)
    return d, tk


def tiny_model(tk, seed=0, tie=False):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tk), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      tie_word_embeddings=tie, bos_token_id=tk.bos_token_id, eos_token_id=tk.eos_token_id,
                      pad_token_id=tk.pad_token_id, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg)


def make_trainer(tie=False, **overrides) -> Trainer:
    """``tie``: the LM head shares the input embedding (SmolLM-style)."""
    d, tk = splits()
    kw = dict(mode="mind", perspectives=PERSP, steps=4, questions_per_step=2, accum=1, lr=3e-3,
              warmup_steps=1, ta_warmup_steps=2, ta_hidden=16, log_every=1000, max_len=160, eval_max_n=4,
              eval_max_new_tokens=8)
    kw.update(overrides)
    cfg = TrainConfig(**kw)
    model = tiny_model(tk, cfg.seed, tie)
    if cfg.lora_r:
        from mindcore.mind.student import add_lora
        model = add_lora(model, cfg.lora_r)

    def batch_fn(records, golden_only=None):
        return batching.make_batch(records, tk, PERSP, cfg.max_len, golden_only=golden_only)

    def evaluate_fn(m, t, recs):
        return evaluate.evaluate(m, t, recs, max_new_tokens=cfg.eval_max_new_tokens, batch_size=8)
    return Trainer(cfg, model, tk, d["train"], data.PERSPECTIVES, batch_fn, evaluate_fn, log=lambda m: None)


def save_tiny_teacher(d, questions):
    """A 1-layer hidden-32 Llama teacher with a tokenizer over ``questions`` and the style words, saved
    to ``d`` (a real local model directory for the synthesize tests); returns ``d``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mindcore.mind.synthesize import STYLE
    tok = tokenizer.build_tokenizer([q["question"] for q in questions] * 4 + list(STYLE.values()), vocab_size=300)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d

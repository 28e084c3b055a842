"""Arithmetic primer (OURS): a short pretraining of the from-scratch student, the same for every mode.

The paper distils into pretrained students that already copy and add; the built-in tiny student starts
from nothing, and within the demo's step budget every mode stayed at chance (it had not learnt to copy
the question's numbers). The primer trains it first, with the plain LM loss, on text no teacher wrote:
one-digit facts over the running totals chain_sum reaches (``12-5=7``) and copy drills of random chains
(``copy 4 + 0 + 5 : 4 + 0 + 5``). No question, rationale or answer of any split is in it.
Config ``primer_steps`` (0 = off, the default); one primed state per (seed, settings) is cached in
process, so the modes of a study's seed share it instead of recomputing it.
"""
from __future__ import annotations

import random

import torch

_CACHE: dict = {}


def facts() -> list[str]:
    return [f"{a}{op}{b}={a + b if op == '+' else a - b}" for a in range(-27, 37) for b in range(10) for op in "+-"]


def _copy_drill(rng: random.Random) -> str:
    n = rng.randint(2, 5)
    expr = " ".join([str(rng.randint(0, 9))] + [t for _ in range(n - 1) for t in (rng.choice("+-"), str(rng.randint(0, 9)))])
    return f"copy {expr} : {expr}"


def rows(rng: random.Random, count: int, width: int = 24) -> list[str]:
    """``count`` training texts, each ~``width`` words of shuffled facts and copy drills."""
    pool = facts()
    out = []
    for _ in range(count):
        parts = [rng.choice(pool) if rng.random() < 0.5 else _copy_drill(rng) for _ in range(width // 4)]
        out.append(" ".join(parts))
    return out


def prime(model, tokenizer, steps: int, seed: int, lr: float = 3e-3, batch: int = 16, device="cpu"):
    """Train ``model`` in place for ``steps`` LM steps on primer rows (AdamW, linear warm-up, constant lr)."""
    key = (seed, steps, lr, batch, tuple(sorted(tokenizer.get_vocab().items())), str(device))
    if key in _CACHE:
        model.load_state_dict(_CACHE[key])
        return model
    rng = random.Random(seed * 7919 + 13)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20)
        enc = tokenizer(rows(rng, batch), return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    _CACHE[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model

"""Greedy-decoding evaluation: generate from the training prompt, extract the final answer, check it."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .data import FINAL_PREFIX

_NUM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def extract_answer(text: str | None) -> str | None:
    """The text after the last "Final answer:" up to the end of its line (None when absent/empty)."""
    if not text or FINAL_PREFIX not in text:
        return None
    ans = text.rsplit(FINAL_PREFIX, 1)[1].split("\n", 1)[0].strip()
    return ans or None


def _normalise(s: str) -> str:
    s = s.strip().rstrip(".").strip()
    if s.startswith("$") or s.endswith("$"):
        s = s.strip("$").strip()
    return " ".join(s.split())


def _as_number(s: str) -> Decimal | None:
    t = s.replace(",", "").replace(" ", "")
    if not _NUM.match(t):
        return None
    try:
        return Decimal(t)
    except InvalidOperation:
        return None


def answers_match(pred: str | None, gold: str | None) -> bool:
    """Normalised comparison: numbers numerically ("+07.0" == "7", "1,000" == "1000"), text case-folded."""
    if pred is None or gold is None:
        return False
    p, g = _normalise(str(pred)), _normalise(str(gold))
    pn, gn = _as_number(p), _as_number(g)
    if pn is not None and gn is not None:
        return pn == gn
    return p.casefold() == g.casefold()


def evaluate(model, tokenizer, records, max_new_tokens: int = 64, batch_size: int = 32, device="cpu",
             keep_examples: int = 8) -> dict:
    """Greedy accuracy of ``model`` on ``records`` (prompt = the question, as in training).

    Returns {"accuracy", "n", "correct", "outcomes": [bool per record, in order] (for paired
    comparisons across modes), "examples": [...], "by_variant": {variant: accuracy}}.
    """
    import torch

    from .batching import encode_prompt

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    correct, examples, by_var, outcomes = 0, [], {}, []
    try:
        for s in range(0, len(records), batch_size):
            chunk = records[s:s + batch_size]
            prompts = [encode_prompt(tokenizer, r.question) for r in chunk]
            width = max(map(len, prompts))
            # left padding: every prompt ends at the same column, so generation continues each one
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(prompts):
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            with torch.no_grad():
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     do_sample=False, max_new_tokens=max_new_tokens,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_id)
            texts = tokenizer.batch_decode(out[:, width:].cpu(), skip_special_tokens=True)
            for r, text in zip(chunk, texts):
                pred = extract_answer(text)
                ok = answers_match(pred, r.answer)
                correct += ok
                outcomes.append(bool(ok))
                var = r.extra.get("variant", r.domain)
                hit, tot = by_var.get(var, (0, 0))
                by_var[var] = (hit + ok, tot + 1)
                if len(examples) < keep_examples:
                    examples.append({"question": r.question, "gold": r.answer, "pred": pred, "text": text})
    finally:
        model.train(was_training)
    n = len(records)
    return {"accuracy": correct / n if n else 0.0, "n": n, "correct": int(correct), "outcomes": outcomes,
            "examples": examples,
            "by_variant": {k: h / t for k, (h, t) in by_var.items()}}

"""`mindcore synthesize`: MIND records from a real teacher (any local Hugging Face causal LM directory).

Per question the teacher is prompted once per perspective (batched greedy generation, left padding);
each answer is judged against the gold answer (answers_match); a kept rationale is cut after its last
"Final answer:" line, which is rewritten canonically (``final_line(gold)``) so every path of a
question ends in the same tokens. Questions the teacher solves in every perspective are "easy" and
kept with probability ``easy_keep``; questions with no correct path are dropped (and counted).
"""
from __future__ import annotations

import json
import os
import random
import sys
from typing import Callable, Sequence

from .data import FINAL_PREFIX, PERSPECTIVES, DataError, Path, Record, final_line, save_jsonl
from .evaluate import answers_match, extract_answer

STYLE = {
    "formal-symbolic": "Use formal symbolic steps: name each intermediate value and write equations.",
    "intuitive": "Explain it intuitively in plain words, the way you would think it through in your head.",
    "decomposition": "Break the problem into independent parts, solve each part, then combine them.",
    "planning": "First state a short plan, then carry it out step by step.",
    "analogy": "Use an analogy (for example walking along a number line) to reach the result.",
    "socratic": "Ask yourself short questions and answer each one until the result follows.",
    "contrastive": "Name a tempting wrong approach, say why it fails, then solve it correctly.",
    "counterfactual": "Consider how the result would change if one part were different, then solve the real case.",
}


def teacher_prompt(question: str, perspective: str) -> str:
    return (f"{STYLE[perspective]} Keep it short (a few sentences).\n"
            f"Problem: {question}\n"
            f"End with a last line of the form '{FINAL_PREFIX} <answer>'.")


def canonical_rationale(text: str, gold: str) -> str | None:
    """Cut ``text`` at its last final-answer line and rewrite that line canonically; None if absent."""
    if extract_answer(text) is None:
        return None
    body = text.rsplit(FINAL_PREFIX, 1)[0].rstrip()
    return f"{body}\n{final_line(gold)}" if body else final_line(gold)


def hf_generate_fn(model_dir: str, max_new_tokens: int = 256, batch_size: int = 8, device="cpu") -> Callable:
    """A generate(prompts) -> texts function over a local HF causal LM (greedy, left padding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"      # generation continues every prompt from the same column
    use_chat = getattr(tok, "chat_template", None) is not None

    def generate(prompts: Sequence[str]) -> list[str]:
        out = []
        for s in range(0, len(prompts), batch_size):
            chunk = list(prompts[s:s + batch_size])
            if use_chat:
                chunk = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                 add_generation_prompt=True) for p in chunk]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=not use_chat).to(device)
            with torch.no_grad():
                gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                     pad_token_id=tok.pad_token_id)
            out += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    return generate


def synthesize(model_dir, questions: Sequence[dict], out_path, perspectives: Sequence[str] = PERSPECTIVES,
               max_new_tokens: int = 256, batch_size: int = 8, easy_keep: float = 0.5, seed: int = 0,
               device="cpu", generate_fn: Callable | None = None) -> dict:
    """Write judged records for ``questions`` ({"id","question","answer","domain"}) to ``out_path``.

    ``generate_fn(prompts) -> texts`` replaces the model (``model_dir`` is then unused). Returns stats.
    """
    bad = [p for p in perspectives if p not in STYLE]
    if bad:
        raise ValueError(f"unknown perspectives {bad}; choose from {', '.join(PERSPECTIVES)}")
    for i, q in enumerate(questions):
        miss = [k for k in ("id", "question", "answer", "domain") if not str(q.get(k, "")).strip()]
        if miss:
            raise ValueError(f"question #{i}: field(s) {miss} missing or empty; need id, question, answer, domain")
    gen = generate_fn or hf_generate_fn(str(model_dir), max_new_tokens, batch_size, device)
    prompts = [teacher_prompt(q["question"], p) for q in questions for p in perspectives]
    texts = gen(prompts)
    if len(texts) != len(prompts):
        raise RuntimeError(f"the teacher returned {len(texts)} texts for {len(prompts)} prompts")
    rng = random.Random(seed)
    stats = {"questions": len(questions), "kept": 0, "no_valid_path": 0, "easy_dropped": 0,
             "paths_generated": len(prompts), "paths_kept": 0}
    records, K = [], len(perspectives)
    for qi, q in enumerate(questions):
        gold = str(q["answer"]).strip()
        paths = []
        for k, name in enumerate(perspectives):
            text = texts[qi * K + k]
            if answers_match(extract_answer(text), gold):          # the judge
                paths.append(Path(name, canonical_rationale(text, gold), gold))
        if not paths:
            stats["no_valid_path"] += 1
            continue
        if len(paths) == K and rng.random() >= easy_keep:            # solved every way: easy
            stats["easy_dropped"] += 1
            continue
        extra = {k: v for k, v in q.items() if k not in ("id", "question", "answer", "domain")}
        extra["teacher_pass_rate"] = len(paths) / K
        records.append(Record(str(q["id"]), q["question"], gold, q["domain"], paths, extra))
        stats["paths_kept"] += len(paths)
    stats["kept"] = len(records)
    save_jsonl(records, out_path)
    return stats


def _read_questions(path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}", "<json>", f"malformed JSON ({e.msg}); "
                                    "write one JSON object per line") from None
    return out


def main(argv=None) -> int:
    from ..cli import OneLineParser  # a bad flag is one line, as in every mindcore command
    ap = OneLineParser(prog="mindcore synthesize", description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True, help="local Hugging Face causal LM directory (the teacher)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--questions", help='JSONL of {"id","question","answer","domain"}')
    src.add_argument("--builtin", type=int, metavar="N", help="use N built-in chain_sum training questions")
    ap.add_argument("--out", required=True, help="output MIND JSONL")
    ap.add_argument("--perspectives", default=",".join(PERSPECTIVES), help="comma-separated names")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--easy-keep", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.model_dir):
        raise FileNotFoundError(f"--model-dir {args.model_dir!r} is not a directory; pass a local Hugging Face "
                                f"model directory (nothing is downloaded)")
    if args.questions:
        questions = _read_questions(args.questions)
    else:
        from .teacher import builtin_questions
        questions = builtin_questions(seed=args.seed, n_train=args.builtin, n_id=0, n_ood=0)["train"]
    stats = synthesize(args.model_dir, questions, args.out, [p.strip() for p in args.perspectives.split(",")],
                       args.max_new_tokens, args.batch_size, args.easy_keep, args.seed, args.device)
    print(json.dumps(stats), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

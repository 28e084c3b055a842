"""`mindcore synthesize`: MIND records from a real teacher (any local Hugging Face causal LM directory).

Teachers: a local HF model (``--model-dir``), an OpenAI-compatible server (``--teacher-url``) or vLLM's
offline engine (``--vllm``); see teachers_remote.py. Records are written after every chunk of questions
and ``--resume`` continues a run that stopped.

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

from .data import FINAL_PREFIX, PERSPECTIVES, DataError, Path, Record, final_line
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


def _read_lines(path):
    """JSON objects of a JSONL file written by a run that may have been killed mid-line."""
    out = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    break                       # a torn last line: that question is redone
    return out


def progress_path(out_path) -> str:
    return f"{out_path}.progress"


def _resume_state(out_path, resume: bool):
    """-> (done {id: progress row}, records file handle). Records without a progress row are dropped."""
    prog = progress_path(out_path)
    done = {r["id"]: r for r in _read_lines(prog)} if resume else {}
    kept = [r for r in _read_lines(out_path) if r.get("id") in done] if resume else []
    os.makedirs(os.path.dirname(os.path.abspath(str(out_path))), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:        # rewritten: torn / orphan lines gone
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    with open(prog, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in done.values())
    return done


def _append(path, rows):
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())


def synthesize(model_dir, questions: Sequence[dict], out_path, perspectives: Sequence[str] = PERSPECTIVES,
               max_new_tokens: int = 256, batch_size: int = 8, easy_keep: float = 0.5, seed: int = 0,
               device="cpu", generate_fn: Callable | None = None, *, chunk_questions: int = 32,
               resume: bool = False) -> dict:
    """Write judged records for ``questions`` ({"id","question","answer","domain"}) to ``out_path``.

    ``generate_fn(prompts) -> texts`` replaces the model (``model_dir`` is then unused). Questions go to
    the teacher ``chunk_questions`` at a time; after each chunk its records are appended to ``out_path``
    and one row per question to ``out_path.progress``, so a run that dies keeps what it wrote, and
    ``resume=True`` skips the questions already done. Returns stats over the whole run (resumed part too).
    """
    bad = [p for p in perspectives if p not in STYLE]
    if bad:
        raise ValueError(f"unknown perspectives {bad}; choose from {', '.join(PERSPECTIVES)}")
    for i, q in enumerate(questions):
        miss = [k for k in ("id", "question", "answer", "domain") if not str(q.get(k, "")).strip()]
        if miss:
            raise ValueError(f"question #{i}: field(s) {miss} missing or empty; need id, question, answer, domain")
    ids = [str(q["id"]) for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"question id {dup!r} appears twice; ids must be unique (resume keys on them)")
    if chunk_questions < 1:
        raise ValueError(f"chunk_questions={chunk_questions}; pass >= 1")
    done = _resume_state(out_path, resume)
    todo = [q for q in questions if str(q["id"]) not in done]
    K = len(perspectives)
    gen = None
    if todo:
        gen = generate_fn or hf_generate_fn(str(model_dir), max_new_tokens, batch_size, device)
    for start in range(0, len(todo), chunk_questions):
        chunk = todo[start:start + chunk_questions]
        prompts = [teacher_prompt(q["question"], p) for q in chunk for p in perspectives]
        texts = gen(prompts)
        if len(texts) != len(prompts):
            raise RuntimeError(f"the teacher returned {len(texts)} texts for {len(prompts)} prompts")
        records, progress = [], []
        for qi, q in enumerate(chunk):
            gold = str(q["answer"]).strip()
            paths = [Path(name, canonical_rationale(texts[qi * K + k], gold), gold)
                     for k, name in enumerate(perspectives)
                     if answers_match(extract_answer(texts[qi * K + k]), gold)]     # the judge
            # per-question draw: a resumed run drops the same easy questions as an uninterrupted one
            easy_drop = len(paths) == K and random.Random(f"{seed}:{q['id']}").random() >= easy_keep
            status = "no_valid_path" if not paths else "easy_dropped" if easy_drop else "kept"
            if status == "kept":
                extra = {k: v for k, v in q.items() if k not in ("id", "question", "answer", "domain")}
                extra["teacher_pass_rate"] = len(paths) / K
                records.append(Record(str(q["id"]), q["question"], gold, q["domain"], paths, extra).to_json())
            progress.append({"id": str(q["id"]), "status": status, "paths": K,
                             "paths_kept": len(paths) if status == "kept" else 0})
        _append(out_path, records)                  # records first: a row in .progress means written
        _append(progress_path(out_path), progress)
        done.update((r["id"], r) for r in progress)
    rows = [done[i] for i in ids if i in done]
    return {"questions": len(questions), "kept": sum(r["status"] == "kept" for r in rows),
            "no_valid_path": sum(r["status"] == "no_valid_path" for r in rows),
            "easy_dropped": sum(r["status"] == "easy_dropped" for r in rows),
            "paths_generated": sum(r["paths"] for r in rows), "paths_kept": sum(r["paths_kept"] for r in rows)}


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
    teacher = ap.add_mutually_exclusive_group(required=True)
    teacher.add_argument("--model-dir", help="local Hugging Face causal LM directory (the teacher, HF generate)")
    teacher.add_argument("--teacher-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 "
                         "(vllm serve, SGLang, llama.cpp server, TGI)")
    teacher.add_argument("--vllm", metavar="MODEL", help="vLLM offline engine on this machine's GPU")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--questions", help='JSONL of {"id","question","answer","domain"}')
    src.add_argument("--builtin", type=int, metavar="N", help="use N built-in chain_sum training questions")
    ap.add_argument("--out", required=True, help="output MIND JSONL (OUT.progress tracks the questions done)")
    ap.add_argument("--resume", action="store_true", help="skip the questions a previous run of OUT finished")
    ap.add_argument("--chunk", type=int, default=32, help="questions per teacher call; written after each")
    ap.add_argument("--perspectives", default=",".join(PERSPECTIVES), help="comma-separated names")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8, help="--model-dir: prompts per generate call")
    ap.add_argument("--teacher-model", default="default", help="--teacher-url: the served model's name")
    ap.add_argument("--concurrency", type=int, default=8, help="--teacher-url: requests in flight")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="--teacher-url: per request")
    ap.add_argument("--retries", type=int, default=3, help="--teacher-url: retries per request")
    ap.add_argument("--easy-keep", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.model_dir and not os.path.isdir(args.model_dir):
        raise FileNotFoundError(f"--model-dir {args.model_dir!r} is not a directory; pass a local Hugging Face "
                                f"model directory (nothing is downloaded)")
    if args.questions:
        questions = _read_questions(args.questions)
    else:
        from .teacher import builtin_questions
        questions = builtin_questions(seed=args.seed, n_train=args.builtin, n_id=0, n_ood=0)["train"]
    from .teachers_remote import TeacherError, openai_generate_fn, vllm_generate_fn
    gen = None
    if args.teacher_url:
        gen = openai_generate_fn(args.teacher_url, args.teacher_model, max_new_tokens=args.max_new_tokens,
                                 concurrency=args.concurrency, timeout_s=args.timeout_s, retries=args.retries)
    try:
        if args.vllm:
            gen = vllm_generate_fn(args.vllm, max_new_tokens=args.max_new_tokens)
        stats = synthesize(args.model_dir, questions, args.out, [p.strip() for p in args.perspectives.split(",")],
                           args.max_new_tokens, args.batch_size, args.easy_keep, args.seed, args.device,
                           generate_fn=gen, chunk_questions=args.chunk, resume=args.resume)
    except TeacherError as e:
        n = len(_read_lines(progress_path(args.out)))
        print(f"mindcore synthesize: error: {e}\n  {n} questions already done are kept in {args.out}; "
              "rerun with --resume to continue", file=sys.stderr)
        return 1
    print(json.dumps(stats), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

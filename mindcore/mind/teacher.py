"""Rule-based offline teacher over reasoning-gym ``chain_sum`` (the demo's built-in data).

Each question (e.g. ``3 + 4 - 2``) is rendered in the 8 perspectives of MIND.md §2, each a different
solution style, all short (tens of tokens) and all ending in ``Final answer: <n>``. The task's own
checker (reasoning-gym ``score_answer``) judges every rationale; wrong ones are dropped. ``slip_rate``
simulates teacher mistakes (one arithmetic step off by one) so the judge has something to drop.
Easy questions (2 terms) are down-sampled.

Splits (sized for a ~1M-parameter student trained minutes on 2 CPU cores):
- train / id_eval: 1-digit numbers, 2-4 terms, + and -, minus the held-out operator patterns.
- ood_eval variants: ``held_out_pattern`` (4-term chains whose operator pattern never occurs in
  training), ``new_wording`` (same kind of chain, a question template never seen in training);
  optional ``five_terms`` (longer chains; near chance for the tiny student).
  A trial (tiny-llama, one path style, ~650 steps of 32 questions, 1 contended CPU thread) reached 33%
  on id_eval and 17% on this wording, 12% on held-out patterns; fully new phrasings ("What is ...?",
  "Work out ... and give the result.") stayed at 1-4%, so the wording keeps the task's sentence frame.
Eval questions never share an expression with a training question.
"""
from __future__ import annotations

import random
from typing import Callable, Iterable, Iterator

from .data import PERSPECTIVES, Path, Record, final_line

DOMAIN = "chain_sum"
HELD_OUT_PATTERNS = (("-", "-", "-"), ("+", "-", "+"))
NEW_WORDING = "Compute the following arithmetic problem: {expr} ="   # partly reachable: see the docstring
OOD_VARIANTS = ("held_out_pattern", "new_wording")
# Every variant builtin_questions can make; the choice of OOD_VARIANTS is measured (README demo section).
OOD_CANDIDATES = ("held_out_pattern", "new_wording", "five_terms", "two_digit_start", "basic_arithmetic",
                  "longer_chain")


# ---------------------------------------------------------------- the eight solution styles
# Each renderer gets the numbers, the operators and ``off`` (0, or +-1 for a simulated slip applied to
# its last computed value) and returns (body text, the answer it reached).

def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


def _totals(nums, ops, off):
    tot = [nums[0]]
    for op, b in zip(ops, nums[1:]):
        tot.append(_apply(tot[-1], op, b))
    tot[-1] += off
    return tot


def _formal(nums, ops, off):
    t = _totals(nums, ops, off)
    steps = [f"s0={nums[0]}"] + [f"s{i}=s{i - 1}{op}{b}={t[i]}" for i, (op, b) in enumerate(zip(ops, nums[1:]), 1)]
    return "; ".join(steps), t[-1]


def _intuitive(nums, ops, off):
    t = _totals(nums, ops, off)
    parts = []
    for i, (op, b) in enumerate(zip(ops, nums[1:]), 1):
        head = f"{nums[0]} and {b} make" if op == "+" else f"{nums[0]} less {b} is"
        if i > 1:
            head = f"add {b} gives" if op == "+" else f"take away {b} leaves"
        parts.append(f"{head} {t[i]}")
    return ", ".join(parts) + ".", t[-1]


def _decomposition(nums, ops, off):
    plus = [nums[0]] + [b for op, b in zip(ops, nums[1:]) if op == "+"]
    minus = [b for op, b in zip(ops, nums[1:]) if op == "-"]
    p, m = sum(plus), sum(minus)
    p_txt = "+".join(map(str, plus)) + (f"={p}" if len(plus) > 1 else "")
    if not minus:
        return f"Plus: {p_txt}. Minus: none.", p + off
    m_txt = "+".join(map(str, minus)) + (f"={m}" if len(minus) > 1 else "")
    return f"Plus: {p_txt}. Minus: {m_txt}. {p}-{m}={p - m + off}.", p - m + off


def _planning(nums, ops, off):
    t = _totals(nums, ops, off)
    steps = [f"Step {i}: {t[i - 1]}{op}{b}={t[i]}." for i, (op, b) in enumerate(zip(ops, nums[1:]), 1)]
    return "Plan: go left to right. " + " ".join(steps), t[-1]


def _analogy(nums, ops, off):
    t = _totals(nums, ops, off)
    moves = [f"{b} {'right' if op == '+' else 'left'} to {t[i]}" for i, (op, b) in enumerate(zip(ops, nums[1:]), 1)]
    return f"On a number line start at {nums[0]}, step " + ", then ".join(moves) + ".", t[-1]


def _socratic(nums, ops, off):
    t = _totals(nums, ops, off)
    qa = [f"Q: {t[i - 1]}{op}{b}? A: {t[i]}." for i, (op, b) in enumerate(zip(ops, nums[1:]), 1)]
    return " ".join(qa), t[-1]


def _contrastive(nums, ops, off):
    t = _totals(nums, ops, off)
    right = _totals(nums, ops, 0)[-1]
    if "-" in ops and sum(nums) != right:
        trap = f"Not {sum(nums)}: that adds every number."
    else:   # all additions (or subtractions of 0): the tempting slip is dropping the last term
        trap = f"Not {t[-2]}: that forgets the last {nums[-1]}." if nums[-1] else "No trap: nothing is lost."
    chain = ", ".join(f"{t[i - 1]}{op}{b}={t[i]}" for i, (op, b) in enumerate(zip(ops, nums[1:]), 1))
    return f"{trap} Right: {chain}.", t[-1]


def _counterfactual(nums, ops, off):
    t = _totals(nums, ops, off)
    op, b = ops[-1], nums[-1]
    return (f"If the last term were 0 the total would be {t[-2]}. It is {op}{b}, so {t[-2]}{op}{b}={t[-1]}.",
            t[-1])


RENDERERS: dict[str, Callable] = {
    "formal-symbolic": _formal, "intuitive": _intuitive, "decomposition": _decomposition,
    "planning": _planning, "analogy": _analogy, "socratic": _socratic,
    "contrastive": _contrastive, "counterfactual": _counterfactual,
}
assert tuple(RENDERERS) == PERSPECTIVES


def parse_expression(expr: str) -> tuple[list[int], list[str]]:
    """'3 + 4 - 2' -> ([3, 4, 2], ['+', '-'])."""
    toks = expr.split()
    if len(toks) % 2 == 0 or not all(op in "+-" for op in toks[1::2]):
        raise ValueError(f"not a chain_sum expression: {expr!r}")
    return [int(x) for x in toks[0::2]], list(toks[1::2])


# ---------------------------------------------------------------- judge and teacher

def _chain_sum_checker():
    from reasoning_gym.arithmetic.chain_sum import ChainSumConfig, ChainSumDataset
    return ChainSumDataset(ChainSumConfig(size=1, seed=0)).score_answer


def teach(entry: dict, perspectives: Iterable[str] = PERSPECTIVES, judge: Callable | None = None,
          renderers: dict | None = None, rng: random.Random | None = None, slip_rate: float = 0.0) -> list[Path]:
    """Render one question in every perspective and keep the paths the judge accepts.

    ``entry``: {"question", "answer", "expression"}; ``judge(pred, entry) -> float`` (1.0 = correct),
    defaulting to reasoning-gym's chain_sum scorer.
    """
    from .evaluate import extract_answer
    judge = judge or _chain_sum_checker()
    renderers = renderers or RENDERERS
    rng = rng or random.Random(0)
    nums, ops = parse_expression(entry["expression"])
    kept = []
    for name in perspectives:
        off = rng.choice((-1, 1)) if slip_rate and rng.random() < slip_rate else 0
        body, value = renderers[name](nums, ops, off)
        rationale = f"{body}\n{final_line(str(value))}"
        if judge(extract_answer(rationale), entry) == 1.0:
            kept.append(Path(name, rationale, entry["answer"]))
    return kept


# ---------------------------------------------------------------- question streams and splits

def _rg_stream(seed: int, min_terms: int, max_terms: int, size: int = 1_000_000) -> Iterator[dict]:
    from reasoning_gym.arithmetic.chain_sum import ChainSumConfig, ChainSumDataset
    ds = ChainSumDataset(ChainSumConfig(min_terms=min_terms, max_terms=max_terms, min_digits=1,
                                        max_digits=1, seed=seed, size=size))
    for i in range(size):
        item = ds[i]
        yield {"question": item["question"], "answer": item["answer"],
               "expression": item["metadata"]["expression"], "num_terms": item["metadata"]["num_terms"]}


def _two_digit_stream(seed: int, max_terms: int) -> Iterator[dict]:
    for q in _rg_stream(seed, 2, max_terms):
        nums, ops = parse_expression(q["expression"])
        nums[0] += 10
        expr = " ".join([str(nums[0])] + [t for op, b in zip(ops, nums[1:]) for t in (op, str(b))])
        total = _totals(nums, ops, 0)[-1]
        yield dict(q, question=q["question"].replace(q["expression"], expr), expression=expr, answer=str(total))


def _basic_arithmetic_stream(seed: int, max_terms: int, size: int = 100_000) -> Iterator[dict]:
    from reasoning_gym.arithmetic.basic_arithmetic import BasicArithmeticDataset, BasicArithmeticDatasetConfig
    ds = BasicArithmeticDataset(BasicArithmeticDatasetConfig(
        min_terms=2, max_terms=max_terms, min_digits=1, max_digits=1, operators=("+", "-"), allow_parentheses=False,
        allow_negation=False, seed=seed, size=size))
    for i in range(size):
        item = ds[i]
        expr = item["metadata"]["expression"]
        try:
            nums, _ = parse_expression(expr)
        except ValueError:
            continue
        if max(nums) > 9:   # its 1-digit range reaches 10; keep the training range
            continue
        yield {"question": item["question"], "answer": item["answer"], "expression": expr,
               "num_terms": item["metadata"]["num_terms"]}


def _pattern(expr: str) -> tuple[str, ...]:
    return tuple(parse_expression(expr)[1])


def _take(stream, n, accept, seen: set) -> list[dict]:
    out = []
    for q in stream:
        if len(out) == n:
            break
        if q["expression"] in seen or not accept(q):
            continue
        seen.add(q["expression"])
        out.append(q)
    return out


def _id_accept(rng: random.Random, easy_keep: float):
    def accept(q):
        if _pattern(q["expression"]) in HELD_OUT_PATTERNS:
            return False
        return q["num_terms"] > 2 or rng.random() < easy_keep   # down-sample the easy 2-term ones
    return accept


def builtin_questions(seed: int = 0, n_train: int = 480, n_id: int = 200, n_ood: int = 200,
                      easy_keep: float = 0.3, ood_variants: Iterable[str] = OOD_VARIANTS,
                      max_terms: int = 4) -> dict[str, list[dict]]:
    """Question dicts per split ({"id","question","answer","domain","expression",...}), deduplicated.

    ``max_terms`` bounds the chains of train / id_eval (2..max_terms terms; the task's difficulty knob).
    ``held_out_pattern`` stays 4-term chains and ``five_terms`` 5-term; ``longer_chain`` has max_terms + 1.
    """
    if max_terms not in (3, 4):   # 2-term chains have only 200 distinct expressions
        raise ValueError(f"max_terms={max_terms} must be 3 or 4")
    rng = random.Random(seed)
    base = 1_000_003 * (seed + 1)      # rg items are seeded by seed + index: keep streams far apart
    seen: set = set()
    id_stream = _rg_stream(base, 2, max_terms)
    train = _take(id_stream, n_train, _id_accept(rng, easy_keep), seen)
    id_eval = _take(id_stream, n_id, _id_accept(rng, easy_keep), seen)
    variants = list(ood_variants)
    ood = []
    for k, var in enumerate(variants):
        n = n_ood // len(variants) + (k < n_ood % len(variants))
        if var == "held_out_pattern":
            qs = _take(_rg_stream(base + 200_000, 4, 4), n, lambda q: _pattern(q["expression"]) in HELD_OUT_PATTERNS, seen)
        elif var == "new_wording":
            qs = _take(_rg_stream(base + 400_000, 2, max_terms), n, _id_accept(rng, easy_keep), seen)
            qs = [dict(q, question=NEW_WORDING.format(expr=q["expression"])) for q in qs]
        elif var == "five_terms":
            qs = _take(_rg_stream(base + 600_000, 5, 5), n, lambda q: True, seen)
        elif var == "two_digit_start":   # harder: the chain starts at 10-19 (seen in training only as totals)
            qs = _take(_two_digit_stream(base + 800_000, max_terms), n, _id_accept(rng, easy_keep), seen)
        elif var == "basic_arithmetic":  # another reasoning-gym family: same operations, its own wording
            qs = _take(_basic_arithmetic_stream(base + 1_000_000, max_terms), n, _id_accept(rng, easy_keep), seen)
        elif var == "longer_chain":      # one term more than any training chain
            qs = _take(_rg_stream(base + 1_200_000, max_terms + 1, max_terms + 1), n, lambda q: True, seen)
        else:
            raise ValueError(f"unknown OOD variant {var!r}; choose from {', '.join(OOD_CANDIDATES)}")
        ood += [dict(q, variant=var) for q in qs]
    splits = {"train": train, "id_eval": id_eval, "ood_eval": ood}
    for name, qs in splits.items():
        for i, q in enumerate(qs):
            q.update(id=f"{DOMAIN}-{name}-{i:05d}", domain=DOMAIN, split=name)
            q.setdefault("variant", "id")
    return splits


def builtin_splits(seed: int = 0, n_train: int = 480, n_id: int = 200, n_ood: int = 200,
                   perspectives: tuple[str, ...] = PERSPECTIVES, easy_keep: float = 0.3,
                   slip_rate: float = 0.0, ood_variants: Iterable[str] = OOD_VARIANTS,
                   max_terms: int = 4) -> dict[str, list[Record]]:
    """Records for train / id_eval / ood_eval. Eval records carry all judged paths too (unused by eval)."""
    unknown = [p for p in perspectives if p not in RENDERERS]
    if unknown:
        raise ValueError(f"perspectives {unknown} have no rule-based renderer; choose from {PERSPECTIVES}")
    qsplits = builtin_questions(seed, n_train, n_id, n_ood, easy_keep, ood_variants, max_terms)
    judge, rng = _chain_sum_checker(), random.Random(seed + 7)
    out = {}
    for split, qs in qsplits.items():
        recs = []
        for q in qs:
            paths = teach(q, perspectives, judge, rng=rng, slip_rate=slip_rate)
            if not paths:      # every rationale judged wrong: the question has no valid path
                continue
            extra = {"split": split, "variant": q["variant"], "expression": q["expression"],
                     "num_terms": q["num_terms"]}
            recs.append(Record(q["id"], q["question"], q["answer"], DOMAIN, paths, extra))
        out[split] = recs
    return out

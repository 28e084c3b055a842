"""Question accounting of the two protocols: under equal_questions every mode sees the same questions."""
import collections

import pytest

from mindcore.mind import protocols as P
from tiny_setup import PERSP, make_trainer

K = len(PERSP)


def _drawn(mode, protocol, steps):
    tr = make_trainer(mode=mode, protocol=protocol, steps=steps, ta_warmup_steps=0)
    seen, draw = [], tr._draw

    def record(sampler):
        idx = draw(sampler)
        if sampler is tr.sampler:
            seen.append(idx.tolist())
        return idx
    tr._draw = record
    tr.train()
    return tr, seen


def test_equal_questions_same_questions_every_mode():
    n_train = len(make_trainer().records)          # 16 questions, 2 per step: 8 steps = one epoch
    steps = 2 * n_train // 2
    per_mode = {m: _drawn(m, "equal_questions", steps) for m in ("single", "uniform", "mind")}
    orders = {m: seen for m, (_, seen) in per_mode.items()}
    assert orders["single"] == orders["uniform"] == orders["mind"]     # same questions, same order
    flat = [q for step in orders["mind"] for q in step]
    for epoch in (flat[:n_train], flat[n_train:]):                     # every question once per epoch
        assert collections.Counter(epoch) == collections.Counter(range(n_train))
    tokens = {m: tr.tokens_seen for m, (tr, _) in per_mode.items()}
    assert all(tr.questions_seen == steps * 2 for tr, _ in per_mode.values())
    assert tokens["uniform"] > 3 * tokens["single"]                   # K paths: more supervised tokens


def test_equal_rows_single_takes_k_times_the_questions():
    tr_s, seen_s = _drawn("single", "equal_rows", 2)
    tr_u, seen_u = _drawn("uniform", "equal_rows", 2)
    assert [len(s) for s in seen_s] == [2 * K, 2 * K] and [len(s) for s in seen_u] == [2, 2]
    assert tr_s.questions_seen == K * tr_u.questions_seen


def test_distinct_runs_share_multi_path_modes():
    runs = P.distinct_runs(["single", "uniform", "mind"], P.PROTOCOLS)
    assert runs == [("single", "equal_questions"), ("uniform", "equal_questions"), ("mind", "equal_questions"),
                    ("single", "equal_rows")]
    assert P.run_key("mind", "equal_rows") == P.run_key("mind", "equal_questions") == "mind"
    with pytest.raises(ValueError, match="unknown"):
        P.check("equal_tokens")

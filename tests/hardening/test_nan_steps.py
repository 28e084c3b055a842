"""Non-finite losses and gradients planted at seeded random steps of a real (tiny) MIND run: each such
step is skipped with a warning, and weights, TA, optimisers, inertia and the next checkpoint equal
their values before it. The planted NaN travels the real path (student forward -> fused op -> TA)."""
import os
import random
import shutil
import warnings

import pytest
import torch

from mindcore.mind import checkpoint as ckpt
from mindcore.mind.guard import StepGuard
from tiny_setup import make_trainer

OPTS = dict(mode="mind", steps=12, accum=2, ta_warmup_steps=4, ta_accum_scale=2, ckpt_every=1)
KINDS = ("hidden", "grad", "ta_grad")   # NaN in one row's hidden state; inf in the LM head / a TA gradient


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    # a checkpoint every step: durability is not what this file tests, and fsync dominates its time
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def _plan(seed):
    rng = random.Random(seed)
    train = dict(zip(sorted(rng.sample(range(1, OPTS["steps"] - 1), 5)), rng.choices(KINDS, k=5)))
    return {("warm", rng.randrange(1, OPTS["ta_warmup_steps"])): "hidden", **{("train", s): k for s, k in train.items()}}


KEEP = ("model", "opt", "ta", "ta_opt", "ta_warm_opt", "inertia", "ta_grads", "ta_micro", "ta_target")


def _frozen(s):
    """The part of a trainer state a skipped step must not move. The learning rate is left out on
    purpose: the schedule follows the step counter, and a skipped step is still a step of it."""
    s = {k: v for k, v in s.items() if k in KEEP}
    for k in ("opt", "ta_opt", "ta_warm_opt"):
        if k in s:
            s[k] = {"state": s[k]["state"], "groups": [{n: v for n, v in g.items() if n not in ("lr", "initial_lr")}
                                                       for g in s[k]["param_groups"]]}
    return s


def _state(tr):
    return torch.utils._pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x,
                                        _frozen(tr.state_dict()))


def _equal(a, b):
    la, sa = torch.utils._pytree.tree_flatten(a)
    lb, sb = torch.utils._pytree.tree_flatten(b)
    return sa == sb and all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(la, lb))


def _run(tmp_path, plan, **opts):
    opts = {**OPTS, **opts}
    tr = make_trainer(**opts)
    out = str(tmp_path)
    key = lambda: ("warm", tr.ta_warm_done) if tr.ta_warm_done < opts["ta_warmup_steps"] else ("train", tr.step)
    live = {"key": None, "kind": None, "before": None}
    checks = []   # (key, state before the planted step, state after it)

    def on_forward(module, args, output):
        k = key()
        if k != live["key"]:                        # first micro-batch of a new step
            if live["before"] is not None:          # the previous step was planted: compare now
                checks.append((live["key"], live["before"], _state(tr)))
            live.update(key=k, kind=plan.get(k), before=_state(tr) if k in plan else None)
            if live["kind"] == "hidden":
                h = output["last_hidden_state"]
                output["last_hidden_state"] = torch.where(torch.arange(h.shape[0])[:, None, None] == 0, float("nan"), h)
                return output

    def grad_hook(kind):
        def hook(g):
            if live["kind"] == kind and live["before"] is not None:
                live["kind"] = None                  # once per step
                return torch.full_like(g, float("inf"))
            return g
        return hook
    tr.model.model.register_forward_hook(on_forward)
    tr.model.lm_head.weight.register_hook(grad_hook("grad"))
    next(tr.ta.parameters()).register_hook(grad_hook("ta_grad"))
    save = tr.save_checkpoint

    def save_and_keep(path):
        save(path)
        shutil.copy(path, os.path.join(out, f"ckpt-{tr.step}.pt"))
    tr.save_checkpoint = save_and_keep
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr.train(out_dir=out)
    if live["before"] is not None:
        checks.append((live["key"], live["before"], _state(tr)))
    msgs = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    return tr, checks, msgs


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_planted_nonfinite_steps_are_skipped_exactly(tmp_path, seed):
    plan = _plan(seed)
    tr, checks, msgs = _run(tmp_path, plan)
    assert [k for k, _, _ in checks] == sorted(plan, key=lambda k: (k[0] == "train", k[1]))
    for k, before, after in checks:
        moved = [n for n in before if not _equal(before[n], after[n])]
        assert not moved, f"planted {plan[k]} at {k} moved {moved}"
    skipped = {r["step"] - 1 for r in tr.history if r.get("phase") == "train" and r["skipped"]}
    assert skipped == {s for (p, s) in plan if p == "train"}      # exactly the planted ones, no poisoned window
    assert len(msgs) == len(plan) and tr.skipped == len(skipped)
    for (p, s), kind in plan.items():                              # the next checkpoint equals the previous one
        if p == "train":
            a, b = ckpt.load(tmp_path / f"ckpt-{s}.pt"), ckpt.load(tmp_path / f"ckpt-{s + 1}.pt")
            assert _equal(_frozen(a), _frozen(b)), (s, kind)
            assert b["step"] == a["step"] + 1 and b["skipped"] == a["skipped"] + 1
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert torch.isfinite(tr.inertia.value).all()


def test_answer_span_target_state_restored_on_skip(tmp_path, monkeypatch):
    """The answer_span ablation keeps its own smoothed state, updated in the forward from finite values
    before the step's verdict: a skipped step (inf head gradient) leaves it as it was, and without the
    guard's restore of it the same plant does move it."""
    plan = {("train", 2): "grad", ("train", 4): "grad"}
    _, checks, msgs = _run(tmp_path / "guarded", plan, steps=6, ta_warmup_steps=2, ta_target="answer_span")
    assert len(checks) == 2 and len(msgs) == 2
    for k, before, after in checks:
        assert before["ta_target"] and _equal(before["ta_target"], after["ta_target"]), k
    original = StepGuard.restore

    def restore_but_answer(self, tr):
        self.answer = None
        original(self, tr)
    monkeypatch.setattr(StepGuard, "restore", restore_but_answer)
    _, checks, _ = _run(tmp_path / "unguarded", plan, steps=6, ta_warmup_steps=2, ta_target="answer_span")
    assert any(not _equal(b["ta_target"], a["ta_target"]) for _, b, a in checks)


def test_planting_is_not_vacuous(tmp_path, monkeypatch):
    """Without the guard's restore, the same plants do move the state: the test above can fail."""
    monkeypatch.setattr(StepGuard, "restore", lambda self, tr: None)
    plan = {("warm", 1): "hidden", ("train", 1): "grad", ("train", 3): "hidden"}
    _, checks, _ = _run(tmp_path, plan, steps=5, ta_warmup_steps=2)
    assert len(checks) == 3 and not any(_equal(b, a) for _, b, a in checks)

import json
import os

import pytest
import torch

from mindcore.mind import checkpoint as ckpt
from tiny_setup import make_trainer

OPTS = dict(mode="mind", steps=6, accum=2, ta_warmup_steps=3, ta_accum_scale=4, ckpt_every=0)


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_resume_is_bitwise_identical(tmp_path):
    a_dir, b_dir = str(tmp_path / "a"), str(tmp_path / "b")
    a = make_trainer(**OPTS)
    a.train(out_dir=a_dir)

    b1 = make_trainer(**OPTS)
    b1.train(out_dir=b_dir, stop_at=3)  # "killed" after step 3, right after its checkpoint
    torch.manual_seed(12345)  # the fresh process' RNG differs; the checkpoint restores it
    b2 = make_trainer(**OPTS)
    assert b2.step == 0
    b2.train(out_dir=b_dir, resume=True)

    assert b2.step == a.step == 6 and b2.ta_micro == a.ta_micro
    for (n, p), q in zip(a.model.state_dict().items(), b2.model.state_dict().values()):
        assert torch.equal(p, q), n
    for p, q in zip(a.ta.state_dict().values(), b2.ta.state_dict().values()):
        assert torch.equal(p, q)
    assert torch.equal(a.inertia.value, b2.inertia.value) and torch.equal(a.inertia.count, b2.inertia.count)
    assert a.sampler.state_dict() == b2.sampler.state_dict()
    assert _rows(os.path.join(a_dir, "metrics.jsonl")) == _rows(os.path.join(b_dir, "metrics.jsonl"))
    sa, sb = a.opt.state_dict()["state"], b2.opt.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.atomic_save({"step": 1, "w": torch.ones(3)}, path)

    def dying_save(obj, f):
        f.write(b"partial garbage")
        raise KeyboardInterrupt("killed mid-save")
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = ckpt.load(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temp file left behind


def test_resume_refuses_other_mode(tmp_path):
    a = make_trainer(mode="uniform", steps=1)
    a.train(out_dir=str(tmp_path))
    b = make_trainer(mode="mind", steps=2)
    with pytest.raises(ValueError, match="mode"):
        b.train(out_dir=str(tmp_path), resume=True)

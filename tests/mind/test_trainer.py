import json
import math
import os

import pytest
import torch

from mindcore.mind.config import MODES, ConfigError, TrainConfig
from tiny_setup import PERSP, make_trainer


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs_and_logs(mode, tmp_path):
    tr = make_trainer(mode=mode, steps=2)
    summary = tr.train(out_dir=str(tmp_path))
    assert summary["steps"] == 2 and summary["skipped"] == 0
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_rows = [r for r in rows if r["phase"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2]
    for r in train_rows:
        assert math.isfinite(r["loss"]) and r["tokens"] > 0
        assert set(r["alpha"]) == set(PERSP) == set(r["smoothed_loss"])
        assert sum(r["alpha"].values()) == pytest.approx(1.0, abs=1e-5)
        assert (r["cons"] > 0) == (mode not in ("single", "uniform"))
        assert (r["meta"] != 0) == mode.startswith("mind")
    if mode == "single":
        assert train_rows[0]["alpha"]["formal-symbolic"] == 1.0
        assert any(r["phase"] == "ta_warmup" for r in rows) is False
    # inertia slots of the paths seen were filled
    assert int((tr.inertia.count > 0).sum()) > 0
    assert os.path.exists(tmp_path / "checkpoint.pt")


def test_ta_is_slow_and_warms_up_first():
    tr = make_trainer(mode="mind", steps=4, ta_warmup_steps=2, ta_accum_scale=4)
    assert tr.ta_opt.param_groups[0]["lr"] == pytest.approx(0.1 * tr.cfg.lr)
    before = [p.detach().clone() for p in tr.ta.parameters()]
    tr._ta_warmup()
    after_warm = [p.detach().clone() for p in tr.ta.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after_warm))
    student0 = [p.detach().clone() for p in tr.model.parameters()]
    for _ in range(3):  # inside the TA's 4-step accumulation window: the TA does not move
        tr._train_step()
    assert all(torch.equal(a, b) for a, b in zip(after_warm, tr.ta.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(student0, tr.model.parameters()))
    tr._train_step()
    assert any(not torch.equal(a, b) for a, b in zip(after_warm, tr.ta.parameters()))


def test_loss_goes_down():
    tr = make_trainer(mode="uniform", steps=30, lr=1e-2, warmup_steps=2)
    tr.train()
    first, last = tr.history[0]["sft"], tr.history[-1]["sft"]
    assert last < 0.6 * first


def test_non_finite_step_is_skipped_without_touching_state(tmp_path):
    tr = make_trainer(mode="mind", steps=3, ta_accum_scale=1)
    tr._ta_warmup()
    tr._train_step()
    snap = lambda: ([p.detach().clone() for p in tr.model.parameters()] +  # noqa: E731
                    [p.detach().clone() for p in tr.ta.parameters()] +
                    [tr.inertia.value.clone(), tr.inertia.count.clone()] +
                    [v.clone() for s in tr.opt.state.values() for v in s.values()] +
                    [v.clone() for s in tr.ta_opt.state.values() for v in s.values()])
    before = snap()
    real = tr._forward
    tr._forward = lambda batch: real(batch) * float("nan")
    with pytest.warns(UserWarning, match="non-finite"):
        row = tr._train_step()
    assert row["skipped"] and tr.skipped == 1
    after = snap()
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.grad is None for p in tr.model.parameters())
    tr._forward = real
    row = tr._train_step()
    assert not row["skipped"] and math.isfinite(row["loss"])


def test_bad_config_fails_before_training():
    with pytest.raises(ConfigError, match="mode"):
        make_trainer(mode="mind-v2")
    with pytest.raises(ConfigError, match="perspectives"):
        make_trainer(perspectives=["formal-symbolic", "telepathy"])
    with pytest.raises(ConfigError, match="golden"):
        make_trainer(mode="single", golden="analogy")  # not among the 4 test perspectives
    with pytest.raises(ConfigError, match="unknown keys"):
        TrainConfig.from_dict({"mode": "mind", "lamda": 0.1})


def test_missing_student_dir_fails_clearly(tmp_path):
    from mindcore.mind.trainer import Trainer
    cfg = TrainConfig(mode="mind", student=str(tmp_path / "no-such-model"), n_train=4, n_id=2, n_ood=2)
    with pytest.raises(Exception, match="no-such-model"):
        Trainer.from_config(cfg)


def test_evaluate_returns_accuracy():
    tr = make_trainer(mode="single", steps=1)
    res = tr.evaluate(tr.records, max_n=3)
    assert res["n"] == 3 and 0.0 <= res["accuracy"] <= 1.0


def test_demo_writes_report_and_plots(tmp_path):
    from mindcore.mind.demo import run_demo
    rep = run_demo(str(tmp_path), modes=("single", "mind"), budget_s=120, steps=2, threads=1, log=lambda m: None,
                   n_train=12, n_id=3, n_ood=3, ta_warmup_steps=1, eval_max_n=3, eval_max_new_tokens=8)
    saved = json.load(open(tmp_path / "report.json"))
    assert saved["modes"].keys() == {"single", "mind"} and saved["perspectives"][0] == "formal-symbolic"
    for m in ("single", "mind"):
        assert 0 <= saved["modes"][m]["id_accuracy"] <= 1 and 0 <= saved["modes"][m]["ood_accuracy"] <= 1
        assert saved["modes"][m]["steps"] == 2 and saved["modes"][m]["tokens"] > 0
    assert rep["wall_s"] > 0 and saved["config"]["steps"] == 2
    for png in ("loss.png", "accuracy.png", "alpha_mind.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_cli_rejects_bad_input_before_training(tmp_path, capsys):
    from mindcore.cli import main
    assert main(["demo", "--out", str(tmp_path), "--modes", "single,mind-v2"]) == 2
    assert "mind-v2" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mode: mind\nperspectives: [formal-symbolic, telepathy]\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "telepathy" in capsys.readouterr().err
    assert main(["eval", "--run", str(tmp_path / "nothing")]) == 2
    assert "config.json" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

"""End to end: a tiny study writes both protocols, per-seed results, paired comparisons and the TA diagnosis."""
import json

from mindcore.mind import data
from mindcore.mind.study import format_table, run_study

PERSP = list(data.PERSPECTIVES[:3])
BASE = dict(student="tiny-llama", perspectives=PERSP, n_train=12, n_id=4, n_ood=4, steps=2, questions_per_step=2,
            max_len=112, warmup_steps=1, ta_warmup_steps=1, ta_hidden=16, log_every=1000, eval_max_n=4,
            eval_max_new_tokens=4, eval_batch_size=8)


def test_tiny_study_report(tmp_path):
    rep = run_study(str(tmp_path), BASE, modes=["single", "uniform", "mind"], seeds=2, solo=True, threads=1,
                    log=lambda m: None)
    assert rep["seeds_run"] == 2 and rep["default_protocol"] == "equal_questions"
    eq, rows = rep["protocols"]["equal_questions"], rep["protocols"]["equal_rows"]
    assert rep["modes"] == eq["modes"]
    for block in (eq, rows):
        for m in ("single", "uniform", "mind"):
            e = block["modes"][m]
            assert {"id_accuracy", "ood_accuracy", "seeds", "tokens"} <= set(e) and len(e["seeds"]) == 2
        assert set(block["comparisons"]) == {"mind_vs_uniform", "mind_vs_single"}
        assert {"diff", "ci_low", "ci_high", "mcnemar"} <= set(block["comparisons"]["mind_vs_single"]["id"])
    # the multi-path runs are shared; single differs between the protocols
    assert eq["modes"]["mind"]["seeds"] == rows["modes"]["mind"]["seeds"]
    assert rows["modes"]["single"]["questions_seen"] == len(PERSP) * eq["modes"]["single"]["questions_seen"]
    assert eq["modes"]["single"]["questions_seen"] == eq["modes"]["mind"]["questions_seen"]
    d = rep["ta_diagnosis"]
    assert set(d["solo"]) == set(PERSP) and set(d["mean_alpha_mind"]) == set(PERSP)
    assert json.load(open(tmp_path / "report.json"))["seeds_run"] == 2
    assert (tmp_path / "accuracy.png").exists() and (tmp_path / "alpha_vs_solo.png").exists()
    from mindcore.mind.study_merge import merge, ood_variants
    merged = merge(rep, rep)
    assert set(merged["mean_alpha_mind"]) == set(PERSP) and merged["mind_seeds"] == 2
    assert merged["ablations"] == {}
    abl = json.loads(json.dumps(rep))
    abl["config"]["ta_target"] = "answer_span"
    merged = merge(rep, rep, abl)
    assert set(merged["ablations"]) == {"answer_span"} and merged["ablations"]["answer_span"]["seeds"] == 2
    assert merged["ablations"]["answer_span"]["mean_alpha"] == merged["mean_alpha_mind"]
    assert set(ood_variants(rep)["mind"]) >= {"id", "held_out_pattern"}
    text = format_table(rep)
    assert "protocol equal_questions (default, the paper's)" in text and "protocol equal_rows" in text


def test_budget_limits_seeds(tmp_path):
    rep = run_study(str(tmp_path), BASE, modes=["single", "mind"], seeds=5, budget_s=1e-3, threads=1, log=lambda m: None)
    assert rep["seeds_run"] == 1 and "budget" in rep["seed_stop_reason"]


def test_train_cli_runs_a_study_preset(tmp_path):
    from mindcore.cli import main
    cfg = tmp_path / "s.yaml"
    cfg.write_text("student: tiny-llama\nperspectives: [formal-symbolic, intuitive]\nn_train: 8\nn_id: 2\nn_ood: 2\n"
                   "steps: 1\nquestions_per_step: 2\nmax_len: 112\nwarmup_steps: 1\nta_warmup_steps: 1\nta_hidden: 16\n"
                   "eval_max_n: 2\neval_max_new_tokens: 2\nextra:\n  study:\n    modes: [single, mind]\n"
                   "    protocols: [equal_questions]\n    seeds: 1\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    rep = json.load(open(tmp_path / "run" / "report.json"))
    assert set(rep["modes"]) == {"single", "mind"} and list(rep["protocols"]) == ["equal_questions"]


def _strip_times(x):
    if isinstance(x, dict):
        return {k: _strip_times(v) for k, v in x.items() if k not in ("train_wall_s", "eval_wall_s")}
    if isinstance(x, list):
        return [_strip_times(v) for v in x]
    return x


def test_join_seeds_equals_one_study_of_all_seeds(tmp_path):
    import pytest
    from mindcore.mind.study import join_seeds
    kw = dict(modes=["single", "mind"], protocols=["equal_questions"], solo=True, threads=1, log=lambda m: None)
    both = run_study(str(tmp_path / "both"), BASE, seeds=2, **kw)
    run_study(str(tmp_path / "s0"), BASE, seeds=1, **kw)
    run_study(str(tmp_path / "s1"), dict(BASE, seed=1), seeds=1, **kw)
    joined = join_seeds(str(tmp_path / "joined"), [str(tmp_path / "s0"), str(tmp_path / "s1")])
    assert joined["seeds_run"] == 2 and [r["seed"] for r in joined["modes"]["mind"]["seeds"]] == [0, 1]
    for key in ("protocols", "ta_diagnosis", "solo_runs"):
        assert _strip_times(joined[key]) == _strip_times(both[key]), key
    assert json.load(open(tmp_path / "joined" / "outcomes.json")) == json.load(open(tmp_path / "both" / "outcomes.json"))
    assert (tmp_path / "joined" / "accuracy.png").exists() and "joined studies" in format_table(joined)
    with pytest.raises(ValueError, match="seed 0 of .* is in two studies"):
        join_seeds(str(tmp_path / "j2"), [str(tmp_path / "s0"), str(tmp_path / "both")])
    run_study(str(tmp_path / "other"), dict(BASE, seed=1, lr=0.5), seeds=1, **kw)
    with pytest.raises(ValueError, match="not the same study"):
        join_seeds(str(tmp_path / "j3"), [str(tmp_path / "s0"), str(tmp_path / "other")])

"""Smoke tests of the benchmark harness at tiny shapes (no speed is asserted)."""
import csv
import math
import subprocess
from pathlib import Path

import pytest
import torch

from benchmarks import bench_mind_step, bench_perspective_ce as bench, compare, harness, plot

REPO = Path(__file__).resolve().parent.parent
SHAPE = "24x67"  # d x V, odd on purpose


def _run(tmp_path, providers, modes=("fwd+bwd",), memory=False, dtypes=(torch.float32,)):
    return bench.run([SHAPE], [40], list(dtypes), list(providers), list(modes), 2, "cpu", tmp_path,
                     memory=memory)


def _csv_rows(tmp_path):
    (path,) = tmp_path.glob("*.csv")
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return header, harness.read_rows(path)


def test_rows_have_every_column(tmp_path):
    _run(tmp_path, ["floor", "eager", "reference"], modes=("fwd", "fwd+bwd"))
    header, rows = _csv_rows(tmp_path)
    assert header == harness.COLUMNS
    assert {(r["provider"], r["mode"]) for r in rows} == {
        (p, m) for p in ("floor", "eager", "reference") for m in ("fwd", "fwd+bwd")}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["device"].startswith("cpu-") and r["torch"] == torch.__version__
        assert r["git_sha"] and r["timestamp"] and (r["N"], r["d"], r["V"]) == ("40", "24", "67")
        for key in ("median_ms", "p20_ms", "p80_ms", "tokens_per_s", "tflops", "x_floor"):
            assert float(r[key]) > 0, (key, r)
        assert float(r["p20_ms"]) <= float(r["median_ms"]) <= float(r["p80_ms"])
        flops = harness.FLOPS[r["mode"]] * 40 * 24 * 67
        assert math.isclose(float(r["tflops"]), flops / (float(r["median_ms"]) / 1e3) / 1e12, rel_tol=1e-3)
    assert all(float(r["x_eager"]) > 0 for r in rows if r["provider"] == "reference")


def test_cpu_memory_probe_sees_the_logits(tmp_path):
    # eager materialises N x V fp32 logits (and their gradient): a fresh process must see at least that.
    n, d, v = 256, 32, 8192
    spec = dict(provider="eager", n=n, d=d, v=v, dtype="fp32", device="cpu")
    mem = harness.cpu_memory_subprocess("benchmarks.bench_perspective_ce", spec, "fwd+bwd")
    assert mem["extra_mem_mb"] * 2**20 >= n * v * 4
    assert mem["peak_mem_mb"] > mem["extra_mem_mb"]


def test_wrong_provider_is_failed_not_timed(tmp_path, monkeypatch):
    def wrong(x, device):  # right shapes, loss 5% too large: the check must catch it
        fn = bench.BUILDERS["eager"](x, device)
        return lambda h, w: tuple(t * 1.05 for t in fn(h, w))

    def crashes(x, device):
        def fn(h, w):
            raise RuntimeError("kernel exploded")
        return fn

    monkeypatch.setitem(bench.BUILDERS, "wrong", wrong)
    monkeypatch.setitem(bench.BUILDERS, "crashes", crashes)
    rows = {r["provider"]: r for r in _run(tmp_path, ["eager", "wrong", "crashes"])}
    assert rows["eager"]["status"] == "ok"
    for name in ("wrong", "crashes"):
        assert rows[name]["status"] == "FAILED" and "median_ms" not in rows[name]
    assert "loss rel err" in rows["wrong"]["note"] and "grad_weight" in rows["wrong"]["note"]
    assert "kernel exploded" in rows["crashes"]["note"]


def test_check_tolerances_follow_dtype():
    ref = {"loss": torch.tensor(2.0), "grad_hidden": torch.ones(8, 4)}
    near = {"loss": torch.tensor(2.0 + 1e-3), "grad_hidden": torch.ones(8, 4) * 1.01}
    assert harness.check(near, ref, torch.bfloat16) is None
    assert "loss" in harness.check(near, ref, torch.float32)
    assert "missing" in harness.check({"loss": ref["loss"]}, ref, torch.bfloat16)
    assert "grad_hidden" in harness.check({**ref, "grad_hidden": torch.full((8, 4), float("nan"))}, ref,
                                          torch.bfloat16)


def test_unavailable_provider_is_skipped_with_reason(tmp_path):
    rows = _run(tmp_path, ["cuda", "liger"])
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert "cuda" in rows[0]["note"] and rows[1]["note"]


def test_plot_renders_png(tmp_path):
    _run(tmp_path, ["floor", "eager"], memory=False)
    (path,) = tmp_path.glob("*.csv")
    rows = harness.read_rows(path)
    for r in rows:  # plot the memory panel too
        r["extra_mem_mb"] = "1.5"
    written = plot.plot(rows, tmp_path / "png")
    assert len(written) == 2
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def _row(provider, ms, status="ok"):
    return {"device": "cpu-x", "op": "op", "provider": provider, "mode": "fwd+bwd", "dtype": "fp32",
            "shape": "s", "N": "8", "d": "4", "V": "16", "timestamp": "2025-01-01T00:00:00",
            "median_ms": str(ms), "status": status}


def test_compare_flags_regression(tmp_path):
    base = [_row("a", 10.0), _row("b", 10.0), _row("c", 10.0), _row("d", 10.0)]
    new = [_row("a", 10.5), _row("b", 11.5), _row("c", "", status="FAILED"), _row("e", 1.0)]
    regressions, compared = compare.compare_rows(new, base, 0.10)
    assert sorted(r[0][2] for r in regressions) == ["b", "c"]
    assert len(compared) == 2
    for name, rows in (("base.csv", base), ("new.csv", new)):
        harness.append_rows(tmp_path / name, [{k: r.get(k, "") for k in harness.COLUMNS} for r in rows])
    assert compare.main([str(tmp_path / "new.csv"), str(tmp_path / "base.csv")]) == 1
    assert compare.main([str(tmp_path / "base.csv"), str(tmp_path / "base.csv")]) == 0


def test_append_refuses_other_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(RuntimeError, match="columns"):
        harness.append_rows(path, [{}])


def test_mind_step_rows(tmp_path):
    rows = bench_mind_step.run(["tiny"], ["naive", "packed-reference"], torch.float32, "cpu", tmp_path,
                               quick=True, reps=1, path_len=8, memory=False)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert rows[0]["N"] == rows[1]["N"] > 0 and all(r["tokens_per_s"] > 0 for r in rows)


def test_device_check_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "device_check.sh")], check=True)


def test_inaccurate_baseline_is_timed_and_flagged(tmp_path, monkeypatch):
    def off(x, device):
        fn = bench.BUILDERS["eager"](x, device)
        return lambda h, w: tuple(t * 1.05 for t in fn(h, w))

    monkeypatch.setitem(bench.BUILDERS, "off", off)
    monkeypatch.setattr(bench, "BASELINES", ("eager", "off"))
    (row,) = _run(tmp_path, ["off"])
    assert row["status"] == "ok" and row["median_ms"] > 0 and row["note"].startswith("INACCURATE")


def test_answer_consistency_rows(tmp_path):
    from benchmarks import bench_answer_consistency as cons
    providers = ["eager-naive", "reference", "mindcore"]
    rows = cons.run([SHAPE], [2], 3, 2, [torch.float32], providers, ["fwd", "fwd+bwd"], 1,
                    "cpu", tmp_path, memory=False)
    assert [(r["provider"], r["mode"], r["status"]) for r in rows] == [
        (p, m, "ok") for p in providers for m in ("fwd", "fwd+bwd")], rows
    assert all(r["N"] == 2 * 3 * 2 and r["tokens_per_s"] > 0 for r in rows)
    header, stored = _csv_rows(tmp_path)
    assert header == harness.COLUMNS and {r["op"] for r in stored} == {"answer_consistency"}
    assert len(stored) == 6

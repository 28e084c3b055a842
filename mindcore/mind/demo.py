"""`python -m mindcore demo --out DIR`: train `single` and `mind` (more with --modes) on the built-in
chain_sum data and the built-in ~1M-parameter student, evaluate each, print a table, write
DIR/report.json and PNG plots.

Every mode gets the same step budget and the same share of a wall-clock budget (the guard stops a
mode cleanly if this machine is slower than expected; the report says so). Nothing here is tuned
per mode.
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch

from .config import MODES, ConfigError, TrainConfig

# The demo preset (mindcore/configs/demo.yaml holds the same values for `mindcore train`).
# eval_max_new_tokens covers the longest rationale style (~64 tokens) so no mode is cut off early.
DEMO = dict(student="tiny-llama", n_train=2000, n_id=200, n_ood=200, steps=800, questions_per_step=4,
            accum=1, lr=3e-3, warmup_steps=20, max_len=112, ta_warmup_steps=20, log_every=50,
            eval_max_n=200, eval_max_new_tokens=72, eval_batch_size=100, seed=0)
EVAL_RESERVE_S = 45.0   # per mode, kept aside from the training budget for generation-based eval


def parse_modes(text):
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--modes has unknown modes {bad}; choose from {list(MODES)} (comma-separated)")
    return modes


def run_demo(out_dir, modes=("single", "mind"), budget_s=540.0, steps=None, threads=None, log=None, **overrides):
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    # All cores by default (measured on the quiet 2-core box: 2 threads ran a step 1.75x faster than 1);
    # on a shared machine pass --threads 1: spinning OpenMP threads then cost several x.
    torch.set_num_threads(threads or (os.cpu_count() or 1))
    from . import data, tokenizer as tok
    from .plots import plot_run
    from .trainer import Trainer, load_splits

    base = dict(DEMO, **overrides)
    if steps is not None:
        base["steps"] = steps
    cfgs = {m: TrainConfig(mode=m, **base).validate(data.PERSPECTIVES) for m in modes}  # all checked first
    os.makedirs(out_dir, exist_ok=True)
    first = cfgs[modes[0]]
    splits = load_splits(first, list(data.PERSPECTIVES))
    tk = tok.build_tokenizer(tok.training_texts(splits["train"]), vocab_size=first.vocab_size)
    log(f"demo: {len(splits['train'])} train questions x {len(data.PERSPECTIVES)} perspectives, "
        f"id {len(splits['id_eval'])}, ood {len(splits['ood_eval'])}; modes {list(modes)}")
    results, rows_by_mode = {}, {}
    for i, mode in enumerate(modes):
        remaining = budget_s - (time.perf_counter() - t_start)
        cfg = cfgs[mode]
        cfg.max_wall_s = max(10.0, remaining / (len(modes) - i) - EVAL_RESERVE_S)
        tr = Trainer.from_config(cfg, log=log, splits=splits, tokenizer=tk)
        n_params = sum(p.numel() for p in tr.model.parameters())
        log(f"== {mode}: student {n_params / 1e6:.2f}M params, up to {cfg.steps} steps / {cfg.max_wall_s:.0f} s")
        summary = tr.train(out_dir=os.path.join(out_dir, mode))
        t_eval = time.perf_counter()
        acc = {split: tr.evaluate(tr.eval_splits[split]) for split in ("id", "ood")}
        rows_by_mode[mode] = tr.history
        train_rows = [r for r in tr.history if r.get("phase") == "train"]
        results[mode] = {
            "id_accuracy": acc["id"]["accuracy"], "ood_accuracy": acc["ood"]["accuracy"],
            "id_n": acc["id"]["n"], "ood_n": acc["ood"]["n"],
            "steps": summary["steps"], "tokens": summary["tokens"], "skipped_steps": summary["skipped"],
            "train_wall_s": round(summary["wall_s"], 1), "eval_wall_s": round(time.perf_counter() - t_eval, 1),
            "stopped_by_wall_guard": summary["stopped_early"],
            "final_sft": train_rows[-1]["sft"] if train_rows else None,
            "final_alpha": train_rows[-1]["alpha"] if train_rows else None,
            "examples": acc["ood"]["examples"][:3],
        }
        log(f"== {mode}: id {acc['id']['accuracy']:.3f} ood {acc['ood']['accuracy']:.3f} "
            f"({summary['steps']} steps, {summary['wall_s']:.0f} s)")
    report = {"modes": results, "perspectives": list(data.PERSPECTIVES), "golden": first.golden,
              "config": {k: v for k, v in first.to_dict().items() if k not in ("mode", "max_wall_s")},
              "budget_s": budget_s, "threads": torch.get_num_threads(),
              "comparison": "equal steps; `single` takes K x more questions per step (one path each) so "
                            "every mode supervises about the same number of rows per step"}
    report["plots"] = [os.path.basename(p) for p in plot_run(rows_by_mode, results, out_dir)]
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(format_table(report))
    return report


def format_table(report):
    lines = [f"{'mode':<18}{'id acc':>8}{'ood acc':>9}{'steps':>7}{'tokens':>10}{'train s':>9}{'guard':>7}"]
    for mode, r in report["modes"].items():
        lines.append(f"{mode:<18}{r['id_accuracy']:>8.3f}{r['ood_accuracy']:>9.3f}{r['steps']:>7}"
                     f"{r['tokens']:>10}{r['train_wall_s']:>9.0f}{'hit' if r['stopped_by_wall_guard'] else '-':>7}")
    lines.append(f"total wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)

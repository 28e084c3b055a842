"""`python -m mindcore demo --out DIR`: the built-in chain_sum data and ~1M-parameter student; modes
single, uniform, consistency and mind under both protocols (protocols.py), as many seeds as the
wall-clock budget allows (study.py says how many ran), paired statistics, a table and plots.

Nothing here is tuned per mode: every run shares the preset below.
"""
from __future__ import annotations

import os

import torch

from .config import MODES, ConfigError

# The demo preset (mindcore/configs/demo.yaml holds the same values for `mindcore train`): 500 questions
# (the paper's scale), 2 epochs under equal_questions, sized so that 5 runs per seed fit the budget.
# eval_max_new_tokens covers the longest rationale style (~64 tokens) so no mode is cut off early.
DEMO = dict(student="tiny-llama", n_train=500, n_id=200, n_ood=200, steps=500, questions_per_step=2,
            accum=1, lr=3e-3, warmup_steps=20, max_len=112, ta_warmup_steps=20, log_every=50,
            eval_max_n=200, eval_max_new_tokens=72, eval_batch_size=100, seed=0)
DEMO_MODES = ("single", "uniform", "consistency", "mind")


def parse_modes(text):
    modes = [m.strip() for m in (text or ",".join(DEMO_MODES)).split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--modes has unknown modes {bad}; choose from {list(MODES)} (comma-separated)")
    return modes


def run_demo(out_dir, modes=DEMO_MODES, budget_s=540.0, steps=None, threads=None, seeds=3, log=None,
             solo=False, **overrides):
    from .study import run_study
    # All cores on a quiet machine (measured on the quiet 2-core box: 2 threads ran a step 1.75x faster
    # than 1); 1 thread when the load average already fills the cores: spinning OpenMP threads then
    # cost several x (measured on the shared VM at load 7: a 2-thread step ~20x slower than 1 thread).
    if threads is None:
        cores = os.cpu_count() or 1
        threads = 1 if os.getloadavg()[0] >= cores else cores
    torch.set_num_threads(threads)
    base = dict(DEMO, **overrides)
    if steps is not None:
        base["steps"] = steps
    return run_study(out_dir, base, modes=list(modes), seeds=seeds, budget_s=budget_s, solo=solo, log=log)

"""A long run (>= 2000 optimiser steps of the tiny MIND student, checkpoints included): resident memory
stays flat beyond a stated bound, and metrics.jsonl is only ever appended to."""
import os
import time

import pytest

from tiny_setup import make_trainer

pytestmark = pytest.mark.slow

STEPS = 2000
WARM = 200                  # allocator pools, autograd caches and the first checkpoint settle by then
RSS_BOUND_MB = 24           # growth allowed after WARM (the in-memory metric history alone is ~1.5 KB a step)


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_rss_flat_and_metrics_append_only(tmp_path):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny GEMMs: extra threads only spin (several x slower on a shared box)
    try:
        _long_run(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _long_run(tmp_path):
    tr = make_trainer(mode="mind", steps=STEPS, accum=1, ta_warmup_steps=2, questions_per_step=1,
                      ckpt_every=500, log_every=10**6)
    metrics = tmp_path / "metrics.jsonl"
    samples, seen = [], {"bytes": b"", "ino": None}
    step = tr._train_step

    def sampled_step():
        row = step()
        if tr.step % 100 == 0:
            samples.append((tr.step, _rss_mb()))
            data = metrics.read_bytes()
            assert data.startswith(seen["bytes"]), f"metrics.jsonl rewritten before step {tr.step}"
            ino = os.stat(metrics).st_ino
            assert seen["ino"] in (None, ino), "metrics.jsonl replaced by another file"
            seen.update(bytes=data, ino=ino)
        return row
    tr._train_step = sampled_step
    t0 = time.perf_counter()
    tr.train(out_dir=str(tmp_path))
    wall = time.perf_counter() - t0
    base = next(r for s, r in samples if s == WARM)
    late = [r for s, r in samples if s >= WARM]
    drift = max(late) - base
    print(f"\n{STEPS} steps in {wall:.0f} s; RSS at step {WARM} {base:.0f} MiB, max after {max(late):.0f} MiB, "
          f"drift {drift:+.1f} MiB (bound {RSS_BOUND_MB}); samples {[(s, round(r)) for s, r in samples[::4]]}")
    assert tr.step == STEPS and len(metrics.read_text().splitlines()) == len(tr.history)
    assert drift <= RSS_BOUND_MB

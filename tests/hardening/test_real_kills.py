"""Real SIGKILLs of `mindcore train` (a subprocess), at seeded random moments including inside checkpoint
writes; each time `--resume` continues. The finished run equals an uninterrupted one bit for bit, and no
kill leaves a checkpoint that fails to load. Under torchrun (2 CPU ranks, gloo) one rank is killed: the
job stops within a stated timeout and resumes from the last complete checkpoint."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from mindcore.mind import checkpoint as ckpt

pytestmark = pytest.mark.slow

KILLS = 20
STEPS = 64        # > the most the plan's kills can advance: 8 in-save x 2 + 9 random x 3 + 3 startup x 1
STOP_TIMEOUT_S = 90       # a killed rank must bring the whole torchrun job down within this
PRESET = """mode: mind
n_train: 24
n_id: 4
n_ood: 4
steps: {steps}
questions_per_step: 2
max_len: 112
ta_warmup_steps: 4
ta_accum_scale: 2
warmup_steps: 4
log_every: 1000
ckpt_every: 1
seed: 0
"""
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def _cmd(cfg, out, *extra):
    return [sys.executable, "-m", "mindcore", "train", "--config", str(cfg), "--out", str(out), "--no-eval", *extra]


def _tmp_files(out):
    return [n for n in os.listdir(out) if n.startswith(".tmp-")] if os.path.isdir(out) else []


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def _segment(cmd, out, how, rng, log):
    """Start a resume, SIGKILL it as `how` says; return 'killed' or 'finished'."""
    path = os.path.join(out, "checkpoint.pt")
    start_mtime, t0 = _mtime(path), time.monotonic()
    with open(log, "ab") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    # Each kind of kill lets a segment advance at most a few steps, whatever the machine's speed, so a
    # run of STEPS steps always outlasts the plan (a fixed sleep let a fast machine finish early).
    if how == "startup":   # during imports, data building, or the checkpoint load / metrics truncation
        deadline = t0 + rng.uniform(0.5, 12.0)
        while time.monotonic() < deadline and p.poll() is None and _mtime(path) == start_mtime:
            time.sleep(0.01)
    else:                  # training is under way once a new checkpoint lands
        while p.poll() is None and _mtime(path) == start_mtime:
            time.sleep(0.01)
        if how == "in-save":
            while p.poll() is None and not _tmp_files(out):
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.03))
        else:              # a random moment within the next step, timed from this machine's last one
            t1, m1 = time.monotonic(), _mtime(path)
            while p.poll() is None and _mtime(path) == m1:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, time.monotonic() - t1))
    if p.poll() is not None:
        assert p.returncode == 0, open(log).read()[-3000:]
        return "finished"
    p.send_signal(signal.SIGKILL)
    p.wait()
    return "killed"


def _load_all(out):
    s = ckpt.load(os.path.join(out, "checkpoint.pt"))
    s.pop("wall_s")
    s["config"].pop("out_dir")
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    from safetensors.torch import load_file
    return s, rows, load_file(os.path.join(out, "student", "model.safetensors"))


def _same(a, b):
    la, sa = torch.utils._pytree.tree_flatten(a)
    lb, sb = torch.utils._pytree.tree_flatten(b)
    assert sa == sb
    for x, y in zip(la, lb):
        assert (torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y)


def test_sigkill_resume_is_bitwise_identical(tmp_path):
    rng = random.Random(20261203)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(PRESET.format(steps=STEPS))
    ref, run, log = tmp_path / "ref", tmp_path / "run", tmp_path / "stderr.log"
    t0 = time.monotonic()
    subprocess.run(_cmd(cfg, ref), check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t_ref = time.monotonic() - t0
    plan = ["in-save"] * 8 + ["random"] * 9 + ["startup"] * 3
    rng.shuffle(plan)
    stats = {"killed": 0, "in_save": 0, "steps_at_kill": []}
    for how in plan:
        if _segment(_cmd(cfg, run, "--resume"), run, how, rng, log) == "finished":
            break
        stats["killed"] += 1
        stats["in_save"] += bool(_tmp_files(run))      # the kill left a half-written temp file behind
        path = run / "checkpoint.pt"
        if path.exists():                               # every kill leaves a loadable checkpoint
            stats["steps_at_kill"].append(ckpt.load(path)["step"])
    p = subprocess.run(_cmd(cfg, run, "--resume"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not _tmp_files(run)                          # later saves cleaned the kills' temp files
    print(f"\nkills {stats['killed']} (inside a checkpoint write: {stats['in_save']}), steps at kill "
          f"{stats['steps_at_kill']}, reference run {t_ref:.0f} s, killed run {time.monotonic() - t0 - t_ref:.0f} s")
    assert stats["killed"] >= KILLS, f"the run finished after {stats['killed']} kills; raise steps"
    assert stats["in_save"] >= 1
    a, b = _load_all(ref), _load_all(run)
    assert a[0]["step"] == STEPS
    _same(a[0], b[0])          # weights, TA, inertia, optimisers, schedule, samplers, RNG, counters
    assert a[1] == b[1]        # metrics.jsonl row for row
    _same(a[2], b[2])          # the saved student


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children_with_rank(pid):
    """{rank: pid} of the worker processes under a torchrun agent."""
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            kids = open(f"/proc/{p}/task/{p}/children").read().split()
        except OSError:
            continue
        for k in map(int, kids):
            todo.append(k)
            try:
                env = open(f"/proc/{k}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            rank = [e for e in env if e.startswith(b"RANK=")]
            if rank:
                out[int(rank[0][5:])] = k
    return out


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_torchrun_rank_kill_stops_and_resumes(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(PRESET.format(steps=16))
    out = tmp_path / "run"

    def torchrun(*extra):
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port()), "-m", "mindcore", "train", "--config", str(cfg), "--out", str(out), "--no-eval", *extra]
    p = subprocess.Popen(torchrun(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True)
    path = out / "checkpoint.pt"
    deadline = time.monotonic() + 600
    while p.poll() is None and time.monotonic() < deadline:
        if path.exists() and ckpt.load(path)["step"] >= 4:
            break
        time.sleep(0.2)
    assert p.poll() is None, "the job ended before a rank could be killed: raise steps"
    ranks = _children_with_rank(p.pid)
    assert set(ranks) == {0, 1}, ranks
    os.kill(ranks[1], signal.SIGKILL)
    t_kill = time.monotonic()
    try:
        _, err = p.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"torchrun still running {STOP_TIMEOUT_S} s after rank 1 was SIGKILLed")
    stop_s = time.monotonic() - t_kill
    assert p.returncode != 0
    step_at_kill = ckpt.load(path)["step"]             # the last complete checkpoint loads
    assert 4 <= step_at_kill < 16
    r = subprocess.run(torchrun("--resume"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    final = ckpt.load(path)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert final["step"] == 16 and [r["step"] for r in rows if r["phase"] == "train"] == list(range(1, 17))
    print(f"\ntorchrun: rank 1 killed at checkpoint step {step_at_kill}; job stopped in {stop_s:.1f} s "
          f"(bound {STOP_TIMEOUT_S} s); resumed to step 16")

"""2 CPU ranks (gloo, torch DDP) == one process with the same global batch."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tiny_setup import make_trainer

OPTS = dict(mode="mind", steps=3, accum=2, ta_warmup_steps=2, ta_accum_scale=2)


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        tr = make_trainer(questions_per_step=2, **OPTS)
        assert tr.dist.world == world
        tr.train()
        torch.save({"model": tr.model.state_dict(), "ta": tr.ta.state_dict(), "value": tr.inertia.value,
                    "count": tr.inertia.count, "history": tr.history}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_two_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # every rank holds the same inertia state, student and TA
    assert torch.equal(r0["value"], r1["value"]) and torch.equal(r0["count"], r1["count"])
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k
    for k in r0["ta"]:
        assert torch.equal(r0["ta"][k], r1["ta"][k]), k

    single = make_trainer(questions_per_step=4, **OPTS)  # the same global batch in one process
    single.train()
    assert torch.equal(single.inertia.count, r0["count"])
    torch.testing.assert_close(single.inertia.value, r0["value"], rtol=1e-5, atol=1e-5)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(v, r0["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    for k, v in single.ta.state_dict().items():
        torch.testing.assert_close(v, r0["ta"][k], rtol=1e-4, atol=1e-5, msg=k)
    for a, b in zip(single.history, r0["history"]):
        assert a.get("step") == b.get("step")
        if a["phase"] == "train":
            assert a["tokens"] == b["tokens"]
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def _slow_save_worker(rank, world, port, out_dir):
    """Rank 0 takes seconds to write its checkpoint; rank 1 must not decide on resume before it is there."""
    import datetime
    import time

    from mindcore.mind import checkpoint as ckpt
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    # a short timeout: a split resume decision fails here in a minute instead of hanging for 30
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=90))
    try:
        save = ckpt.atomic_save
        ckpt.atomic_save = lambda s, p: (time.sleep(3), save(s, p))
        run = os.path.join(out_dir, "run")
        # FSDP: building the sharded student has no collective, so nothing else holds rank 1 back
        make_trainer(questions_per_step=2, fsdp=True, **OPTS).train(out_dir=run, stop_at=2)
        resumed = make_trainer(questions_per_step=2, fsdp=True, **OPTS)
        resumed.train(out_dir=run, resume=True)
        # both ranks resumed at step 2: one new step, no second TA warm-up (rank 0 also reloads the log's rows)
        steps = [r["step"] for r in resumed.history if r["phase"] == "train"]
        assert steps == ([3] if rank else [1, 2, 3]), resumed.history
        if rank:
            assert len(resumed.history) == 1, resumed.history
        torch.save({"model": {k: v.full_tensor() for k, v in resumed.model.state_dict().items()}},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_resume_waits_for_rank0_checkpoint(tmp_path):
    mp.spawn(_slow_save_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k


# ---------- FSDP2 (fsdp: true): the student sharded over the 2 ranks ----------
def _fsdp_worker(rank, world, port, out_dir, extra):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.distributed.tensor import DTensor
        tr = make_trainer(questions_per_step=2, fsdp=True, **extra, **OPTS)
        head = tr.model.get_output_embeddings().weight
        assert isinstance(head, DTensor) and head.to_local().shape[0] < head.shape[0]   # really sharded
        run = os.path.join(out_dir, "run")
        tr.train(out_dir=run, stop_at=2)           # checkpoint at step 2 (a collective: every rank saves)
        resumed = make_trainer(questions_per_step=2, fsdp=True, **extra, **OPTS)
        resumed.train(out_dir=run, resume=True)     # steps 3.. from the full state dicts
        full = resumed.export_model()               # rank 0: the unsharded copy; others None
        acc = resumed.evaluate(resumed.records[:3], max_n=3)
        assert (full is not None) == (rank == 0)
        if rank == 0:
            torch.save({"model": full.state_dict(), "ta": resumed.ta.state_dict(), "value": resumed.inertia.value,
                        "history": resumed.history, "acc": acc}, os.path.join(out_dir, "fsdp.pt"))
        torch.save({"acc": acc}, os.path.join(out_dir, f"acc{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
@pytest.mark.parametrize("extra", [pytest.param({}, id="separate-head"),
                                   pytest.param({"tie": True}, id="tied-head", marks=pytest.mark.slow),
                                   pytest.param({"lora_r": 4}, id="lora", marks=pytest.mark.slow)])
def test_fsdp_two_ranks_match_one_process(tmp_path, extra):
    mp.spawn(_fsdp_worker, args=(2, _free_port(), str(tmp_path), extra), nprocs=2, join=True)
    got = torch.load(tmp_path / "fsdp.pt", weights_only=False)
    single = make_trainer(questions_per_step=4, **extra, **OPTS)   # the same global batch, one process, no resume
    single.train()
    ref = single.model.state_dict()
    assert set(got["model"]) == set(ref)
    for k, v in ref.items():
        torch.testing.assert_close(got["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    for k, v in single.ta.state_dict().items():
        torch.testing.assert_close(got["ta"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(got["value"], single.inertia.value, rtol=1e-5, atol=1e-5)
    losses = [r["loss"] for r in got["history"] if r["phase"] == "train"]
    assert losses == pytest.approx([r["loss"] for r in single.history if r["phase"] == "train"][-len(losses):], rel=1e-4)
    # every rank gets rank 0's evaluation, and it is the one-process student's
    a0, a1 = (torch.load(tmp_path / f"acc{r}.pt", weights_only=False)["acc"] for r in (0, 1))
    assert a0 == a1 == got["acc"]
    assert a0["outcomes"] == single.evaluate(single.records[:3], max_n=3)["outcomes"]


def test_fsdp_needs_torchrun():
    with pytest.raises(ValueError, match="fsdp=true .*torchrun"):
        make_trainer(fsdp=True)


@pytest.mark.slow   # two torchrun jobs of the real CLI: about a minute on 2 CPU cores
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_cli_fsdp_under_torchrun(tmp_path):
    import json
    import subprocess
    import sys

    from mindcore.mind import checkpoint as ckpt
    from mindcore.mind.student import build_student
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("mode: mind\nn_train: 16\nn_id: 4\nn_ood: 4\nsteps: 4\nquestions_per_step: 2\nmax_len: 112\n"
                   "ta_warmup_steps: 2\nta_accum_scale: 2\nwarmup_steps: 1\nlog_every: 1000\nseed: 0\n"
                   "eval_max_new_tokens: 8\n")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    base = [sys.executable, "-m", "mindcore", "train", "--config", str(cfg), "--out", str(out)]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        str(_free_port()), *base[1:], "--fsdp"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 4 and 0 <= result["id_accuracy"] <= 1 and 0 <= result["ood_accuracy"] <= 1
    # the saved student is the unsharded model, the same weights as the (full state dict) checkpoint
    state = ckpt.load(out / "checkpoint.pt")
    assert state["opt_format"] == "fqn"
    model, _ = build_student(str(out / "student"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["model"][k]), k
    # resuming without --fsdp is refused in one line (the optimiser state is FQN-keyed)
    r = subprocess.run([*base, "--resume", "--steps", "5"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "fsdp" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]

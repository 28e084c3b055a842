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

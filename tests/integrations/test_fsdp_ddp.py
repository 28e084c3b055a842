"""FSDP2 (fully_shard, the head a DTensor) and DDP: 2 CPU ranks (gloo, torchrun) equal one process."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CASES = ["ddp:llama", "fsdp-root:llama", "fsdp-head:llama", "fsdp-root:smollm-tied"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one_process(tmp_path):
    out = tmp_path / "dist.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "dist_worker.py"), ",".join(CASES + ["tp:llama"]), str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert "tensor / vocab parallel head" in (res["tp:llama"]["refused"] or "")
    for case in CASES:
        r = res[case]
        assert r["loss"] == pytest.approx(r["ref_loss"], rel=1e-5), case
        worst = max(r["grad_rel_diff"].items(), key=lambda kv: kv[1])
        assert worst[1] < 1e-4, (case, worst)
        assert r["head_type"] == ("Parameter" if case.startswith("ddp") else "DTensor"), case

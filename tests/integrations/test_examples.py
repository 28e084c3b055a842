"""Every script in examples/ runs (in-process; the torchrun one as 2 CPU ranks, marked slow)."""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from test_fsdp_ddp import _free_port

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("name", ["transformers_patch", "hf_trainer", "trl_sft", "peft_lora"])
def test_example_runs(name, tmp_path, monkeypatch, capsys):
    pytest.importorskip({"trl_sft": "trl", "peft_lora": "peft"}.get(name, "transformers"))
    monkeypatch.chdir(tmp_path)                       # their output folders land here
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "loss" in out


@pytest.mark.slow
def test_fsdp2_example_under_torchrun(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(EXAMPLES / "fsdp2.py")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step 2 loss" in proc.stdout and "head DTensor" in proc.stdout

"""Checkpoints are data: a file that would run code on load is refused before any of it runs."""
import os
import pickle

import pytest
import torch

from mindcore.mind import checkpoint as ckpt
from tiny_setup import make_trainer


class _Payload:
    """Unpickling this calls os.system: what a crafted checkpoint does to a weights_only=False loader."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_files(tmp_path):
    marker = tmp_path / "pwned"
    zip_ckpt = tmp_path / "zip.pt"          # torch.save's zip format, payload inside the state dict
    torch.save({"step": 3, "model": {"w": torch.ones(2)}, "x": _Payload(marker)}, zip_ckpt)
    raw = tmp_path / "raw.pt"               # a bare pickle (torch's legacy format is read the same way)
    raw.write_bytes(pickle.dumps({"step": 3, "x": _Payload(marker)}, protocol=2))
    return marker, [zip_ckpt, raw]


def test_the_payload_is_real(tmp_path):
    # guards the tests below: the payload does run code when a loader trusts it
    marker, files = _malicious_files(tmp_path)
    torch.load(files[0], weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_is_refused(tmp_path):
    marker, files = _malicious_files(tmp_path)
    for f in files:
        with pytest.raises(ckpt.CheckpointError, match="refused: it is not plain data"):
            ckpt.load(f)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a checkpoint at all\n"])
def test_unreadable_checkpoint_is_a_clear_error(tmp_path, content):
    f = tmp_path / "checkpoint.pt"
    f.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError, match="checkpoint"):
        ckpt.load(f)


def test_truncated_real_checkpoint_is_a_clear_error(tmp_path):
    tr = make_trainer(steps=1, ta_warmup_steps=1)
    tr.train(out_dir=str(tmp_path))
    f = tmp_path / "checkpoint.pt"
    data = f.read_bytes()
    for cut in (len(data) // 3, len(data) - 7):
        f.write_bytes(data[:cut])
        with pytest.raises(ckpt.CheckpointError, match="unreadable"):
            ckpt.load(f)


def test_trainer_checkpoint_is_plain_data(tmp_path):
    tr = make_trainer(steps=2, ta_warmup_steps=1)
    tr.train(out_dir=str(tmp_path))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)   # torch's own strict loader
    assert state["step"] == 2 and "ta_opt" in state and isinstance(state["rng"]["numpy"][1], torch.Tensor)


def test_rng_state_round_trips(tmp_path):
    import random

    import numpy as np
    ckpt.atomic_save({"rng": ckpt.rng_state()}, tmp_path / "r.pt")
    want = (random.random(), float(np.random.rand()), float(torch.rand(())))
    ckpt.set_rng_state(ckpt.load(tmp_path / "r.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == want


def test_cli_resume_refuses_malicious_checkpoint(tmp_path, capsys):
    marker, files = _malicious_files(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    os.replace(files[0], out / "checkpoint.pt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n_train: 16\nn_id: 4\nn_ood: 4\nsteps: 2\nmode: uniform\n")
    from mindcore.cli import main
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume", "--no-eval"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "refused: it is not plain data" in lines[0], lines
    assert not marker.exists()

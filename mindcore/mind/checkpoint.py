"""Checkpoints are data, not code, and a kill during a save leaves the previous one usable.

A checkpoint holds only tensors, numbers, strings, None, lists, tuples and dicts, so it loads with
``torch.load(weights_only=True)``: a file that asks the unpickler to import or call anything (the way a
crafted pickle runs code) is refused with :class:`CheckpointError` before any of it runs.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import tempfile
import zipfile

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def atomic_save(obj, path):
    """torch.save to a temp file in the same directory, fsync, os.replace, fsync the directory."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for name in os.listdir(directory):  # temp files of earlier saves that were SIGKILLed mid-write
        if name.startswith(".tmp-" + os.path.basename(path)):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load(path, map_location="cpu"):
    """The checkpoint at ``path`` as plain data; CheckpointError if it is missing, unreadable or not data."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; train first or pass the run's out_dir")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is several paragraphs; its first line names the offending global
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path!r} refused: it is not plain data ({reason[:200]}); mindcore checkpoints "
            f"hold only tensors, numbers, strings, lists and dicts, so this file was not written by "
            f"mindcore or was tampered with; delete it or resume from a trusted run") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"checkpoint {path!r} is unreadable ({type(e).__name__}: {str(e)[:160]}); "
                              f"it is truncated or not a torch file; delete it to start over") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(state).__name__}, not a mindcore state dict; "
                              f"pass the out_dir of a mindcore run")
    return state


def truncate_jsonl(path, n_rows):
    """Keep the first ``n_rows`` complete lines of a JSONL log and return them parsed.

    Resume's one documented rewrite of the metrics file: rows written after the checkpoint are dropped
    by cutting the file at a byte offset (one truncate call), never by rewriting it, so a kill at any
    moment leaves the rows the checkpoint counts intact."""
    rows, offset = [], 0
    if not os.path.exists(path):
        return rows
    with open(path, "rb") as f:
        for line in f:
            if len(rows) == n_rows or not line.endswith(b"\n"):
                break
            rows.append(json.loads(line))
            offset += len(line)
    if len(rows) < n_rows:
        raise CheckpointError(f"{path} holds {len(rows)} complete rows but the checkpoint counts {n_rows}; "
                              f"the metrics file was edited or lost: restore it or start a fresh --out")
    os.truncate(path, offset)
    return rows


def seed_all(seed):
    """torch, numpy and python RNGs from one seed: a fresh process must not start from OS entropy, or
    two runs of one config (or a killed run and its resumes) end with different saved RNG states."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state():
    """Every RNG the trainer draws from, in types ``weights_only`` accepts (numpy's array as a tensor)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    py = state["python"]  # tuples may come back as lists from other writers; random wants tuples
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

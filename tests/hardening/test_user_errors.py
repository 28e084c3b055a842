"""Every bad config, record, flag, path or checkpoint given to a `mindcore` command is one line on
stderr naming what is wrong, exit status 2; the traceback only with --debug."""
import json
import os
import subprocess
import sys

import pytest
import torch

from mindcore import cli

GOOD = {"id": "q1", "question": "What is 1 + 1?", "answer": "2", "domain": "math",
        "perspectives": [{"name": "intuitive", "rationale": "One and one.\nFinal answer: 2", "answer": "2"}]}


def _rec(**change):
    r = json.loads(json.dumps(GOOD))
    for k, v in change.items():
        if k.startswith("p_"):
            r["perspectives"][0][k[2:]] = v
        else:
            r[k] = v
    return json.dumps(r)


def _files(tmp, train_lines=None, train_bytes=None, extra=""):
    good = tmp / "good.jsonl"
    good.write_text(json.dumps(GOOD) + "\n")
    train = tmp / "train.jsonl"
    if train_bytes is not None:
        train.write_bytes(train_bytes)
    else:
        train.write_text("".join(line + "\n" for line in train_lines))
    cfg = tmp / "data.yaml"
    cfg.write_text(f"train_file: {train}\nid_eval_file: {good}\nood_eval_file: {good}\nsteps: 1\n{extra}")
    return ["train", "--config", str(cfg), "--out", str(tmp / "out"), "--no-eval"]


def _bad_student(tmp):
    """A finished run whose student/tokenizer.json was damaged."""
    from mindcore.mind.config import TrainConfig
    cfg = TrainConfig(n_train=8, n_id=2, n_ood=2).to_dict()
    (tmp / "config.json").write_text(json.dumps(cfg))
    (tmp / "student").mkdir()
    (tmp / "student" / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 300}))
    (tmp / "student" / "tokenizer.json").write_text("{ damaged")
    return ["eval", "--run", str(tmp)]


def _yaml(tmp, text):
    f = tmp / "c.yaml"
    f.write_text(text)
    return ["train", "--config", str(f), "--out", str(tmp / "out")]


# (id, argv builder, words the one line must hold)
CASES = [
    ("config-missing", lambda t: ["train", "--config", str(t / "nope.yaml"), "--out", str(t)], ["does not exist"]),
    ("config-is-dir", lambda t: ["train", "--config", str(t), "--out", str(t / "o")], ["is a directory"]),
    ("yaml-syntax", lambda t: _yaml(t, "steps: 3\nlr: [0.1,\n"), ["c.yaml:", "not valid YAML"]),
    ("yaml-not-mapping", lambda t: _yaml(t, "- a\n- b\n"), ["mapping"]),
    ("unknown-key", lambda t: _yaml(t, "steps: 3\nlearning_rate: 0.1\n"), ["c.yaml:2", "learning_rate"]),
    ("lr-text", lambda t: _yaml(t, "steps: 3\nlr: fast\n"), ["c.yaml:2", "'lr'", "number"]),
    ("lr-yaml-3e-3", lambda t: _yaml(t, "lr: 3e-3\n"), ["c.yaml:1", "0.003"]),
    ("steps-absurd", lambda t: _yaml(t, "steps: 10000000000000\n"), ["c.yaml:1", "'steps'", "outside"]),
    ("steps-bool", lambda t: _yaml(t, "\nsteps: true\n"), ["c.yaml:2", "integer"]),
    ("max-len-negative", lambda t: _yaml(t, "max_len: -5\n"), ["c.yaml:1", "max_len"]),
    ("mode-unknown", lambda t: _yaml(t, "mode: best\n"), ["c.yaml:1", "mode", "choose one of"]),
    ("perspectives-str", lambda t: _yaml(t, "perspectives: all\n"), ["perspectives", "list"]),
    ("perspectives-unknown", lambda t: _yaml(t, "perspectives: [intuitive, vibes]\n"), ["c.yaml:1", "vibes"]),
    ("config-huge", lambda t: _yaml(t, "#" * (1 << 20) + "\n"), ["over", "bytes"]),
    ("flag-steps-zero", lambda t: ["train", "--config", "demo", "--out", str(t), "--steps", "0"], ["--steps", "> 0"]),
    ("flag-steps-text", lambda t: ["train", "--config", "demo", "--out", str(t), "--steps", "ten"], ["--steps"]),
    ("flag-mode", lambda t: ["train", "--config", "demo", "--out", str(t), "--mode", "best"], ["flag --mode"]),
    ("flag-typo", lambda t: ["train", "--config", "demo", "--out", str(t), "--stpes", "3"], ["--stpes"]),
    ("flag-missing", lambda t: ["train", "--out", str(t)], ["--config"]),
    ("no-command", lambda t: [], ["required"]),
    ("device-junk", lambda t: ["train", "--config", "demo", "--out", str(t), "--device", "banana"], ["banana"]),
    ("out-is-file", lambda t: ["train", "--config", "demo", "--out", str(t / "f")], ["is a file"]),
    ("rec-json", lambda t: _files(t, [json.dumps(GOOD), "{not json"]), ["train.jsonl:2", "malformed JSON"]),
    ("rec-missing-field", lambda t: _files(t, [_rec(question=None).replace('"question": null, ', "")]),
     ["train.jsonl:1", "'question'", "missing"]),
    ("rec-wrong-type", lambda t: _files(t, [_rec(answer=42)]), ["train.jsonl:1", "'answer'", "int"]),
    ("rec-list-type", lambda t: _files(t, [_rec(perspectives={"a": 1})]), ["train.jsonl:1", "'perspectives'"]),
    ("rec-absurd-field", lambda t: _files(t, [_rec(question="x" * 300_000)]), ["train.jsonl:1", "'question'", "limit"]),
    ("rec-absurd-line", lambda t: _files(t, train_bytes=b"{" + b" " * 4_100_000 + b"}\n"), ["train.jsonl:1", "longer"]),
    ("rec-not-utf8", lambda t: _files(t, train_bytes=b'{"id": "\xff\xfe"}\n'), ["train.jsonl:1", "UTF-8"]),
    ("rec-perspective", lambda t: _files(t, [_rec(p_name="vibes")]), ["train.jsonl:1", "vibes"]),
    ("rec-final-line", lambda t: _files(t, [_rec(p_rationale="One and one.")]), ["train.jsonl:1", "last line"]),
    ("rec-duplicate-id", lambda t: _files(t, [json.dumps(GOOD), json.dumps(GOOD)]), ["train.jsonl:2", "duplicate"]),
    ("rec-empty-file", lambda t: _files(t, []), ["train.jsonl", "no records"]),
    ("rec-over-max-len", lambda t: _files(t, [json.dumps(GOOD)], extra="max_len: 8\nn_train: 8\n"),
     ["train.jsonl", "max_len=8"]),
    ("rec-not-object", lambda t: _files(t, ["[1, 2]"]), ["train.jsonl:1", "JSON object"]),
    ("eval-no-run", lambda t: ["eval", "--run", str(t / "nope")], ["--run", "config.json"]),
    ("eval-bad-json", lambda t: (t.joinpath("config.json").write_text('{"mode": "mind",\n'), ["eval", "--run", str(t)])[1],
     ["config.json:", "JSON"]),
    ("eval-bad-field", lambda t: (t.joinpath("config.json").write_text('{"steps": "many"}'), ["eval", "--run", str(t)])[1],
     ["config.json", "'steps'"]),
    ("eval-bad-student", lambda t: _bad_student(t), ["student", "cannot be loaded"]),
    ("eval-max-n", lambda t: ["eval", "--run", str(t), "--max-n", "-1"], ["--max-n"]),
    ("demo-modes", lambda t: ["demo", "--out", str(t), "--modes", "single,best"], ["--modes", "best"]),
    ("demo-threads", lambda t: ["demo", "--out", str(t), "--threads", "0"], ["--threads"]),
    ("demo-out-file", lambda t: ["demo", "--out", str(t / "f")], ["is a file"]),
    ("synth-no-model", lambda t: ["synthesize", "--model-dir", str(t / "m"), "--builtin", "2", "--out", str(t / "o")],
     ["--model-dir", "not a directory"]),
    ("synth-flag", lambda t: ["synthesize", "--model-dir", str(t)], ["--out"]),
]


if not torch.cuda.is_available():
    CASES.append(("device-cuda", lambda t: ["train", "--config", "demo", "--out", str(t), "--device", "cuda"], ["CUDA"]))


def _run_inproc(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse exits itself
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("name,build,words", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_one_line(tmp_path, capsys, name, build, words):
    (tmp_path / "f").write_text("a file, not a directory\n")
    rc, err = _run_inproc(build(tmp_path), capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("mindcore"), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])


def _proc(argv, env=None):
    return subprocess.run([sys.executable, "-m", "mindcore", *argv], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


def test_real_process_one_line_and_debug_traceback(tmp_path):
    """The in-process matrix above holds for a real process too: exit 2, one line; --debug: traceback."""
    argv = _files(tmp_path, [json.dumps(GOOD), "{not json"])
    p = _proc(argv)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr and "train.jsonl:2" in p.stderr
    p = _proc(argv + ["--debug"])
    assert p.returncode != 0 and "Traceback" in p.stderr and "DataError" in p.stderr

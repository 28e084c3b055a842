"""`mindcore synthesize` against a real OpenAI-compatible server process (a real local model, loopback),
incremental writes, kill + resume, and clear errors for a server that is down or answers garbage."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")

from mindcore.mind.data import FINAL_PREFIX, load_jsonl  # noqa: E402
from mindcore.mind.synthesize import STYLE, hf_generate_fn, main, progress_path, synthesize  # noqa: E402
from mindcore.mind.teacher import builtin_questions  # noqa: E402
from mindcore.mind.teachers_remote import TeacherError, openai_generate_fn  # noqa: E402
from tiny_setup import save_tiny_teacher  # noqa: E402

HERE = Path(__file__).parent
PERSP = "intuitive,socratic"


@pytest.fixture(scope="module")
def questions():
    return builtin_questions(seed=0, n_train=6, n_id=0, n_ood=0)["train"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, questions):
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"), questions)


def _start_server(model_dir, delay_s=0.0):
    proc = subprocess.Popen([sys.executable, str(HERE / "openai_server.py"), "--model-dir", str(model_dir),
                             "--delay-s", str(delay_s)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


@pytest.fixture(scope="module")
def server(model_dir):
    proc, url = _start_server(model_dir, delay_s=0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def test_server_backend_gives_the_models_own_generations(server, model_dir, questions):
    prompts = [q["question"] for q in questions[:4]]
    remote = openai_generate_fn(server, "local", max_new_tokens=6, concurrency=3)(prompts)
    assert remote == hf_generate_fn(str(model_dir), max_new_tokens=6, batch_size=1)(prompts)
    assert any(t.strip() for t in remote)


def _cli(url, out, *extra):
    return [sys.executable, "-m", "mindcore", "synthesize", "--teacher-url", url, "--teacher-model", "local",
            "--builtin", "6", "--perspectives", PERSP, "--max-new-tokens", "4", "--chunk", "1",
            "--concurrency", "1", "--out", str(out), *extra]


@pytest.mark.slow    # ~40 s here: three CLI processes' start-up (the in-process failure test below is quick)
def test_kill_and_resume_equals_one_run(server, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    full = tmp_path / "full.jsonl"            # the uninterrupted run, in-process, same server and options
    questions = builtin_questions(seed=0, n_train=6, n_id=0, n_ood=0)["train"]
    synthesize(None, questions, full, PERSP.split(","), chunk_questions=1,
               generate_fn=openai_generate_fn(server, "local", max_new_tokens=4, concurrency=1))
    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(_cli(server, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prog = Path(progress_path(out))
    deadline = time.time() + 120
    while time.time() < deadline and (not prog.exists() or len(prog.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)                      # mid-run: 2 of 6 questions written
    proc.wait()
    done_before = prog.read_text().splitlines()
    assert 2 <= len(done_before) < 6
    res = subprocess.run(_cli(server, out, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert prog.read_text().splitlines()[:len(done_before)] == done_before   # kept, not redone
    key = lambda p: sorted(Path(p).read_text().splitlines())                 # noqa: E731
    assert key(prog) == key(progress_path(full)) and key(out) == key(full)
    assert json.loads(res.stdout.strip().splitlines()[-1])["questions"] == 6


def test_failure_keeps_records_and_resume_finishes(questions, tmp_path):
    """A teacher that dies after 2 chunks: those records stay; --resume gives the uninterrupted result."""
    def teacher(fail_after=None):
        calls = []

        def generate(prompts):
            calls.append(1)
            if fail_after is not None and len(calls) > fail_after:
                raise TeacherError("server went away")
            out = []
            for p in prompts:
                i, q = next((i, q) for i, q in enumerate(questions) if q["question"] in p)
                wrong = i % 2 and p.startswith(STYLE["socratic"])       # odd questions: not easy, kept
                out.append(f"so.\n{FINAL_PREFIX} {int(q['answer']) + wrong}")
            return out
        return generate

    kw = dict(perspectives=["intuitive", "socratic"], easy_keep=0.5, chunk_questions=2)
    stats_full = synthesize(None, questions, tmp_path / "full.jsonl", generate_fn=teacher(), **kw)
    out = tmp_path / "part.jsonl"
    with pytest.raises(TeacherError):
        synthesize(None, questions, out, generate_fn=teacher(fail_after=2), **kw)
    assert len(Path(progress_path(out)).read_text().splitlines()) == 4         # 2 chunks of 2 questions
    kept_before = [r.id for r in load_jsonl(out)]
    assert kept_before                                                         # records written, kept
    stats = synthesize(None, questions, out, generate_fn=teacher(), resume=True, **kw)
    assert stats == stats_full and stats["kept"] > 0
    assert [r.id for r in load_jsonl(out)] == [r.id for r in load_jsonl(tmp_path / "full.jsonl")]
    assert stats_full["easy_dropped"] + stats_full["kept"] == 6


def test_server_down_is_a_clear_error(tmp_path, capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                     # closed once the block ends: nothing listens
    gen = openai_generate_fn(f"http://127.0.0.1:{port}/v1", retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(TeacherError, match=r"failed 2 times .*start the server, fix --teacher-url"):
        gen(["hi"])
    out = tmp_path / "o.jsonl"
    rc = main(["--teacher-url", f"http://127.0.0.1:{port}/v1", "--builtin", "2", "--out", str(out),
               "--perspectives", PERSP, "--retries", "0"])
    err = capsys.readouterr().err
    assert rc == 1 and "failed 1 times" in err and "--resume" in err and out.exists()
    with pytest.raises(ValueError, match="not an http"):
        openai_generate_fn("127.0.0.1:8000")


def test_malformed_answer_is_a_clear_error():
    class Garbage(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            raw = b'{"choices": []}' if self.path.endswith("/chat/completions") else b"<html>oops"
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    try:
        with pytest.raises(TeacherError, match="malformed answer .*IndexError"):
            openai_generate_fn(url)(["q"])
        with pytest.raises(TeacherError, match="malformed answer .*JSONDecodeError"):
            openai_generate_fn(url, chat=False)(["q"])
    finally:
        srv.shutdown()


def test_vllm_backend_is_guarded():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from mindcore.mind.teachers_remote import vllm_generate_fn
    with pytest.raises(TeacherError, match="--vllm needs the vllm package"):
        vllm_generate_fn("some/model")

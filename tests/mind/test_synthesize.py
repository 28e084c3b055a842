"""`mindcore synthesize` mechanics: prompting, judging, canonical final line, down-sampling, the CLI."""
import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")

from mindcore.mind.data import FINAL_PREFIX, final_line, load_jsonl
from mindcore.mind.synthesize import STYLE, canonical_rationale, hf_generate_fn, main, synthesize
from mindcore.mind.teacher import builtin_questions
from tiny_setup import save_tiny_teacher

PERSP = ["intuitive", "socratic", "analogy"]


@pytest.fixture(scope="module")
def questions():
    return builtin_questions(seed=0, n_train=4, n_id=0, n_ood=0)["train"]


def _fake_teacher(questions, wrong):
    """Correct answers (sloppily formatted) except for the (question index, perspective) pairs in ``wrong``."""
    calls = []

    def generate(prompts):
        calls.append(len(prompts))
        out = []
        for prompt in prompts:
            qi = next(i for i, q in enumerate(questions) if q["question"] in prompt)
            persp = next(p for p, s in STYLE.items() if prompt.startswith(s))
            ans = int(questions[qi]["answer"])
            if (qi, persp) in wrong:
                out.append(f"I reckon.\n{FINAL_PREFIX} {ans + 1}")
            elif (qi, "no-line") in wrong:
                out.append("I forgot the format")
            else:
                out.append(f"{persp} reasoning for {ans}.\n{FINAL_PREFIX} {ans}.0.\nAnything after is cut.")
        return out
    return generate, calls


def test_canonical_rationale():
    assert canonical_rationale("a\nb\nFinal answer: 7.0.\nbye", "7") == "a\nb\nFinal answer: 7"
    assert canonical_rationale("Final answer: 7", "7") == "Final answer: 7"
    assert canonical_rationale("no line", "7") is None


def test_judging_and_down_sampling(questions, tmp_path):
    wrong = {(1, "socratic"), (2, "intuitive"), (2, "socratic"), (2, "analogy"), (3, "no-line")}
    gen, calls = _fake_teacher(questions, wrong)
    out = tmp_path / "syn.jsonl"
    stats = synthesize(None, questions, out, PERSP, easy_keep=0.0, generate_fn=gen)
    assert calls == [len(questions) * len(PERSP)]          # one prompt per (question, perspective)
    # q0 solved every way -> easy, dropped (easy_keep=0); q2 and q3 have no correct path
    assert stats == {"questions": 4, "kept": 1, "no_valid_path": 2, "easy_dropped": 1,
                     "paths_generated": 12, "paths_kept": 2}
    (rec,) = load_jsonl(out)                                # the file is valid MIND data
    q = questions[1]
    assert rec.id == q["id"] and rec.answer == q["answer"] and rec.domain == q["domain"]
    assert [p.name for p in rec.perspectives] == ["intuitive", "analogy"]
    for p in rec.perspectives:
        assert p.rationale == f"{p.name} reasoning for {q['answer']}.\n{final_line(q['answer'])}"
    assert rec.extra["teacher_pass_rate"] == pytest.approx(2 / 3)

    stats = synthesize(None, questions, out, PERSP, easy_keep=1.0, generate_fn=gen)
    assert stats["kept"] == 2 and stats["easy_dropped"] == 0
    assert [r.id for r in load_jsonl(out)] == [questions[0]["id"], questions[1]["id"]]


def test_bad_inputs(questions, tmp_path):
    gen, _ = _fake_teacher(questions, set())
    with pytest.raises(ValueError, match="unknown perspectives"):
        synthesize(None, questions, tmp_path / "x.jsonl", ["telepathy"], generate_fn=gen)
    with pytest.raises(ValueError, match=r"question #0: field\(s\) \['answer'\]"):
        synthesize(None, [{"id": "a", "question": "q", "domain": "d"}], tmp_path / "x.jsonl", generate_fn=gen)
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "question": "1+1", "answer": "2", "domain": "d"}\n{oops\n')
    with pytest.raises(ValueError, match="q.jsonl:2: .*malformed JSON"):
        main(["--model-dir", str(tmp_path), "--questions", str(bad), "--out", str(tmp_path / "o.jsonl")])


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory, questions):
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"), questions)


def test_hf_generation_is_batched_with_left_padding(tiny_teacher_dir, questions):
    prompts = [questions[0]["question"], "short", questions[1]["question"] + " and more words here"]
    batched = hf_generate_fn(str(tiny_teacher_dir), max_new_tokens=6, batch_size=3)(prompts)
    single = hf_generate_fn(str(tiny_teacher_dir), max_new_tokens=6, batch_size=1)(prompts)
    assert len(batched) == 3 and batched == single      # padding does not change greedy continuations
    assert any(t.strip() for t in batched)


def test_cli_with_random_teacher(tiny_teacher_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    rc = main(["--model-dir", str(tiny_teacher_dir), "--builtin", "2", "--out", str(out),
               "--perspectives", "intuitive,socratic", "--max-new-tokens", "6", "--batch-size", "3"])
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # a random model writes garbage: the judge drops every path, so no question survives
    assert rc == 0 and stats["paths_generated"] == 4 and stats["no_valid_path"] == 2 and stats["kept"] == 0
    assert out.is_file() and out.read_text() == ""

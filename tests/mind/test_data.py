"""MIND data: record validation, the built-in chain_sum data and its rule-based teacher."""
import json
import random

import pytest

pytest.importorskip("reasoning_gym")

from mindcore.mind import teacher
from mindcore.mind.data import (PERSPECTIVES, DataError, Path, Record, builtin_dataset, filter_perspectives,
                                final_line, load_jsonl, save_jsonl)
from mindcore.mind.evaluate import extract_answer


def _rec(**over):
    rec = {"id": "q1", "question": "2 + 3 =", "answer": "5", "domain": "toy",
           "perspectives": [{"name": "intuitive", "rationale": "2 and 3 make 5.\nFinal answer: 5", "answer": "5"},
                            {"name": "socratic", "rationale": "Q: 2+3? A: 5.\nFinal answer: 5", "answer": "5"}]}
    rec.update(over)
    return rec


def _write(tmp_path, lines, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return p


def _bad_path(i, **over):
    paths = _rec()["perspectives"]
    paths[i] = dict(paths[i], **over)
    return _rec(perspectives=paths)


@pytest.mark.parametrize("line, field, words", [
    ('{"id": "q9", "question": ', "<json>", "malformed JSON"),
    (_rec(answer=None), "answer", "non-empty string"),
    ({k: v for k, v in _rec().items() if k != "domain"}, "domain", "missing"),
    (_rec(perspectives=[]), "perspectives", "no valid path"),
    (_bad_path(1, name="telepathy"), "perspectives[1].name", "unknown perspective 'telepathy'"),
    (_bad_path(1, name="intuitive"), "perspectives[1].name", "repeats"),
    (_bad_path(1, rationale="Q: 2+3? A: 6.\nFinal answer: 6", answer="6"), "perspectives[1].answer", "differs"),
    (_bad_path(0, rationale="2 and 3 make 5."), "perspectives[0].rationale", "last line must be"),
    (_bad_path(0, answer=""), "perspectives[0].answer", "non-empty"),
    (_rec(perspectives=[{"name": "intuitive", "answer": "5"}]), "perspectives[0].rationale", "every path needs"),
    ([1, 2], "<record>", "JSON object"),
])
def test_bad_record_names_file_line_field(tmp_path, line, field, words):
    p = _write(tmp_path, [_rec(id="ok"), "", line])    # the blank line still counts: bad record is line 3
    with pytest.raises(DataError) as ei:
        load_jsonl(p)
    msg = str(ei.value)
    assert f"{p}:3" in msg and f"'{field}'" in msg and words in msg, msg
    assert ei.value.field == field


def test_duplicate_id_and_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"d.jsonl:2: field 'id': duplicate id 'q1' \(first on line 1\)"):
        load_jsonl(_write(tmp_path, [_rec(), _rec()]))
    with pytest.raises(DataError, match="empty"):
        load_jsonl(_write(tmp_path, [""], "e.jsonl"))
    with pytest.raises(FileNotFoundError):
        load_jsonl(tmp_path / "missing.jsonl")


def test_custom_perspective_set_and_filter(tmp_path):
    p = _write(tmp_path, [_rec(perspectives=[{"name": "haiku", "rationale": "Final answer: 5", "answer": "5"}])])
    with pytest.raises(DataError, match="unknown perspective"):
        load_jsonl(p)
    (rec,) = load_jsonl(p, perspectives=("haiku",))
    assert rec.perspectives == [Path("haiku", "Final answer: 5", "5")]
    recs = [Record.from_json(_rec()), Record.from_json(_rec(id="q2", perspectives=_rec()["perspectives"][:1]))]
    kept = filter_perspectives(recs, ["socratic"])
    assert [r.id for r in kept] == ["q1"] and [p.name for p in kept[0].perspectives] == ["socratic"]


def test_round_trip_keeps_extra_fields(tmp_path):
    recs = [Record.from_json(_rec(split="train", difficulty=3))]
    save_jsonl(recs, tmp_path / "out" / "r.jsonl")
    back = load_jsonl(tmp_path / "out" / "r.jsonl")
    assert back == recs and back[0].extra == {"split": "train", "difficulty": 3}
    assert Record.from_json(json.dumps(recs[0].to_json())) == recs[0]


@pytest.fixture(scope="module")
def data():
    return builtin_dataset(seed=3, n_train=150, n_id=60, n_ood=60)


def test_builtin_is_deterministic_and_seeded(data):
    again = builtin_dataset(seed=3, n_train=150, n_id=60, n_ood=60)
    assert again == data
    other = builtin_dataset(seed=4, n_train=150, n_id=60, n_ood=60)
    assert [r.question for r in other["train"]] != [r.question for r in data["train"]]
    assert {k: len(v) for k, v in data.items()} == {"train": 150, "id_eval": 60, "ood_eval": 60}


def test_eval_sets_deduplicated_against_train(data):
    train = {r.extra["expression"] for r in data["train"]}
    assert len(train) == len(data["train"])
    for split in ("id_eval", "ood_eval"):
        exprs = [r.extra["expression"] for r in data[split]]
        assert len(set(exprs)) == len(exprs) and not train & set(exprs), split
    ids = [r.id for s in data.values() for r in s]
    assert len(set(ids)) == len(ids)


def test_ood_variants_are_out_of_distribution(data):
    ood = data["ood_eval"]
    assert {r.extra["variant"] for r in ood} == set(teacher.OOD_VARIANTS)
    train_patterns = {teacher._pattern(r.extra["expression"]) for r in data["train"] + data["id_eval"]}
    train_questions = {r.question.replace(r.extra["expression"], "<e>") for r in data["train"]}
    for r in ood:
        if r.extra["variant"] == "held_out_pattern":
            assert teacher._pattern(r.extra["expression"]) in teacher.HELD_OUT_PATTERNS
        else:
            assert r.question.replace(r.extra["expression"], "<e>") not in train_questions
    assert not train_patterns & set(teacher.HELD_OUT_PATTERNS)


def test_easy_questions_down_sampled(data):
    terms = [r.extra["num_terms"] for r in data["train"]]
    # reasoning-gym draws 2, 3, 4 terms uniformly; easy_keep=0.3 leaves far fewer 2-term questions
    assert 0 < terms.count(2) < 0.6 * terms.count(3)
    all_easy = builtin_dataset(seed=3, n_train=150, n_id=1, n_ood=2, easy_keep=1.0)["train"]
    assert [r.extra["num_terms"] for r in all_easy].count(2) > 2 * terms.count(2)


def test_every_perspective_rendered_with_one_final_line(data):
    checker = teacher._chain_sum_checker()
    for r in data["train"] + data["id_eval"] + data["ood_eval"]:
        assert [p.name for p in r.perspectives] == list(PERSPECTIVES)
        assert len({p.rationale for p in r.perspectives}) == len(PERSPECTIVES)   # distinct styles
        assert r.answer == str(eval(r.extra["expression"]))                      # gold from reasoning-gym
        for p in r.perspectives:
            assert p.rationale.split("\n")[-1] == final_line(r.answer) and p.answer == r.answer
            assert checker(extract_answer(p.rationale), {"answer": r.answer}) == 1.0
            assert len(p.rationale) < 120      # short: tens of tokens


def test_styles_are_recognisably_different():
    paths = {p.name: p.rationale for p in teacher.teach(
        {"question": "?", "answer": "5", "expression": "3 + 4 - 2"})}
    assert paths["formal-symbolic"].startswith("s0=3; s1=s0+4=7; s2=s1-2=5")
    assert "Plus: 3+4=7. Minus: 2." in paths["decomposition"]
    assert paths["planning"].startswith("Plan:") and "Q: 7-2? A: 5." in paths["socratic"]
    assert "number line" in paths["analogy"] and "Not 9" in paths["contrastive"]
    assert "If the last term were 0" in paths["counterfactual"] and "make 7" in paths["intuitive"]


def test_judge_drops_wrong_rationales():
    entry = {"question": "?", "answer": "5", "expression": "3 + 4 - 2"}
    # a teacher that always slips: every rationale is off by one, the checker rejects all of them
    assert teacher.teach(entry, slip_rate=1.0, rng=random.Random(0)) == []
    wrong = dict(teacher.RENDERERS, analogy=lambda nums, ops, off: ("I guess 6.", 6))
    kept = teacher.teach(entry, renderers=wrong)
    assert [p.name for p in kept] == [p for p in PERSPECTIVES if p != "analogy"]
    # with occasional slips some paths go missing, but every kept path is right
    d = builtin_dataset(seed=1, n_train=40, n_id=1, n_ood=2, slip_rate=0.3)["train"]
    counts = [len(r.perspectives) for r in d]
    assert min(counts) < len(PERSPECTIVES) and all(p.answer == r.answer for r in d for p in r.perspectives)


def test_max_terms_bounds_train_and_longer_chain_goes_one_past():
    d = builtin_dataset(seed=3, n_train=80, n_id=20, n_ood=40, max_terms=3,
                        ood_variants=["longer_chain", "held_out_pattern"])
    assert {r.extra["num_terms"] for r in d["train"] + d["id_eval"]} == {2, 3}
    by = {v: [r.extra["num_terms"] for r in d["ood_eval"] if r.extra["variant"] == v]
          for v in ("longer_chain", "held_out_pattern")}
    assert set(by["longer_chain"]) == {4} and set(by["held_out_pattern"]) == {4} and len(by["longer_chain"]) == 20
    assert {r.extra["num_terms"] for r in builtin_dataset(seed=3, n_train=80, n_id=1, n_ood=5,
                                                          ood_variants=["longer_chain"])["ood_eval"]} == {5}
    with pytest.raises(ValueError, match="max_terms"):
        builtin_dataset(seed=3, n_train=8, n_id=1, n_ood=1, max_terms=2)

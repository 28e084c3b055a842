"""MIND records: one question, its gold answer and up to K judged rationales (JSONL, MIND.md §2).

Invariants every loaded record satisfies (checked by :func:`load_jsonl` before training starts):
- every rationale's last line is exactly ``final_line(answer)`` with the record's answer, so the answer
  span is the same text (and, checked again in batching, the same tokens) on every path;
- perspective names are known and unique within a record; ids are unique within a file;
- at least one path.
Nothing is dropped silently: a bad record is a :class:`DataError` naming file, line and field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path as _FsPath
from typing import Iterable

PERSPECTIVES: tuple[str, ...] = ("formal-symbolic", "intuitive", "decomposition", "planning",
                                 "analogy", "socratic", "contrastive", "counterfactual")
FINAL_PREFIX = "Final answer:"
_RECORD_FIELDS = ("id", "question", "answer", "domain", "perspectives")
_PATH_FIELDS = ("name", "rationale", "answer")
# Absurd sizes are input errors, not something to tokenize for minutes: a rationale is a few KB.
MAX_FIELD_CHARS = 200_000
MAX_LINE_BYTES = 4_000_000


def final_line(answer: str) -> str:
    """The line every rationale ends with."""
    return f"{FINAL_PREFIX} {answer}"


def format_prompt(question: str) -> str:
    """The student's prompt for a question: used by batching (training) and evaluate (generation)."""
    return question.strip() + "\n"


class DataError(ValueError):
    """Bad MIND data; the message names the file, line and field and says how to fix it."""

    def __init__(self, where: str, field_name: str, problem: str):
        super().__init__(f"{where}: field '{field_name}': {problem}")
        self.where, self.field, self.problem = where, field_name, problem


@dataclass
class Path:
    name: str
    rationale: str   # ends with final_line(answer)
    answer: str

    def to_json(self) -> dict:
        return {"name": self.name, "rationale": self.rationale, "answer": self.answer}


@dataclass
class Record:
    id: str
    question: str
    answer: str
    domain: str
    perspectives: list[Path]
    extra: dict = field(default_factory=dict)   # any other JSON fields, e.g. "split", "variant"

    def to_json(self) -> dict:
        out = {"id": self.id, "question": self.question, "answer": self.answer, "domain": self.domain,
               "perspectives": [p.to_json() for p in self.perspectives]}
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj, perspectives: Iterable[str] = PERSPECTIVES, where: str = "<record>") -> "Record":
        """Validate and build a record from a dict (or a JSON string); raises DataError."""
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as e:
                raise DataError(where, "<json>", f"malformed JSON ({e.msg} at column {e.colno}); "
                                "write one JSON object per line") from None
        return _validate(obj, tuple(perspectives), where)

    def path(self, name: str) -> Path | None:
        return next((p for p in self.perspectives if p.name == name), None)


def _need_str(obj: dict, key: str, where: str, prefix: str = "") -> str:
    if key not in obj:
        need = f"every path needs {', '.join(_PATH_FIELDS)}" if prefix else \
            f"every record needs {', '.join(_RECORD_FIELDS)}"
        raise DataError(where, prefix + key, f"missing; {need}")
    val = obj[key]
    if not isinstance(val, str) or not val.strip():
        raise DataError(where, prefix + key, f"must be a non-empty string, got {_short(val)}")
    if len(val) > MAX_FIELD_CHARS:
        raise DataError(where, prefix + key, f"is {len(val):,} characters, over the {MAX_FIELD_CHARS:,} limit; "
                        "shorten it (a rationale is a few thousand characters)")
    return val


def _short(val) -> str:
    text = repr(val)
    return f"{type(val).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _validate(obj, known: tuple[str, ...], where: str) -> Record:
    if not isinstance(obj, dict):
        raise DataError(where, "<record>", f"must be a JSON object, got {type(obj).__name__}")
    rid, question = _need_str(obj, "id", where), _need_str(obj, "question", where)
    answer, domain = _need_str(obj, "answer", where).strip(), _need_str(obj, "domain", where)
    raw_paths = obj.get("perspectives")
    if not isinstance(raw_paths, list):
        raise DataError(where, "perspectives", "missing or not a list of {name, rationale, answer}")
    if not raw_paths:
        raise DataError(where, "perspectives", f"question {rid!r} has no valid path; drop the record or "
                        "add at least one judged rationale")
    paths, seen = [], {}
    for i, rp in enumerate(raw_paths):
        pre = f"perspectives[{i}]."
        if not isinstance(rp, dict):
            raise DataError(where, f"perspectives[{i}]", "must be an object {name, rationale, answer}")
        name = _need_str(rp, "name", where, pre)
        if name not in known:
            raise DataError(where, pre + "name", f"unknown perspective {name!r}; known: {', '.join(known)} "
                            "(pass perspectives=... to accept others)")
        if name in seen:
            raise DataError(where, pre + "name", f"perspective {name!r} repeats perspectives[{seen[name]}]")
        seen[name] = i
        p_answer = _need_str(rp, "answer", where, pre).strip()
        rationale = _need_str(rp, "rationale", where, pre).rstrip()
        last = rationale.split("\n")[-1]
        if last != final_line(p_answer):
            raise DataError(where, pre + "rationale", f"last line must be {final_line(p_answer)!r}, got {last!r}")
        if p_answer != answer:
            raise DataError(where, pre + "answer", f"answer line {final_line(p_answer)!r} differs from the "
                            f"question's answer {answer!r}; all paths of a question must end in the same line")
        paths.append(Path(name, rationale, p_answer))
    extra = {k: v for k, v in obj.items() if k not in _RECORD_FIELDS}
    return Record(rid, question, answer, domain, paths, extra)


def load_jsonl(path, perspectives: Iterable[str] = PERSPECTIVES) -> list[Record]:
    """Load and validate a MIND JSONL file (blank lines are skipped); DataError on the first bad record."""
    known = tuple(perspectives)
    fname = str(path)
    if not _FsPath(fname).is_file():
        raise FileNotFoundError(f"MIND data file not found: {fname}")
    records, ids = [], {}
    with open(fname, "rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            where = f"{fname}:{lineno}"
            if len(raw) > MAX_LINE_BYTES:  # never read an unbounded line into memory
                raise DataError(where, "<line>", f"longer than {MAX_LINE_BYTES:,} bytes; one record a line, "
                                f"each field under {MAX_FIELD_CHARS:,} characters")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(where, "<line>", f"not UTF-8 (byte {e.start}); save the file as UTF-8") from None
            if not line.strip():
                continue
            rec = Record.from_json(line, known, where)
            if rec.id in ids:
                raise DataError(where, "id", f"duplicate id {rec.id!r} (first on line {ids[rec.id]})")
            ids[rec.id] = lineno
            records.append(rec)
    if not records:
        raise DataError(fname, "<file>", "no records; the file is empty")
    return records


def save_jsonl(records: Iterable[Record], path) -> None:
    p = _FsPath(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")


def filter_perspectives(records: list[Record], perspectives: Iterable[str]) -> list[Record]:
    """Documented filter: keep only the named paths, and only questions left with at least one path."""
    keep = set(perspectives)
    out = []
    for r in records:
        paths = [p for p in r.perspectives if p.name in keep]
        if paths:
            out.append(Record(r.id, r.question, r.answer, r.domain, paths, dict(r.extra)))
    return out


def builtin_dataset(seed: int = 0, n_train: int = 480, n_id: int = 200, n_ood: int = 200,
                    perspectives: Iterable[str] = PERSPECTIVES, **kwargs) -> dict[str, list[Record]]:
    """The offline demo data (reasoning-gym chain_sum, rule-based teacher); see teacher.builtin_splits."""
    from .teacher import builtin_splits
    return builtin_splits(seed=seed, n_train=n_train, n_id=n_id, n_ood=n_ood,
                          perspectives=tuple(perspectives), **kwargs)

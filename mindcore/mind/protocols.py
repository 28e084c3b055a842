"""How modes are compared (MIND.md section 6).

equal_questions (the paper's, default): every mode draws the same questions in the same order,
  ``questions_per_step`` per micro-batch; `single` trains one golden path of each, the multi-path
  modes all K paths. Same questions and epochs; multi-path modes get ~K x the supervised tokens.
equal_rows (compute-matched): `single` takes K x more questions per micro-batch (one path each), so
  every mode supervises the same number of rows per step; `single` then sees K x the epochs.

The multi-path modes draw the same batches under both protocols, so a study runs them once and
reports them under each (``distinct_runs``).
"""
from __future__ import annotations

PROTOCOLS = ("equal_questions", "equal_rows")
DEFAULT = "equal_questions"
DESCRIPTION = {
    "equal_questions": "same questions and epochs for every mode (the paper's protocol); single-path "
                       "modes train one rationale per question, multi-path modes all K",
    "equal_rows": "same supervised rows per step (compute-matched); `single` takes K x more questions "
                  "per step, one path each",
}


def check(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is unknown; choose one of {list(PROTOCOLS)}")
    return protocol


def single_path(mode: str) -> bool:
    return mode == "single"


def rows_per_question(mode: str, K: int) -> int:
    return 1 if single_path(mode) else K


def questions_per_micro(mode: str, protocol: str, questions_per_step: int, K: int) -> int:
    """Questions one micro-batch draws (per rank)."""
    check(protocol)
    if single_path(mode) and protocol == "equal_rows":
        return questions_per_step * K
    return questions_per_step


def run_key(mode: str, protocol: str) -> str:
    """Name of the training run that serves ``mode`` under ``protocol``."""
    return f"{mode}@{protocol}" if single_path(mode) else mode


def distinct_runs(modes, protocols) -> list[tuple[str, str]]:
    """(mode, protocol) pairs that need their own training run, in a stable order."""
    out, seen = [], set()
    for p in protocols:
        for m in modes:
            k = run_key(m, check(p))
            if k not in seen:
                seen.add(k)
                out.append((m, p))
    return out

"""B questions x K perspectives -> one padded batch of R = B*K rows (row r: question r // K, path r % K).

Row layout: [prompt tokens (bos + question + newline)] [rationale tokens] [eos] [right padding].
Labels are already shifted (labels[r, t] is the token after position t) and -100 on the prompt and
padding, so the per-token loss of hidden state t is CE(lm_head(h[r, t]), labels[r, t]).
A question without a path for some perspective gets a placeholder row (its prompt only, all labels
-100, ``path_mask`` False): shapes stay (B*K, ...) and the row has no loss tokens; the trainer must
exclude it from selection (``path_mask``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .data import PERSPECTIVES, Record, format_prompt

IGNORE = -100


@dataclass
class PathBatch:
    input_ids: torch.Tensor        # (R, L) long
    attention_mask: torch.Tensor   # (R, L) long
    position_ids: torch.Tensor     # (R, L) long
    labels: torch.Tensor           # (R, L) long, shifted, -100 on prompt/padding
    answer_pos: torch.Tensor       # (R, A) long: positions t whose label is an answer-span token
    answer_mask: torch.Tensor      # (R, A) bool
    question_index: torch.Tensor   # (R,) long: index of the record in the dataset
    perspective_index: torch.Tensor  # (R,) long: index into the ``perspectives`` given to make_batch
    num_questions: int
    num_perspectives: int
    path_mask: torch.Tensor        # (R,) bool: False for placeholder rows (question lacks that path)

    def to(self, device) -> "PathBatch":
        moved = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in self.__dict__.items()}
        return PathBatch(**moved)


def encode_prompt(tokenizer, question: str) -> list[int]:
    """Token ids of the student's prompt; the same function serves training and generation."""
    return list(tokenizer(format_prompt(question), add_special_tokens=True)["input_ids"])


def encode_path(tokenizer, rationale: str, answer: str) -> tuple[list[int], list[int]]:
    """(rationale ids + eos, indices of the answer-value tokens within them).

    The answer span is every token overlapping the answer's characters at the end of the final line.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("make_batch needs a fast (Rust) tokenizer for offset mappings; load it with use_fast=True")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; set tokenizer.eos_token before batching")
    enc = tokenizer(rationale, add_special_tokens=False, return_offsets_mapping=True)
    a0, a1 = len(rationale) - len(answer), len(rationale)
    span = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if s < a1 and e > a0]
    return list(enc["input_ids"]) + [tokenizer.eos_token_id], span


def make_batch(records: Sequence[Record], tokenizer, perspectives: Sequence[str] = PERSPECTIVES,
               max_len: int = 256, device="cpu", golden_only: str | None = None,
               question_indices: Sequence[int] | None = None) -> PathBatch:
    """Pack the paths of ``records``; ``golden_only`` = one perspective name -> one row per question.

    ``question_indices``: each record's index in the full dataset (default 0..B-1), for inertia slots.
    Raises ValueError when a row exceeds ``max_len`` or a question's answer tokens differ across paths.
    """
    persp = list(perspectives)
    if golden_only is not None:
        if golden_only not in persp:
            raise ValueError(f"golden_only={golden_only!r} is not among perspectives {persp}")
        chosen = [golden_only]
    else:
        chosen = persp
    if not records:
        raise ValueError("make_batch needs at least one record")
    qidx = list(range(len(records))) if question_indices is None else list(question_indices)
    if len(qidx) != len(records):
        raise ValueError(f"question_indices has {len(qidx)} entries for {len(records)} records")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    rows = []   # (ids, prompt_len, answer_positions, present)
    for rec in records:
        prompt = encode_prompt(tokenizer, rec.question)
        span_ids = None
        for name in chosen:
            path = rec.path(name)
            if path is None:
                rows.append((prompt, len(prompt), [], False))
                continue
            target, span = encode_path(tokenizer, path.rationale, path.answer)
            toks = [target[i] for i in span]
            if not span:
                raise ValueError(f"record {rec.id!r}, perspective {name!r}: no token covers the answer "
                                 f"{path.answer!r}; the tokenizer drops it")
            if span_ids is None:
                span_ids = toks
            elif toks != span_ids:
                raise ValueError(
                    f"record {rec.id!r}: the answer {path.answer!r} tokenizes to {toks} on path {name!r} but "
                    f"to {span_ids} on an earlier path; the consistency term needs identical answer tokens. "
                    "Use a tokenizer whose pre-tokenizer splits at the final-answer line (e.g. build_tokenizer).")
            ids = prompt + target
            if len(ids) > max_len:
                raise ValueError(f"record {rec.id!r}, perspective {name!r}: {len(ids)} tokens exceed "
                                 f"max_len={max_len}; raise max_len or shorten the rationale")
            # the answer token at sequence index j is the label of position j - 1
            rows.append((ids, len(prompt), [len(prompt) + i - 1 for i in span], True))

    R, L = len(rows), max(len(r[0]) for r in rows)
    A = max(1, max(len(r[2]) for r in rows))
    input_ids = torch.full((R, L), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((R, L), dtype=torch.long)
    labels = torch.full((R, L), IGNORE, dtype=torch.long)
    answer_pos = torch.zeros((R, A), dtype=torch.long)
    answer_mask = torch.zeros((R, A), dtype=torch.bool)
    for r, (ids, plen, apos, _) in enumerate(rows):
        n = len(ids)
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[r, :n] = t
        attention_mask[r, :n] = 1
        labels[r, plen - 1:n - 1] = t[plen:]          # predict every rationale token and the eos
        answer_pos[r, :len(apos)] = torch.tensor(apos, dtype=torch.long)
        answer_mask[r, :len(apos)] = True
    K = len(chosen)
    k_of = torch.tensor([persp.index(n) for n in chosen], dtype=torch.long)
    batch = PathBatch(
        input_ids=input_ids, attention_mask=attention_mask,
        position_ids=torch.arange(L, dtype=torch.long).expand(R, L).contiguous(),
        labels=labels, answer_pos=answer_pos, answer_mask=answer_mask,
        question_index=torch.tensor(qidx, dtype=torch.long).repeat_interleave(K),
        perspective_index=k_of.repeat(len(records)),
        num_questions=len(records), num_perspectives=K,
        path_mask=torch.tensor([r[3] for r in rows], dtype=torch.bool))
    return batch if str(device) == "cpu" else batch.to(device)

"""Tokenizer and B x K path batching."""
import pytest

pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")
import torch

from mindcore.mind.batching import IGNORE, encode_prompt, make_batch
from mindcore.mind.data import PERSPECTIVES, Path, Record, format_prompt
from mindcore.mind.tokenizer import build_tokenizer, load_tokenizer


def test_tokenizer_round_trip_digits_and_specials(tok, data, tmp_path):
    assert len(tok) == 320 and len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    text = data["train"][0].perspectives[3].rationale + " 1234567890 -42 ünïcode"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(ids)
    digit_pieces = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digit_pieces and all(len(p.lstrip("Ġ")) == 1 for p in digit_pieces)   # one digit a token
    assert tok("7")["input_ids"][0] == tok.bos_token_id
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert back(text)["input_ids"] == tok(text)["input_ids"] and back.eos_token == tok.eos_token
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(["x"], vocab_size=100)


def test_shapes_labels_and_prompt_ignored(tok, data):
    recs = data["train"][:5]
    b = make_batch(recs, tok, PERSPECTIVES, max_len=256, question_indices=[10, 11, 12, 13, 14])
    K, R = len(PERSPECTIVES), 5 * len(PERSPECTIVES)
    assert b.input_ids.shape == b.labels.shape == b.attention_mask.shape == b.position_ids.shape
    assert b.input_ids.shape[0] == R and (b.num_questions, b.num_perspectives) == (5, K)
    assert b.question_index.tolist() == [q for q in range(10, 15) for _ in range(K)]
    assert b.perspective_index.tolist() == list(range(K)) * 5 and b.path_mask.all()
    for r in range(R):
        rec, path = recs[r // K], recs[r // K].perspectives[r % K]
        prompt = encode_prompt(tok, rec.question)
        target = tok(path.rationale, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        n = len(prompt) + len(target)
        assert b.input_ids[r, :n].tolist() == prompt + target
        assert b.attention_mask[r].sum() == n and (b.input_ids[r, n:] == tok.pad_token_id).all()
        lab = b.labels[r]
        assert (lab[:len(prompt) - 1] == IGNORE).all() and (lab[n - 1:] == IGNORE).all()   # prompt, pad
        assert lab[len(prompt) - 1:n - 1].tolist() == target                                # shifted by one
        assert tok.decode(b.input_ids[r, :len(prompt)]).endswith(format_prompt(rec.question))


def test_answer_span_is_the_answer_on_every_path(tok, data):
    recs = [r for r in data["train"] if r.answer.startswith("-")][:2] + data["train"][:2]
    b = make_batch(recs, tok, PERSPECTIVES, max_len=256)
    K = len(PERSPECTIVES)
    for q, rec in enumerate(recs):
        spans = []
        for r in range(q * K, (q + 1) * K):
            pos = b.answer_pos[r][b.answer_mask[r]]
            assert (b.labels[r, pos] == b.input_ids[r, pos + 1]).all()      # labelled answer tokens
            spans.append(b.labels[r, pos].tolist())
            # the span is the last tokens before eos, and decodes to the answer (with the leading space)
            assert b.labels[r, pos[-1] + 1] == tok.eos_token_id
            assert tok.decode(spans[-1]).strip() == rec.answer
        assert all(s == spans[0] for s in spans)
    assert not b.answer_mask[:, b.answer_mask.sum(1).max():].any()


def test_golden_only_and_missing_paths(tok, data):
    full, partial = data["train"][0], data["train"][1]
    partial = Record(partial.id, partial.question, partial.answer, partial.domain, partial.perspectives[:3])
    b = make_batch([full, partial], tok, PERSPECTIVES, max_len=256, golden_only="planning")
    assert b.input_ids.shape[0] == 2 and b.perspective_index.tolist() == [3, 3]
    assert b.path_mask.tolist() == [True, False]
    assert (b.labels[1] == IGNORE).all() and not b.answer_mask[1].any()
    assert b.attention_mask[1].sum() == len(encode_prompt(tok, partial.question))   # the prompt keeps it finite
    b2 = make_batch([partial], tok, ["socratic", "formal-symbolic"], max_len=256)
    assert b2.path_mask.tolist() == [False, True] and b2.perspective_index.tolist() == [0, 1]
    with pytest.raises(ValueError, match="golden_only"):
        make_batch([full], tok, ["socratic"], golden_only="planning")


def test_bad_inputs(tok, data):
    with pytest.raises(ValueError, match="max_len=16"):
        make_batch(data["train"][:1], tok, max_len=16)
    with pytest.raises(ValueError, match="question_indices"):
        make_batch(data["train"][:2], tok, question_indices=[0])


class _ContextTokenizer:
    """A tokenizer double whose answer tokens depend on the path's text (as a careless BPE could)."""

    def __init__(self, tok):
        self._tok = tok

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, text, **kw):
        enc = self._tok(text, **kw)
        if kw.get("return_offsets_mapping") and text.startswith("Q:"):
            enc["input_ids"] = enc["input_ids"][:-1] + [enc["input_ids"][-1] + 1]
        return enc


def test_answer_tokens_that_differ_across_paths_raise(tok):
    rec = Record("q", "1 + 1 =", "2", "toy", [Path("intuitive", "1 and 1 make 2.\nFinal answer: 2", "2"),
                                             Path("socratic", "Q: 1+1? A: 2.\nFinal answer: 2", "2")])
    make_batch([rec], tok, ["intuitive", "socratic"])    # fine with the real tokenizer
    with pytest.raises(ValueError, match="record 'q'.*identical answer tokens"):
        make_batch([rec], _ContextTokenizer(tok), ["intuitive", "socratic"])


def test_batch_to_device_roundtrip(tok, data):
    b = make_batch(data["train"][:2], tok)
    moved = b.to("cpu")
    assert all(torch.equal(getattr(b, k), getattr(moved, k)) for k in ("input_ids", "labels", "answer_pos"))

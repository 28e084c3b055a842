"""Tiny random-init causal LMs of each family, built from a config (no hub download)."""
import torch
import transformers

V = 101
COMMON = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128)
FAMILIES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(tie_word_embeddings=False)),
    "smollm-tied": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(tie_word_embeddings=True)),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, {}),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {}),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, dict(head_dim=8)),
    "gemma": (transformers.GemmaConfig, transformers.GemmaForCausalLM, dict(head_dim=8)),
    "gemma2-nocap": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM,
                     dict(head_dim=8, final_logit_softcapping=None)),
    "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM, dict(pad_token_id=0)),
    "granite": (transformers.GraniteConfig, transformers.GraniteForCausalLM, dict(logits_scaling=4.0)),
}


def tiny(family="llama", seed=0, **overrides):
    cfg_cls, model_cls, extra = FAMILIES[family]
    cfg = cfg_cls(**{**COMMON, **extra, **overrides})
    torch.manual_seed(seed)
    return model_cls(cfg)


def batch(B=3, T=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100                  # prompt
    attn = torch.ones_like(ids)
    attn[-1, -4:] = 0                     # right padding on the last row
    labels[-1, -4:] = -100
    return ids, labels, attn


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

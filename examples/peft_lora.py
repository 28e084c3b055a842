"""PEFT LoRA with mindcore's loss: the LM head stays frozen and gets no gradient.

python examples/peft_lora.py
"""
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig

import mindcore.integrations

torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(LlamaConfig(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4))
model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))  # lm_head not targeted
mindcore.integrations.patch(model)                      # <- the change
input_ids = torch.randint(0, 256, (4, 16))
out = model(input_ids=input_ids, labels=input_ids)
out.loss.backward()
print(f"loss {out.loss.item():.4f}  head grad {model.get_base_model().lm_head.weight.grad}")

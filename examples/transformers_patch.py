"""mindcore's fused loss in a transformers causal LM: one call, same loss as stock, no logits.

python examples/transformers_patch.py        (a tiny random Llama; use from_pretrained for a real one)
"""
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

import mindcore.integrations

torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(LlamaConfig(   # or AutoModelForCausalLM.from_pretrained(...)
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4))
input_ids = torch.randint(0, 256, (4, 16))
labels = input_ids.clone()
labels[:, :4] = -100                                    # prompt tokens: no loss

stock = model(input_ids=input_ids, labels=labels).loss
mindcore.integrations.patch(model)                      # <- the change
out = model(input_ids=input_ids, labels=labels, sample_weights=torch.tensor([1.0, 0.5, 0.0, 2.0]))
out.loss.backward()
print(f"loss: stock {stock.item():.6f}  mindcore {model(input_ids=input_ids, labels=labels).loss.item():.6f}  "
      f"logits {out.logits}  per-sample {out.sample_losses.tolist()}")

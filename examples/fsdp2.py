"""FSDP2 (fully_shard) with mindcore's loss; the LM head is a sharded DTensor between steps.

torchrun --nproc_per_node 2 examples/fsdp2.py          (gloo on CPU, NCCL on GPUs)
"""
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, LlamaConfig

import mindcore.integrations

dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(LlamaConfig(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4))
mindcore.integrations.patch(model)                      # <- the change ...
mindcore.integrations.fsdp.shard(model)                 # ... and fully_shard per decoder layer + root
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
torch.manual_seed(1 + dist.get_rank())                  # each rank its own data
for step in range(3):
    input_ids = torch.randint(0, 256, (2, 16))
    loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    if dist.get_rank() == 0:
        print(f"step {step} loss {loss.item():.4f} head {type(model.lm_head.weight).__name__}")
dist.destroy_process_group()

"""transformers.Trainer with mindcore's loss: use MindcoreTrainer instead of Trainer.

python examples/hf_trainer.py
"""
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaConfig, TrainingArguments

from mindcore.integrations import MindcoreTrainer   # <- the change (was: from transformers import Trainer)

torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(LlamaConfig(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4))
rows = [{"input_ids": ids, "labels": ids, "sample_weights": float(i % 4 > 0)}   # optional: 0 drops a sample
        for i, ids in enumerate(torch.randint(0, 256, (16, 24)).tolist())]
args = TrainingArguments("out/hf_trainer", max_steps=4, per_device_train_batch_size=4, logging_steps=1,
                         report_to=[], save_strategy="no", use_cpu=True)
trainer = MindcoreTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
trainer.train()
print("losses", [h["loss"] for h in trainer.state.log_history if "loss" in h])

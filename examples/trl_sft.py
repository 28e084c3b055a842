"""TRL SFTTrainer with mindcore's loss (packing / padding-free included): use MindcoreSFTTrainer.

python examples/trl_sft.py
"""
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaConfig
from trl import SFTConfig

from mindcore.integrations import MindcoreSFTTrainer   # <- the change (was: from trl import SFTTrainer)
from mindcore.mind.tokenizer import build_tokenizer    # a small offline tokenizer; use your model's

texts = [" ".join(f"word{(i * 7 + j) % 50}" for j in range(5 + i % 9)) for i in range(64)]
tokenizer = build_tokenizer(texts, vocab_size=300)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(LlamaConfig(
    vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    pad_token_id=tokenizer.pad_token_id))
args = SFTConfig("out/trl_sft", max_steps=4, per_device_train_batch_size=4, packing=True, max_length=64,
                 logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False)
trainer = MindcoreSFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                             processing_class=tokenizer)
trainer.train()
print("losses", [h["loss"] for h in trainer.state.log_history if "loss" in h])

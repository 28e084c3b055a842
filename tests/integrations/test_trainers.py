"""HF Trainer and TRL SFTTrainer: a few steps with mindcore's loss equal the stock trainers' steps."""
import pytest
import torch

from hf_tiny import V, tiny

datasets = pytest.importorskip("datasets")
import transformers  # noqa: E402

from mindcore.integrations import MindcoreTrainer, unpatch  # noqa: E402

ARGS = dict(max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=2, learning_rate=0.5, optim="sgd",
            logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0, data_seed=0,
            dataloader_num_workers=0, disable_tqdm=True)


def _rows(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        ids = torch.randint(1, V, (int(torch.randint(5, 14, (1,), generator=g)),), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * 2 + ids[2:], "sample_weights": 1.0 + (i % 3)})
    return rows


def _collate(rows, weights):
    T = max(len(r["input_ids"]) for r in rows)
    pad = lambda xs, v: [x + [v] * (T - len(x)) for x in xs]                        # noqa: E731
    out = {"input_ids": torch.tensor(pad([r["input_ids"] for r in rows], 0)),
           "labels": torch.tensor(pad([r["labels"] for r in rows], -100)),
           "attention_mask": torch.tensor(pad([[1] * len(r["input_ids"]) for r in rows], 0))}
    if weights:
        out["sample_weights"] = torch.tensor([r["sample_weights"] for r in rows])
    return out


def _train(cls, tmp_path, weights=False, **extra):
    model = tiny("llama")
    ds = datasets.Dataset.from_list(_rows())
    args = transformers.TrainingArguments(output_dir=str(tmp_path), remove_unused_columns=False, **ARGS)
    tr = cls(model=model, args=args, train_dataset=ds, data_collator=lambda rows: _collate(rows, weights), **extra)
    tr.train()
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}, model


def test_hf_trainer_steps_equal_stock(tmp_path):
    ref_losses, ref_params, _ = _train(transformers.Trainer, tmp_path / "a")
    losses, params, model = _train(MindcoreTrainer, tmp_path / "b")
    assert len(losses) == 3
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-4, atol=1e-5)
    for n in params:
        torch.testing.assert_close(params[n], ref_params[n], rtol=1e-4, atol=1e-5, msg=n)
    unpatch(model)


def test_hf_trainer_sample_weights_column(tmp_path):
    losses, _, _ = _train(MindcoreTrainer, tmp_path / "w", weights=True)
    plain, _, _ = _train(MindcoreTrainer, tmp_path / "p")
    assert len(losses) == 3 and losses[0] != pytest.approx(plain[0])   # the weights reached the loss


def _tokenizer():
    from mindcore.mind.tokenizer import build_tokenizer
    words = [f"w{i} " for i in range(60)]
    return build_tokenizer(["".join(words[i:i + 9]) for i in range(50)], vocab_size=300)


@pytest.mark.parametrize("packing", [False, True])   # True: bfd packing, padding-free (position_ids, cu_seq_lens)
def test_trl_sft_steps_equal_stock(tmp_path, packing):
    trl = pytest.importorskip("trl")
    from mindcore.integrations import MindcoreSFTTrainer
    tok = _tokenizer()
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(f"w{int(i)}" for i in torch.randint(0, 60, (int(n),), generator=g))
             for n in torch.randint(4, 12, (12,), generator=g)]
    ds = datasets.Dataset.from_dict({"text": texts})

    def run(cls, out):
        model = tiny("llama", vocab_size=len(tok), pad_token_id=tok.pad_token_id)
        args = trl.SFTConfig(output_dir=str(out), packing=packing, max_length=32, bf16=False, **ARGS)  # fp32: exact parity
        tr = cls(model=model, args=args, train_dataset=ds, processing_class=tok)
        tr.train()
        if packing:
            assert tr.padding_free
        return ([h["loss"] for h in tr.state.log_history if "loss" in h],
                {n: p.detach().clone() for n, p in model.named_parameters()})

    ref_losses, ref_params = run(trl.SFTTrainer, tmp_path / "a")
    losses, params = run(MindcoreSFTTrainer, tmp_path / "b")
    assert len(losses) == 3
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-4, atol=1e-5)
    for n in params:
        torch.testing.assert_close(params[n], ref_params[n], rtol=1e-4, atol=1e-5, msg=n)

"""patch(model): every family's loss and gradients equal stock transformers'; per-sample losses; packing."""
import pytest
import torch

import mindcore.integrations as mi

from hf_tiny import FAMILIES, V, batch, grads, tiny


def _loss_and_grads(model, **kw):
    model.zero_grad()
    out = model(**kw)
    out.loss.backward()
    return out, grads(model)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_loss_and_grads_equal_stock(family):
    model = tiny(family)
    ids, labels, attn = batch()
    for num_items in (None, torch.tensor(17)):          # HF Trainer's gradient-accumulation normaliser
        kw = dict(input_ids=ids, labels=labels, attention_mask=attn, num_items_in_batch=num_items)
        ref, g_ref = _loss_and_grads(model, **kw)
        mi.patch(model)
        out, g = _loss_and_grads(model, **kw)
        mi.unpatch(model)
        assert out.logits is None and ref.logits is not None
        torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-6)
        assert g.keys() == g_ref.keys()
        for n in g:
            torch.testing.assert_close(g[n], g_ref[n], rtol=1e-4, atol=1e-6, msg=f"{family} grad {n}")


def test_sample_losses_and_weights():
    model = mi.patch(tiny("llama"))
    ids, labels, attn = batch()
    out = model(input_ids=ids, labels=labels, attention_mask=attn)
    assert out.sample_losses.shape == (3,) and out.sample_tokens.tolist() == [9, 9, 5]
    mi.unpatch(model)
    for b in range(3):            # each row alone (its padding cut off) gives that row's loss
        n = int(attn[b].sum())
        own = model(input_ids=ids[b:b + 1, :n], labels=labels[b:b + 1, :n]).loss
        torch.testing.assert_close(out.sample_losses[b], own, rtol=1e-5, atol=1e-6)
    w = torch.tensor([0.5, 0.0, 2.0])
    n = out.sample_tokens.float()
    ones = mi.patch(model)(input_ids=ids, labels=labels, attention_mask=attn, sample_weights=torch.ones(3))
    torch.testing.assert_close(ones.loss, out.loss)                      # all ones: the stock loss
    out_w = model(input_ids=ids, labels=labels, attention_mask=attn, sample_weights=w, num_items_in_batch=7)
    torch.testing.assert_close(out_w.loss, (w * n * out.sample_losses).sum() / 7, rtol=1e-5, atol=1e-6)
    out_w.loss.backward()
    assert model.lm_head.weight.grad.abs().sum() > 0
    mi.unpatch(model)
    mi.patch(model, sample_reduction="mean")                             # the op's own path weights
    out_m = model(input_ids=ids, labels=labels, attention_mask=attn, sample_weights=w)
    torch.testing.assert_close(out_m.loss, (w * out.sample_losses).sum(), rtol=1e-5, atol=1e-6)


def _packed(lengths=(4, 6, 3), seed=2):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(0, V, (n,), generator=g) for n in lengths]
    ids = torch.cat(seqs)[None]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    labels = ids.clone()
    starts = torch.tensor([0, *torch.tensor(lengths).cumsum(0)[:-1].tolist()])
    labels[0, starts] = -100           # no target across a sequence boundary (as the collators do)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return seqs, ids, pos, labels, cu


@pytest.mark.parametrize("with_cu", [False, True])
def test_packed_one_path_per_sequence(with_cu):
    model = tiny("qwen2")
    seqs, ids, pos, labels, cu = _packed()
    kw = dict(input_ids=ids, position_ids=pos, labels=labels)
    if with_cu:
        kw.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=6, max_length_k=6)
    ref, g_ref = _loss_and_grads(model, **kw)
    mi.patch(model)
    out, g = _loss_and_grads(model, **kw)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-6)
    for n in g:
        torch.testing.assert_close(g[n], g_ref[n], rtol=1e-4, atol=1e-6)
    assert out.sample_losses.shape == (3,)
    mi.unpatch(model)
    with torch.no_grad():           # each sequence's mean CE, from the stock packed forward's logits
        logits = model(input_ids=ids, position_ids=pos).logits[0, :-1]
        ce = torch.nn.functional.cross_entropy(logits, labels[0, 1:], reduction="none")
        valid = labels[0, 1:] != -100
        bounds = cu.tolist()
        for s in range(len(seqs)):
            sl = slice(bounds[s], bounds[s + 1] - 1)   # hidden positions of sequence s (shifted)
            own = ce[sl][valid[sl]].mean()
            torch.testing.assert_close(out.sample_losses[s], own, rtol=1e-5, atol=1e-6)
    mi.patch(model)
    with pytest.raises(ValueError, match=r"sample_weights has shape \(2,\) but the batch has 3 packed sequences"):
        model(**kw, sample_weights=torch.ones(2))


def test_generate_and_unpatch_restore_stock():
    model = tiny("llama").eval()
    ids = torch.randint(0, V, (1, 5))
    ref = model.generate(ids, max_new_tokens=4, do_sample=False)
    stock_forward = type(model).forward
    mi.patch(model)
    assert mi.is_patched(model) and mi.patch(model) is model           # idempotent, same object
    torch.testing.assert_close(model.generate(ids, max_new_tokens=4, do_sample=False), ref)
    assert model(input_ids=ids).logits.shape == (1, 5, V)               # no labels: stock logits
    mi.unpatch(model)
    assert not mi.is_patched(model) and model.forward.__func__ is stock_forward
    assert "forward" not in model.lm_head.__dict__


def test_return_logits_and_state_dict_unchanged():
    model = tiny("llama")
    keys = set(model.state_dict())
    mi.patch(model, return_logits=True)
    ids, labels, attn = batch()
    out = model(input_ids=ids, labels=labels, attention_mask=attn)
    assert out.logits.shape == (3, 12, V) and set(model.state_dict()) == keys


def test_refusals_and_bad_input():
    with pytest.raises(ValueError, match="sample_reduction='sum'; pass 'token' or 'mean'"):
        mi.patch(tiny("llama"), sample_reduction="sum")
    with pytest.raises(mi.UnsupportedModelError, match="final_logit_softcapping=30.0"):
        mi.patch(tiny("gemma2-nocap", final_logit_softcapping=30.0))
    with pytest.raises(mi.UnsupportedModelError, match="no output embeddings"):
        mi.patch(torch.nn.Linear(3, 3))
    import transformers
    with pytest.raises(mi.UnsupportedModelError, match="no output embeddings"):
        mi.patch(transformers.LlamaModel(tiny("llama").config))
    model = mi.patch(tiny("llama"))
    ids, labels, attn = batch()
    with pytest.raises(ValueError, match=r"labels has shape \(3, 11\) but the input is \(3, 12\)"):
        model(input_ids=ids, labels=labels[:, :-1])
    with pytest.raises(ValueError, match=r"sample_weights has shape \(2,\) but the batch has 3 batch rows"):
        model(input_ids=ids, labels=labels, sample_weights=torch.ones(2))
    with pytest.raises(ValueError, match="sample_weights is given without labels"):
        model(input_ids=ids, sample_weights=torch.ones(3))
    with pytest.raises(ValueError, match="labels has dtype torch.float32"):
        model(input_ids=ids, labels=labels.float())

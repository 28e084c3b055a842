"""Packed (padding-free) batches give the same losses, path losses, TA scores and consistency term
as the padded ones."""
import pytest
import torch

from mindcore.mind import batching, packing
from tiny_setup import PERSP, make_trainer, splits


def test_pack_layout():
    d, tk = splits()
    b = batching.make_batch(d["train"][:3], tk, PERSP, 160)
    p = packing.pack(b, pack_len=260)
    lengths = b.attention_mask.sum(1)
    assert int((p.segment >= 0).sum()) == int(lengths.sum())              # no padding inside, all tokens kept
    assert p.input_ids.numel() < b.input_ids.numel()
    for r in range(b.input_ids.shape[0]):                                 # each path intact, positions from 0
        where = p.segment == r
        row = int(where.any(1).nonzero()[0])
        assert torch.equal(p.input_ids[row][where[row]], b.input_ids[r, :lengths[r]])
        assert torch.equal(p.position_ids[row][where[row]], torch.arange(int(lengths[r])))
        assert torch.equal(p.labels[row][where[row]], b.labels[r, :lengths[r]])
    flat_ids = p.input_ids.reshape(-1)
    ans = b.input_ids.gather(1, (b.answer_pos + 1).clamp(max=b.input_ids.shape[1] - 1))
    assert torch.equal(flat_ids[(p.answer_flat + 1)][b.answer_mask], ans[b.answer_mask])   # answer rows found
    m = p.attention_mask[:, 0]
    same = p.segment[:, :, None] == p.segment[:, None, :]
    eye = torch.eye(p.segment.shape[1], dtype=torch.bool)
    assert not (m & ~same & ~eye).any()                                   # no attention across paths


@pytest.mark.parametrize("mode", ["single", "consistency", "mind"])
def test_packed_losses_equal_padded(mode):
    outs = {}
    for pack in (False, True):
        tr = make_trainer(mode=mode, pack=pack, pack_len=260)
        tr.model.eval()   # no dropout either way; same init (seeded)
        idx = tr._draw(tr.sampler)
        m = tr._micro(tr._batch(idx), idx)
        (m.total + m.meta).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in tr.model.parameters() if p.grad is not None])
        outs[pack] = (m, grad)
    (a, ga), (b, gb) = outs[False], outs[True]
    for name in ("total", "sft", "cons", "meta", "alpha", "path_loss"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=2e-5, atol=2e-6, msg=name)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.kept, b.kept)
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6)

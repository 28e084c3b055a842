"""mindcore.answer_consistency (analytic backward, logp-only saves) against the reference and float64."""
import pytest
import torch

import mindcore
from mindcore.reference.consistency import answer_consistency as reference
from mindcore.reference.consistency import naive_answer_consistency

op = mindcore.answer_consistency


def _inputs(b, k, a, v, seed, mask_dims=3):
    """float64 logits with O(1-3) spread, ~30% masked positions, one path never valid, one alpha = 0."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, a, v, generator=g, dtype=torch.float64) * 2
    mask = torch.rand((b, k, a) if mask_dims == 3 else (b, a), generator=g) > 0.3
    if mask_dims == 3:
        mask[..., 0] = True
        if k > 2 and b > 1:
            mask[1, 1] = False  # a path with no valid position
    alpha = torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64), -1)
    if k > 2:
        alpha[0, -1] = 0.0  # a path outside the kept set
    return logits, mask, alpha


def _run(fn, logits, mask, alpha, alpha_grad=True):
    x = logits.detach().clone().requires_grad_()
    al = alpha.detach().clone().requires_grad_(alpha_grad)
    loss = fn(x, mask, al)
    loss.backward()
    return loss.detach(), x.grad, al.grad


def _close(got, want, rtol, atol_frac):
    """Relative error with an absolute floor scaled to the truth's magnitude."""
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol,
                               atol=atol_frac * float(want.abs().max()) + 1e-12)


@pytest.mark.parametrize("b,k,a,v,mask_dims", [(3, 5, 3, 37, 3), (2, 2, 4, 19, 2), (4, 3, 1, 23, 3),
                                               (2, 4, 5, 64, 2)])
def test_matches_reference_and_float64(b, k, a, v, mask_dims):
    logits, mask, alpha = _inputs(b, k, a, v, seed=b * 1000 + k * 10 + a, mask_dims=mask_dims)
    got = _run(op, logits.float(), mask, alpha.float())
    ref = _run(reference, logits.float(), mask, alpha.float())
    truth = _run(naive_answer_consistency, logits, mask, alpha)
    assert truth[0] > 0 and got[0].dtype == torch.float32
    assert got[1].dtype == torch.float32 and got[2].dtype == torch.float32
    for g, r, t in zip(got, ref, truth):
        _close(g, r, 1e-5, 1e-6)
        _close(g, t, 1e-5, 1e-6)
    # rows of the path with no valid position get exactly zero gradient
    if mask_dims == 3 and k > 2:
        assert torch.equal(got[1][1, 1], torch.zeros_like(got[1][1, 1]))


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_low_precision_logits_against_float64(dtype, rtol):
    logits, mask, alpha = _inputs(3, 4, 3, 50, seed=7)
    low = logits.to(dtype)
    loss, grad, grad_alpha = _run(op, low, mask, alpha.float())
    truth = _run(naive_answer_consistency, low.double(), mask, alpha)  # the truth for these exact inputs
    assert loss.dtype == torch.float32 and grad.dtype == dtype and grad_alpha.dtype == torch.float32
    _close(loss, truth[0], 1e-5, 1e-6)  # computed in fp32 whatever the input dtype
    _close(grad, truth[1], rtol, rtol)  # only the final cast to dtype rounds
    _close(grad_alpha, truth[2], 1e-5, 1e-6)


def test_nan_logits_at_masked_positions_do_not_leak():
    logits, mask, alpha = _inputs(3, 4, 3, 29, seed=11)
    logits = logits.float()
    dirty = logits.clone()
    dirty[~mask] = float("nan")  # whole padding rows NaN ...
    rows = (~mask).nonzero()
    assert len(rows) > 1
    q, path, pos = rows[0].tolist()
    dirty[q, path, pos, ::2] = float("inf")  # ... or garbage in part of the row
    clean = _run(op, logits, mask, alpha.float())
    got = _run(op, dirty, mask, alpha.float())
    for g, c in zip(got, clean):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, c, rtol=0, atol=0)
    assert torch.equal(got[1][~mask], torch.zeros_like(got[1][~mask]))


def test_minus_inf_logits_give_finite_grads():
    logits, mask, alpha = _inputs(2, 3, 2, 31, seed=13)
    logits[..., :4] = -50.0  # p ~ 1e-22: the float64 truth for p = 0 without 0 * log 0
    logits[0, 0, :, 4] = -50.0  # zero on one path only
    inf = logits.float().clone()
    inf[inf == -50] = float("-inf")
    loss, grad, grad_alpha = _run(op, inf, mask, alpha.float())
    truth = _run(naive_answer_consistency, logits, mask, alpha)
    assert torch.isfinite(loss) and torch.isfinite(grad).all() and torch.isfinite(grad_alpha).all()
    assert torch.equal(grad[inf == float("-inf")], torch.zeros_like(grad[inf == float("-inf")]))
    _close(loss, truth[0], 1e-5, 1e-6)
    _close(grad, truth[1], 1e-4, 1e-6)
    _close(grad_alpha, truth[2], 1e-5, 1e-6)


def test_degenerate_sizes():
    # B = 0 behaves like the reference: a zero scalar, zero-size grads
    x = torch.randn(0, 3, 2, 7)
    mask, alpha = torch.ones(0, 3, 2, dtype=torch.bool), torch.rand(0, 3)
    got, ref = _run(op, x, mask, alpha), _run(reference, x, mask, alpha)
    assert got[0].shape == () and got[0] == 0 == ref[0]
    assert got[1].shape == x.shape and got[2].shape == alpha.shape
    # one path: no pairs, zero loss and gradient
    loss, grad, _ = _run(op, torch.randn(2, 1, 3, 7), torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 1))
    assert loss == 0 and torch.equal(grad, torch.zeros_like(grad))
    # alpha without grad: the op returns none for it
    logits, mask, alpha = _inputs(2, 3, 2, 9, seed=3)
    _, grad, grad_alpha = _run(op, logits.float(), mask, alpha.float(), alpha_grad=False)
    assert grad_alpha is None and torch.isfinite(grad).all()


@pytest.mark.parametrize("fn", [op, reference], ids=["op", "reference"])
def test_bad_input_names_the_argument(fn):
    x, m, al = torch.randn(2, 3, 4, 5), torch.ones(2, 3, 4, dtype=torch.bool), torch.rand(2, 3)
    cases = [((x[0], m, al), ValueError, "logits has shape"),
             ((x.long(), m, al), TypeError, "logits has dtype"),
             ((x.tolist(), m, al), TypeError, "logits is a list"),
             ((x, m.float(), al), TypeError, "answer_mask has dtype.*bool"),
             ((x, m[:, :2], al), ValueError, "answer_mask has shape.*pass \\(2, 3, 4\\) or \\(2, 4\\)"),
             ((x, m, al[:, :2]), ValueError, "alpha has shape.*pass \\(2, 3\\)"),
             ((x, m, al.long()), TypeError, "alpha has dtype")]
    for args, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn(*args)
    # integer 0/1 masks and (B, A) masks are accepted
    torch.testing.assert_close(fn(x, m.int(), al), fn(x, m[:, 0], al))


def test_torch_compile_matches_eager():
    torch._dynamo.reset()
    logits, mask, alpha = _inputs(3, 4, 3, 33, seed=17)
    logits, alpha = logits.float(), alpha.float()

    def fn(x, m, al):
        return op(x * 1.5, m, al) * 2.0

    eager = _run(fn, logits, mask, alpha)
    compiled = _run(torch.compile(fn, backend="aot_eager", fullgraph=True), logits, mask, alpha)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-7)


def _saved_bytes(fn, *args):
    """Bytes of distinct storages autograd keeps for backward (views of one tensor count once)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(storages.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saves_only_logp_for_backward(dtype):
    b, k, a, v = 2, 6, 3, 512
    x = torch.randn(b, k, a, v).to(dtype).requires_grad_()
    mask, alpha = torch.rand(b, k, a) > 0.2, torch.rand(b, k)
    logp_bytes = x.numel() * 4
    ours = _saved_bytes(op, x, mask, alpha)
    theirs = _saved_bytes(reference, x, mask, alpha)
    assert logp_bytes <= ours <= logp_bytes * 1.1 + 4096, (ours, logp_bytes)
    assert theirs > 5 * logp_bytes, (theirs, logp_bytes)  # every pair's (B, A, V) intermediates


def test_trainer_uses_the_op():
    from mindcore.mind import trainer
    assert trainer.answer_consistency is mindcore.answer_consistency

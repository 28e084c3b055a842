import pytest
import torch

from mindcore.reference.consistency import answer_consistency, naive_answer_consistency


def _inputs(b, k, a, v, seed, mask_dims=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, a, v, generator=g, dtype=torch.float64) * 2
    shape = (b, k, a) if mask_dims == 3 else (b, a)
    mask = torch.rand(shape, generator=g) > 0.3
    alpha = torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64), -1)
    alpha[0, -1] = 0.0  # a path outside the kept set
    return logits, mask, alpha


@pytest.mark.parametrize("b,k,a,v,mask_dims", [(3, 4, 5, 37, 3), (2, 3, 1, 11, 2), (1, 5, 7, 101, 3)])
def test_matches_float64_double_loop_values_and_grads(b, k, a, v, mask_dims):
    logits, mask, alpha = _inputs(b, k, a, v, seed=b * 100 + k, mask_dims=mask_dims)
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    got = answer_consistency(x1.float(), mask, alpha.float())
    want = naive_answer_consistency(x2, mask, alpha)
    assert want > 0
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    got.backward()
    want.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-6)


def test_bf16_input_close_to_float64():
    logits, mask, alpha = _inputs(2, 4, 3, 64, seed=5)
    x = logits.to(torch.bfloat16).requires_grad_()
    got = answer_consistency(x, mask, alpha.float())
    want = naive_answer_consistency(logits.to(torch.bfloat16).double(), mask, alpha)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    got.backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_identical_paths_give_zero_and_log_probs_accepted():
    logits = torch.randn(2, 1, 3, 9).expand(2, 4, 3, 9)
    alpha = torch.full((2, 4), 0.25)
    assert answer_consistency(logits, torch.ones(2, 3, dtype=torch.bool), alpha).abs() < 1e-6
    x = torch.randn(2, 3, 2, 9)
    m = torch.ones(2, 3, 2, dtype=torch.bool)
    a = torch.full((2, 3), 1 / 3)
    torch.testing.assert_close(answer_consistency(x, m, a), answer_consistency(torch.log_softmax(x, -1), m, a))


def test_bounded_by_log2_and_bad_shapes():
    logits = torch.randn(3, 2, 4, 5) * 50
    alpha = torch.full((3, 2), 1.0)
    val = answer_consistency(logits, torch.ones(3, 4, dtype=torch.bool), alpha)
    assert 0 <= val <= torch.log(torch.tensor(2.0)) + 1e-6
    with pytest.raises(ValueError, match="answer_mask"):
        answer_consistency(logits, torch.ones(3, 5, dtype=torch.bool), alpha)
    with pytest.raises(ValueError, match="alpha"):
        answer_consistency(logits, torch.ones(3, 4, dtype=torch.bool), alpha[:, :1])

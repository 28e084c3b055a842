"""Every provider of perspective_cross_entropy against float64 truth (and the eager error in the dtype)."""
import zlib

import pytest
import torch

import mindcore
from helpers import DEVICES, PROVIDERS, assert_close_to_truth, make_inputs, naive, run, skip_unless

# (n, d, v, p, ignore, bias, noncontig, grad_out): odd shapes, ignored tokens, bias, strides, grad_out != 1
CASES = [
    (1, 5, 37, 1, "none", False, False, 1.0),
    (7, 19, 101, 3, "some", True, False, 0.37),
    (33, 16, 64, 4, "some", False, True, -1.5),
    (50, 33, 257, 6, "none", True, False, 2.0),
    (12, 8, 29, 5, "all", True, False, 1.0),
    (65, 24, 130, 9, "some", False, False, 1.0),  # more paths than used -> some paths have no tokens
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _ids(case):
    n, d, v, p, ignore, bias, nc, go = case
    return f"n{n}-d{d}-v{v}-p{p}-{ignore}{'-bias' if bias else ''}{'-strided' if nc else ''}-go{go}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_matches_float64_truth(provider, case, dtype, device):
    skip_unless(provider, device, dtype)
    n, d, v, p, ignore, bias, noncontig, grad_out = case
    inputs = make_inputs(n, d, v, p, dtype=dtype, device=device, ignore=ignore, bias=bias,
                         noncontig=noncontig, seed=zlib.crc32(_ids(case).encode()) % 1000)
    truth = naive(inputs, torch.float64, grad_out)
    eager = naive(inputs, dtype, grad_out)  # PyTorch's own error in this dtype is the yardstick
    out, grads = run(inputs, provider, grad_out)
    assert out.loss.dtype == torch.float32 and out.loss.dim() == 0
    assert out.path_loss.shape == (p,) and out.path_loss.dtype == torch.float32
    assert torch.equal(out.path_tokens.cpu(), truth[2].cpu())
    assert_close_to_truth(out.loss, truth[0], eager[0], dtype, "loss")
    assert_close_to_truth(out.path_loss, truth[1], eager[1], dtype, "path_loss")
    assert not out.path_loss.requires_grad
    for name, g in grads.items():
        assert g.dtype == dtype and g.shape == inputs[name].shape, name
        assert_close_to_truth(g, truth[3][name], eager[3][name], dtype, f"grad_{name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_reference_semantics(provider, device):
    """Hand-checkable facts: empty paths give 0, zero weights give no gradient, loss = sum w * path_loss."""
    skip_unless(provider, device, torch.float32)
    inputs = make_inputs(20, 12, 53, 4, device=device, ignore="none", seed=3)
    inputs["path_ids"] = torch.tensor([0, 2] * 10, device=device)  # paths 1 and 3 have no tokens
    inputs["path_weights"] = torch.tensor([0.0, 5.0, 1.0, 7.0], device=device)  # path 0 contributes nothing
    out, grads = run(inputs, provider)
    assert out.path_tokens.tolist() == [10, 0, 10, 0]
    assert out.path_loss[1].item() == 0.0 and out.path_loss[3].item() == 0.0
    torch.testing.assert_close(out.loss, out.path_loss[2], rtol=1e-6, atol=1e-6)
    assert grads["hidden"][0::2].abs().max().item() == 0.0  # weight-0 path's rows get no gradient
    assert grads["hidden"][1::2].abs().max().item() > 0.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_grad_and_eval(provider, device):
    skip_unless(provider, device, torch.float32)
    inputs = make_inputs(9, 7, 31, 2, device=device, seed=5)
    with torch.no_grad():
        out = mindcore.perspective_cross_entropy(inputs["hidden"], inputs["weight"], inputs["targets"],
                                                 inputs["path_ids"], inputs["path_weights"], provider=provider)
    truth = naive(inputs, torch.float64)
    torch.testing.assert_close(out.path_loss.double().cpu(), truth[1].cpu(), rtol=1e-4, atol=1e-5)
    assert not out.loss.requires_grad


@pytest.mark.parametrize("provider", PROVIDERS)
def test_only_weight_requires_grad(provider):
    skip_unless(provider, "cpu", torch.float32)
    inputs = make_inputs(11, 6, 23, 3, seed=9)
    w = inputs["weight"].clone().requires_grad_()
    out = mindcore.perspective_cross_entropy(inputs["hidden"], w, inputs["targets"], inputs["path_ids"],
                                             inputs["path_weights"], provider=provider)
    out.loss.backward()
    truth = naive(inputs, torch.float64)
    torch.testing.assert_close(w.grad.double(), truth[3]["weight"], rtol=1e-4, atol=1e-5)


def test_providers_listed_best_first():
    provs = mindcore.available_providers("perspective_cross_entropy", device="cpu")
    assert "reference" in provs
    if "cpu" in provs:
        assert provs.index("cpu") < provs.index("reference")


def test_explicit_provider_that_cannot_serve_raises_with_reason():
    inputs = make_inputs(4, 3, 11, 2)
    with pytest.raises(RuntimeError, match="cannot serve"):
        mindcore.perspective_cross_entropy(inputs["hidden"], inputs["weight"], inputs["targets"],
                                           inputs["path_ids"], inputs["path_weights"], provider="cuda")
    with pytest.raises(ValueError, match="unknown"):
        mindcore.perspective_cross_entropy(inputs["hidden"], inputs["weight"], inputs["targets"],
                                           inputs["path_ids"], inputs["path_weights"], provider="nope")


def test_env_override(monkeypatch):
    monkeypatch.setenv("MINDCORE_PROVIDER", "cuda")
    inputs = make_inputs(4, 3, 11, 2)
    with pytest.raises(RuntimeError, match="cannot serve"):
        mindcore.perspective_cross_entropy(inputs["hidden"], inputs["weight"], inputs["targets"],
                                           inputs["path_ids"], inputs["path_weights"])
    monkeypatch.setenv("MINDCORE_PROVIDER", "reference")
    out = mindcore.perspective_cross_entropy(inputs["hidden"], inputs["weight"], inputs["targets"],
                                             inputs["path_ids"], inputs["path_weights"])
    assert torch.isfinite(out.loss)


def test_reference_chunking_is_invisible():
    from mindcore.reference.perspective_cross_entropy import perspective_cross_entropy as ref
    inputs = make_inputs(23, 9, 41, 3, bias=True, seed=11)
    args = (inputs["hidden"], inputs["weight"], inputs["bias"], inputs["targets"], inputs["path_ids"],
            inputs["path_weights"], torch.zeros(0), torch.zeros(0, dtype=torch.int64),
            torch.full((3,), -1), -100, 0.9, (True, True, True))
    whole = ref(*args)
    chunked = ref(*args, chunk_rows=4)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_second_backward_through_one_call_is_refused():
    inputs = make_inputs(6, 4, 9, 2, seed=14)
    h = inputs["hidden"].clone().requires_grad_()
    out = mindcore.perspective_cross_entropy(h, inputs["weight"], inputs["targets"], inputs["path_ids"],
                                             inputs["path_weights"])
    out.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        out.loss.backward()

"""Shared input builders and tolerance rules for the op tests."""
import torch

import mindcore
from mindcore import dispatch

PROVIDERS = ("reference", "cpu", "triton", "cublas", "cuda")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# Error floor per dtype, added to "twice eager PyTorch's own error in that dtype".
FLOOR = {torch.float32: 2e-5, torch.bfloat16: 2e-3, torch.float16: 5e-4}


def skip_unless(provider, device, dtype=None):
    import pytest
    why = dispatch.reasons("perspective_cross_entropy", device, dtype).get(provider, "not in this device's list")
    if why is not None:
        pytest.skip(f"{provider} on {device}: {why}")


def make_inputs(n, d, v, p, *, dtype=torch.float32, device="cpu", ignore="some", bias=False,
                seed=0, noncontig=False, scale=1.0):
    """Fresh random inputs (never zeros); hidden/weight scaled so logits have O(1-3) spread."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g) * scale
    weight = torch.randn(v, d, generator=g) / d ** 0.5 * 2
    b = torch.randn(v, generator=g) * 0.5 if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    if ignore == "all":
        targets[:] = -100
    elif ignore == "some":
        targets[torch.rand(n, generator=g) < 0.3] = -100
    path_ids = torch.randint(0, p, (n,), generator=g)
    path_weights = torch.rand(p, generator=g) + 0.1
    if noncontig:  # same values, strided storage
        hidden = torch.cat([hidden, torch.randn_like(hidden)], 1)[:, :d]
        weight = weight.t().contiguous().t()
    cast = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    return dict(hidden=cast(hidden), weight=cast(weight), bias=cast(b), targets=targets.to(device),
                path_ids=path_ids.to(device), path_weights=path_weights.to(device))


def naive(inputs, dtype, grad_out=1.0):
    """Eager autograd on materialised logits in ``dtype``: (loss, path_loss, path_tokens, grads)."""
    from mindcore.reference.perspective_cross_entropy import naive_perspective_cross_entropy
    leaves = {k: inputs[k].detach().to(dtype).requires_grad_() for k in ("hidden", "weight")}
    if inputs["bias"] is not None:
        leaves["bias"] = inputs["bias"].detach().to(dtype).requires_grad_()
    loss, path_loss, path_tokens = naive_perspective_cross_entropy(
        leaves["hidden"], leaves["weight"], leaves.get("bias"), inputs["targets"], inputs["path_ids"],
        inputs["path_weights"].to(dtype))
    (loss * grad_out).backward()
    grads = {k: t.grad for k, t in leaves.items()}
    return loss.detach(), path_loss.detach(), path_tokens, grads


def run(inputs, provider, grad_out=1.0, **kw):
    leaves = {k: inputs[k].detach().clone().requires_grad_() for k in ("hidden", "weight")}
    if inputs["bias"] is not None:
        leaves["bias"] = inputs["bias"].detach().clone().requires_grad_()
    out = mindcore.perspective_cross_entropy(
        leaves["hidden"], leaves["weight"], inputs["targets"], inputs["path_ids"], inputs["path_weights"],
        bias=leaves.get("bias"), provider=provider, **kw)
    (out.loss * grad_out).backward()
    return out, {k: t.grad for k, t in leaves.items()}


def assert_close_to_truth(got, truth, eager, dtype, what):
    """|got - truth| <= 2 * |eager - truth| + floor * (1 + |truth|), elementwise max-norm."""
    got, truth, eager = got.double().cpu(), truth.double().cpu(), eager.double().cpu()
    assert torch.isfinite(got).all() == torch.isfinite(truth).all(), f"{what}: non-finite mismatch"
    err = (got - truth).abs().max().item() if got.numel() else 0.0
    eager_err = (eager - truth).abs().max().item() if got.numel() else 0.0
    bound = 2 * eager_err + FLOOR[dtype] * (1 + truth.abs().max().item() if truth.numel() else 1)
    assert err <= bound, f"{what}: error {err:.3e} > bound {bound:.3e} (eager {dtype} error {eager_err:.3e})"

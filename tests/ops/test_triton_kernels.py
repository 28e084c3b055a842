"""Triton providers of perspective_cross_entropy against the reference (under TRITON_INTERPRET on CPU):
``triton`` (the fully fused kernels) and ``cublas`` (torch.mm GEMMs + the Triton row kernel).

Tiny odd shapes: the interpreter runs each program in numpy, so grids must stay small.
"""
import os
import subprocess
import sys

import torch

if not torch.cuda.is_available():  # before triton / mindcore.kernels are imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

triton = pytest.importorskip("triton")

import mindcore  # noqa: E402
from mindcore.reference.perspective_cross_entropy import (  # noqa: E402
    naive_perspective_cross_entropy, perspective_cross_entropy as reference)

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA and TRITON_INTERPRET is not 1", allow_module_level=True)

from helpers import make_inputs  # noqa: E402
from mindcore.kernels import perspective_cross_entropy as K  # noqa: E402
from mindcore.kernels import perspective_cross_entropy_cublas as KC  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ("loss", "path_loss", "path_tokens", "new_value", "new_count", "grad_hidden", "grad_weight", "grad_bias")


def make(n, d, v, p=4, *, dtype=torch.float32, ignore="some", bias=False, seed=0, slots=(0, 1, 0, -1),
         num_slots=3, empty_path=False):
    """Provider-signature arguments: the shared op inputs plus a non-trivial inertia state."""
    x = make_inputs(n, d, v, p, dtype=dtype, device=DEV, ignore=ignore, bias=bias, seed=seed)
    if empty_path:  # the last path gets no tokens at all
        x["path_ids"] = x["path_ids"] % (p - 1)
    g = torch.Generator().manual_seed(seed + 1)
    value = (torch.rand(num_slots, generator=g) * 3).to(DEV)
    count = (torch.arange(num_slots) % 3).to(DEV)  # count 0 -> first observation initialises the slot
    return [x["hidden"], x["weight"], x["bias"], x["targets"], x["path_ids"], x["path_weights"],
            value, count, torch.tensor(slots, dtype=torch.int64, device=DEV), -100, 0.9, [True] * 3]


@pytest.fixture(params=["triton", "cublas"])
def kern(request):
    return {"triton": K, "cublas": KC}[request.param]


def check(args, kern=K, out=None, **launch_kw):
    """Compare every output of a Triton provider with the reference."""
    out = out if out is not None else kern._launch(*args, **launch_kw)
    ref = reference(*args)
    dtype = args[0].dtype
    for name, x, y in zip(NAMES, out, ref):
        if name.startswith("grad"):
            if y.numel() == 0:
                assert x.numel() == 0, name
                continue
            assert x.dtype == y.dtype and x.shape == y.shape, name
            scale = y.float().nan_to_num().abs().max().item() + 1e-6
            tol = 1e-5 if dtype == torch.float32 else 2 ** -8  # 16-bit: dlogits + output roundings
            torch.testing.assert_close(x.float(), y.float(), rtol=tol, atol=tol * scale, equal_nan=True,
                                       msg=name)
        else:
            assert x.dtype == y.dtype and x.shape == y.shape, name
            # Losses come from fp32 accumulation in both, whatever the input dtype.
            torch.testing.assert_close(x, y, rtol=2e-5, atol=2e-5, equal_nan=True, msg=name)
    return out, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,d,v,bias", [(1, 5, 37, False), (7, 19, 101, True), (33, 5, 37, False),
                                        (33, 19, 101, True)])
def test_matches_reference(n, d, v, bias, dtype, kern):
    check(make(n, d, v, dtype=dtype, bias=bias, seed=n + d), kern)


@pytest.mark.parametrize("ignore", ["all", "none"])
def test_ignored_tokens(ignore, kern):
    out, _ = check(make(7, 5, 37, ignore=ignore, bias=True), kern)
    if ignore == "all":
        assert out[2].sum() == 0 and out[0] == 0 and not out[5].any() and not out[6].any()


def test_empty_path_and_untracked_slots(kern):
    args = make(33, 5, 37, p=5, empty_path=True, slots=(2, -1, 2, 0, 1))
    out, _ = check(args, kern)
    assert out[2][4] == 0 and out[1][4] == 0
    # slot 1 belongs only to the empty path: unchanged; slot 2 is shared by paths 0 and 2.
    assert out[3][1] == args[6][1] and out[4][1] == args[7][1]
    assert (out[4] - args[7]).tolist() == [1, 0, 1]


def test_no_grad_outputs_empty(kern):
    args = make(7, 19, 101, bias=True)
    args[-1] = [False] * 3
    out, _ = check(args, kern)
    assert all(t.numel() == 0 for t in out[5:])


def test_nan_row_keeps_slot(kern):
    args = make(7, 5, 37, ignore="none", slots=(0, 1, 2, -1))
    args[0][3] = float("nan")  # row 3 -> path 0 -> slot 0 gets a NaN loss
    args[4][3] = 0
    out, ref = check(args, kern)
    assert torch.isnan(out[1][0]) and torch.isnan(out[0])
    assert out[3][0] == args[6][0] and out[4][0] == args[7][0]  # slot 0 keeps value and count
    updated = [s for s in (1, 2) if out[2][s] > 0]
    assert all(out[4][s] == args[7][s] + 1 for s in updated)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_chunked_rows(dtype, monkeypatch):
    """Several row chunks: grad_W accumulated in fp32 (16-bit inputs too), even with no scratch budget."""
    monkeypatch.setattr(K, "SCRATCH_BYTES", 0)
    check(make(40, 19, 37, dtype=dtype, bias=True, seed=3), chunk_rows=16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("mask", [(True, True, True), (True, False, False), (False, True, True)], ids=str)
def test_cublas_chunks_and_masks(dtype, mask):
    """cublas: several chunks (fp32 grad_W accumulator, 16-bit G written over its fp32 logits rows)."""
    args = make(40, 19, 37, dtype=dtype, bias=True, seed=4)
    args[-1] = list(mask)
    out, _ = check(args, KC, chunk_rows=16)
    for got, wanted in zip(out[5:], mask):
        assert (got.numel() > 0) == wanted


def test_noncontiguous_and_fp16(kern):
    args = make(7, 19, 37, dtype=torch.float16, bias=True)
    args[0] = torch.cat([args[0], args[0]], 1)[:, :19]
    args[1] = args[1].t().contiguous().t()
    check(args, kern)


def test_against_float64_truth(kern):
    """bf16 grads no worse than twice eager bf16 PyTorch's error (+ floor), both vs float64."""
    args = make(33, 19, 101, dtype=torch.bfloat16, bias=True, seed=7)
    out = kern._launch(*args)
    truth, eager = {}, {}
    for dt, store in ((torch.float64, truth), (torch.bfloat16, eager)):
        leaves = [args[i].detach().to(dt).requires_grad_() for i in (0, 1, 2)]
        loss, path_loss, _ = naive_perspective_cross_entropy(*leaves, *args[3:5], args[5].to(dt))
        loss.backward()
        store.update(loss=loss.detach(), path_loss=path_loss.detach(),
                     grads=[t.grad for t in leaves])
    assert abs(out[0].double() - truth["loss"]) <= 2 * abs(eager["loss"].double() - truth["loss"]) + 1e-4
    for x, t, e in zip(out[5:], truth["grads"], eager["grads"]):
        err = (x.double() - t).abs().max()
        assert err <= 2 * (e.double() - t).abs().max() + 2e-3 * t.abs().max()


@pytest.mark.parametrize("name", ["triton", "cublas"])
def test_opcheck(name):
    op = getattr(torch.ops.mindcore, f"perspective_cross_entropy_{name}").default
    for bias, mask in ((True, [True] * 3), (False, [False] * 3), (True, [False, True, False])):
        args = make(7, 5, 37, dtype=torch.bfloat16, bias=bias)
        args[-1] = mask
        torch.library.opcheck(op, tuple(args))


def test_public_api_triton_provider():
    args = make(7, 19, 37, bias=True, seed=5)
    hidden, weight, bias, targets, path_ids, path_weights = args[:6]
    outs, grads, states = [], [], []
    for provider in ("triton", "reference"):
        leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight, bias)]
        state = mindcore.InertiaState(3, 0.9, device=DEV)
        out = mindcore.perspective_cross_entropy(
            leaves[0], leaves[1], targets, path_ids, path_weights, bias=leaves[2], inertia=state,
            path_slots=args[8], provider=provider)
        (out.loss * 2.5).backward()
        outs.append(out)
        grads.append([t.grad for t in leaves])
        states.append((state.value.clone(), state.count.clone()))
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(states[0], states[1]):
        torch.testing.assert_close(a, b)
    assert states[0][1].sum() > 0  # the state was committed


def test_hopper_configs_compile_for_sm90():
    """Ahead-of-time compile (no GPU needed) of every kernel with the H100 bf16 config: wgmma, fits smem."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the other tests compile and run the kernels for real")
    code = ("from mindcore.kernels import _aot\n"
            "for name, k in _aot.compile_all(90, __import__('torch').bfloat16, 4096):\n"
            "    print(name, k.metadata.shared, 'wgmma.mma_async' in k.asm['ptx'])\n")
    env = dict(os.environ, TRITON_INTERPRET="0")  # interpreted kernels cannot be compiled
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if res.returncode and "ptxas" in res.stderr.lower():
        pytest.skip(f"cannot compile for sm_90 here: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line.split() for line in res.stdout.splitlines()]
    assert len(rows) == 5  # four fused kernels, the cublas provider's row kernel
    for name, smem, wgmma in rows:
        assert int(smem) <= 227 * 1024, name
        assert wgmma == ("False" if name.endswith(("_rows_kernel", "_row_kernel")) else "True"), name

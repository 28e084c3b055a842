"""The compiled extension mindcore._C: build facts, the dispatcher op (opcheck), parity with the reference."""
import math
from pathlib import Path

import pytest
import torch

import mindcore
from mindcore import _ext, dispatch, info as mc_info
from mindcore.reference.perspective_cross_entropy import grad_dtype, perspective_cross_entropy as reference

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"mindcore._C not loaded: {_ext.load_error}")

OUTPUTS = ("loss", "path_loss", "path_tokens", "new_value", "new_count", "grad_hidden", "grad_weight", "grad_bias")


def op():
    return torch.ops.mindcore.perspective_cross_entropy


def make_args(n, d, v, p, *, dtype=torch.float32, device="cpu", bias=False, slots=3, output_mask=(True, True, True), seed=0):
    """Provider-signature arguments: some ignored tokens, a path without tokens, a fresh and a used slot."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(v, d, generator=g) / d ** 0.5 * 2
    b = torch.randn(v, generator=g) * 0.5 if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    targets[torch.rand(n, generator=g) < 0.3] = -100
    path_ids = torch.randint(0, max(p - 1, 1), (n,), generator=g)  # path p-1 gets no tokens (p > 1)
    path_weights = torch.rand(p, generator=g) + 0.1
    value = torch.rand(slots, generator=g) + 1.0
    count = torch.arange(slots) % 2  # slot 0 fresh, slot 1 seen once, ...
    path_slots = torch.randint(-1, slots, (p,), generator=g) if slots else torch.full((p,), -1)
    f = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    dev = lambda t: t.to(device)  # noqa: E731
    return (f(hidden), f(weight), f(b), dev(targets), dev(path_ids), dev(path_weights), dev(value), dev(count),
            dev(path_slots), -100, 0.9, list(output_mask))


def assert_parity(got, want, dtype):
    # Both compute in fp32 logits; low-precision grads may differ by a few rounding steps of their dtype
    # (the 16-bit-GEMM CPU path rounds the logit gradient before its GEMMs, like eager does), so their
    # bound is relative to the tensor's largest magnitude, not elementwise (sums may cancel).
    grad_tol = {torch.float32: (1e-4, 1e-6), torch.bfloat16: (1.6e-2, 1e-5), torch.float16: (2e-3, 1e-6)}[dtype]
    for name, g, w in zip(OUTPUTS, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype or (g.numel() == 0 and w.numel() == 0), name
        if g.dtype in (torch.int64,):
            assert torch.equal(g.cpu(), w.cpu()), name
        elif g.numel():
            rtol, atol = grad_tol if name.startswith("grad") else (1e-5, 1e-6)
            if name.startswith("grad") and dtype != torch.float32:
                atol = max(atol, rtol * w.float().abs().nan_to_num(0, 0, 0).max().item())
            torch.testing.assert_close(g.cpu(), w.cpu(), rtol=rtol, atol=atol, equal_nan=True, msg=name)


def test_build_info_and_provider():
    info = mindcore.build_info()
    for key in ("version", "cuda", "cuda_archs", "torch_version", "compiler", "parallel", "loaded"):
        assert key in info, key
    assert info["version"] == mindcore.__version__
    assert isinstance(info["cuda"], bool)
    assert info["torch_version"] == torch.__version__.split("+")[0]
    assert Path(_ext._C.__file__).parent == Path(mindcore.__file__).parent  # mindcore/_C*.so
    assert dispatch.reasons("perspective_cross_entropy", "cpu")["cpu"] is None
    assert "cpu        available" in mc_info.report(["cpu"])


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("output_mask", [(True,) * 3, (False,) * 3, (True, False, False), (False, True, True)])
def test_opcheck(bias, output_mask):
    args = make_args(9, 7, 23, 3, bias=bias, output_mask=output_mask)
    torch.library.opcheck(op(), args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("chunk", [None, 3000], ids=["one-chunk", "many-chunks"])
@pytest.mark.parametrize("bias", [False, True])
def test_parity_with_reference(dtype, chunk, bias, monkeypatch):
    # v > 4096 gives the low-precision path two vocab blocks; a tiny chunk budget gives 1-row chunks.
    if chunk:
        monkeypatch.setenv("MINDCORE_CHUNK_ELEMS", str(chunk))
    args = make_args(37, 19, 5003, 5, dtype=dtype, bias=bias, seed=int(bias))
    assert_parity(op()(*args), reference(*args), dtype)


@pytest.mark.parametrize("layout", ["vocab", "rows"])
@pytest.mark.parametrize("n, chunk", [(37, None), (70, 5003 * 40)], ids=["one-chunk", "32-32-6"])
def test_fp32_logits_layouts(layout, n, chunk, monkeypatch):
    # Both fp32 chunk layouts (vocab-major is the CPU default; rows is what CUDA runs), token counts
    # that leave a partial 32-token lane block, a vocab that is not a multiple of the tile, and a
    # -inf bias on the first 40 entries (masked vocabulary: whole tiles that are all -inf).
    monkeypatch.setenv("MINDCORE_LOGITS_LAYOUT", "rows" if layout == "copy" else layout)
    # fp32 GEMMs: the one-pass scheme on an fp32 weight copy, or (budget 0) the two-pass vocab blocks
    monkeypatch.setenv("MINDCORE_CPU_WEIGHT_COPY_MB", "1024" if layout == "copy" else "0")
    if chunk:
        monkeypatch.setenv("MINDCORE_CHUNK_ELEMS", str(chunk))
    args = list(make_args(n, 19, 5003, 4, bias=True, seed=n))
    args[2][:40] = float("-inf")
    args[3] = torch.where((args[3] >= 0) & (args[3] < 40), args[3] + 40, args[3])
    got, want = op()(*args), reference(*args)
    assert torch.isfinite(got[0]) and got[6][:40].abs().max() < 1e-30
    assert_parity(got, want, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("lowp, layout", [("0", "rows"), ("0", "copy"), ("1", "rows"), ("1", "vocab")],
                         ids=["fp32-gemms-two-pass", "fp32-gemms-weight-copy", "16bit-gemms-rows",
                              "16bit-gemms-vocab"])
def test_lowp_cpu_paths(dtype, lowp, layout, monkeypatch):
    # Both 16-bit schemes on any CPU (MINDCORE_CPU_LOWP_GEMM forces one; the 16-bit GEMM one in both
    # chunk layouts), several chunks: parity with the reference, and gradients within twice eager's
    # own error in the dtype of the float64 truth.
    monkeypatch.setenv("MINDCORE_LOGITS_LAYOUT", "rows" if layout == "copy" else layout)
    # fp32 GEMMs: the one-pass scheme on an fp32 weight copy, or (budget 0) the two-pass vocab blocks
    monkeypatch.setenv("MINDCORE_CPU_WEIGHT_COPY_MB", "1024" if layout == "copy" else "0")
    from helpers import assert_close_to_truth
    from mindcore.reference.perspective_cross_entropy import naive_perspective_cross_entropy
    monkeypatch.setenv("MINDCORE_CPU_LOWP_GEMM", lowp)
    monkeypatch.setenv("MINDCORE_CHUNK_ELEMS", "60000")  # 11 rows per chunk: grad_weight sums 4 chunks
    wanted = "16-bit GEMMs" if lowp == "1" else "fp32 GEMMs"
    assert wanted in mindcore.build_info()["cpu_lowp_gemm"].split("; ")[dtype == torch.float16]
    args = make_args(41, 24, 5003, 5, dtype=dtype, bias=True, seed=3)  # 11-row chunks: lanes < 16
    got = op()(*args)
    assert_parity(got[:5], reference(*args)[:5], dtype)
    leaves = [args[i].double().requires_grad_() for i in range(3)]
    eager_leaves = [args[i].detach().clone().requires_grad_() for i in range(3)]
    grads = {}
    for key, (h, w, b) in (("truth", leaves), ("eager", eager_leaves)):
        loss, _, _ = naive_perspective_cross_entropy(h, w, b, args[3], args[4], args[5].to(h.dtype), args[9])
        loss.backward()
        grads[key] = (h.grad, w.grad, b.grad)
    for name, g, t, e in zip(("grad_hidden", "grad_weight", "grad_bias"), got[5:], grads["truth"], grads["eager"]):
        assert g.dtype == grad_dtype(dtype)
        assert_close_to_truth(g, t, e, dtype, name)


def test_semantics_empty_path_no_grad_no_bias():
    args = list(make_args(12, 8, 31, 4, output_mask=(False,) * 3))
    out = op()(*args)
    assert out[2][3].item() == 0 and out[1][3].item() == 0.0  # path without tokens -> 0 loss
    assert all(t.numel() == 0 and t.dtype == torch.float32 for t in out[5:])
    args[11] = [True] * 3
    out = op()(*args)
    assert out[5].shape == args[0].shape and out[6].shape == args[1].shape and out[7].numel() == 0
    weighted = (args[5] * out[1]).sum()
    torch.testing.assert_close(out[0], weighted)
    assert out[3].data_ptr() != args[6].data_ptr() and out[4].data_ptr() != args[7].data_ptr()  # functional


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_non_finite_path_keeps_its_slot(dtype):
    args = list(make_args(16, 8, 4500, 2, dtype=dtype, slots=2))
    args[3] = torch.arange(16) % 7                   # all tokens valid
    args[4] = torch.tensor([0] * 8 + [1] * 8)        # path 0: rows 0-7, path 1: rows 8-15
    args[8] = torch.tensor([0, 1])
    args[6], args[7] = torch.tensor([2.0, 3.0]), torch.tensor([4, 4])
    hidden = args[0].clone()
    hidden[2] = float("nan")
    args[0] = hidden
    out = op()(*args)
    want = reference(*args)
    assert math.isnan(out[1][0].item()) and math.isfinite(out[1][1].item())
    assert out[3][0].item() == 2.0 and out[4][0].item() == 4  # NaN path: slot keeps value and count
    assert out[4][1].item() == 5 and out[3][1].item() != 3.0
    torch.testing.assert_close(out[3], want[3], rtol=1e-5, atol=1e-6)
    assert torch.isnan(out[5][:8].float()).any() and torch.isfinite(out[5][8:].float()).all()


def test_clear_errors():
    args = list(make_args(5, 4, 11, 2))
    bad = [(1, torch.randn(11, 3), "weight must be"), (3, torch.zeros(5, dtype=torch.int32), "targets has dtype"),
           (4, torch.zeros(4, dtype=torch.long), "path_ids must be"), (8, torch.zeros(3, dtype=torch.long), "path_slots"),
           (0, torch.randn(5, 4, dtype=torch.float64), "hidden has dtype")]
    for i, value, msg in bad:
        broken = list(args)
        broken[i] = value
        with pytest.raises(RuntimeError, match=msg):
            op()(*broken)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_cuda_parity(dtype, bias, monkeypatch):
    # fp32: row chunks; bf16: the 16-bit-GEMM pass (hi + res); fp16: fp32 vocab blocks.
    if not mindcore.build_info().get("cuda"):
        pytest.skip("mindcore._C was built without CUDA")
    monkeypatch.setenv("MINDCORE_CHUNK_ELEMS", "20000")  # several chunks / vocab blocks
    args = make_args(37, 19, 5003, 5, dtype=dtype, bias=bias, device="cuda")
    assert_parity(op()(*args), reference(*args), dtype)

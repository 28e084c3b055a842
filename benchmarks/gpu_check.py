"""Focused correctness check of every GPU provider of ``perspective_cross_entropy`` against float64.

What a wrong kernel would get wrong, at shapes that exercise it: multi-tile and multi-chunk grids
(grad_W summed over chunks, 16-bit dlogits written over fp32 rows), the real Qwen2.5 and Llama-3
heads at small N, peaked logits (p_t near 1), one path per token (the per-token CE itself), the
inertia update, and the gradient on *non-target* vocab rows, where only the softmax term lives (a
wrong softmax hides under the -1 of the target rows in a whole-tensor norm). Rule, per quantity:
``error <= 2 x eager's own error in that dtype + floor x max|truth|`` (eager = the head GEMM in the
dtype, CE in fp32, as autocast runs it). One CSV row per (provider, dtype, case, quantity);
exit status 1 if any row fails.

    python3 -m benchmarks.gpu_check --out OUT               # on the GPU: every case
    python3 -m benchmarks.gpu_check --quick                 # one small case (compute-sanitizer runs)
    python3 -m benchmarks.gpu_check --profile --out OUT     # torch.profiler kernel table, one fwd+bwd
    python3 -m benchmarks.gpu_check --device cpu --quick    # dry run: CPU providers, tiny shapes
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

FLOOR = {torch.float32: 2e-5, torch.bfloat16: 2e-3, torch.float16: 5e-4}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# name: (N, d, V, paths, hidden scale, chunk rows forced on the providers or None, grad_output)
CASES = {
    "multi-tile": (1000, 512, 20000, 16, 1.0, 256, 3.7),
    "peaked": (1000, 512, 20000, 16, 6.0, 256, 0.5),
    "per-token": (300, 256, 5003, 300, 1.0, None, 1.0),
    "loss-scale": (1000, 512, 20000, 4, 1.0, 256, 65536.0),
    "qwen-head": (256, 896, 151936, 8, 1.0, None, 1.0),
    "llama-head": (128, 4096, 128256, 8, 1.0, 64, 1.0),
}
QUICK = {"small": (130, 64, 1000, 5, 1.0, 48, 2.0)}
TINY = {"tiny": (40, 16, 257, 5, 1.0, 16, 2.0), "tiny-peaked": (40, 16, 257, 40, 6.0, None, 1.0)}


def make(case, dtype, device, seed=0):
    n, d, v, p, hscale, _, _ = case
    g = torch.Generator(device).manual_seed(seed)
    kw = dict(generator=g, device=device)
    h = torch.randn(n, d, **kw) * hscale
    w = torch.randn(v, d, **kw) * d ** -0.5
    t = torch.randint(0, v // 2, (n,), **kw)  # targets in the lower half: the upper rows are non-target
    t = torch.where(torch.rand(n, **kw) < 0.1, -100, t)
    pid = torch.arange(n, device=device) % p
    pw = torch.rand(p, **kw) + 0.1
    return dict(hidden=h.to(dtype), weight=w.to(dtype), targets=t, path_ids=pid, path_weights=pw)


def naive(x, dt, grad_out):
    """Loss, path losses and grads with autograd: GEMM in ``dt``, CE in fp32 (float64 for the truth)."""
    h = x["hidden"].detach().to(dt).requires_grad_()
    w = x["weight"].detach().to(dt).requires_grad_()
    acc = torch.float64 if dt == torch.float64 else torch.float32
    ce = torch.nn.functional.cross_entropy((h @ w.t()).to(acc), x["targets"], reduction="none")
    valid = (x["targets"] != -100).to(acc)
    num = len(x["path_weights"])
    psum = torch.zeros(num, dtype=acc, device=h.device).index_add(0, x["path_ids"], ce * valid)
    ptok = torch.zeros(num, dtype=acc, device=h.device).index_add(0, x["path_ids"], valid)
    path_loss = torch.where(ptok > 0, psum / ptok.clamp(min=1), 0.0)
    loss = (x["path_weights"].to(acc) * path_loss).sum()
    (loss * grad_out).backward()
    return dict(loss=loss.detach(), path_loss=path_loss.detach(), grad_hidden=h.grad, grad_weight=w.grad)


@contextlib.contextmanager
def forced_chunks(provider, rows, v):
    """Make ``provider`` split its tokens into chunks of ``rows`` (multi-chunk accumulation)."""
    if rows is None:
        yield
        return
    from mindcore.kernels import perspective_cross_entropy as K
    from mindcore.kernels import perspective_cross_entropy_cublas as KC
    saved = (K.SCRATCH_BYTES, KC.CHUNK_BYTES, KC.ROW_ALIGN, os.environ.get("MINDCORE_CHUNK_ELEMS"))
    K.SCRATCH_BYTES, KC.CHUNK_BYTES, KC.ROW_ALIGN = rows * v * 2, rows * v * 4, 1
    os.environ["MINDCORE_CHUNK_ELEMS"] = str(rows * v)
    try:
        yield
    finally:
        K.SCRATCH_BYTES, KC.CHUNK_BYTES, KC.ROW_ALIGN = saved[:3]
        if saved[3] is None:
            os.environ.pop("MINDCORE_CHUNK_ELEMS", None)
        else:
            os.environ["MINDCORE_CHUNK_ELEMS"] = saved[3]


def run_provider(x, provider, grad_out, rows):
    import mindcore
    from mindcore.reference.perspective_cross_entropy import inertia_update  # noqa: F401 (doc: same rule)
    h = x["hidden"].detach().clone().requires_grad_()
    w = x["weight"].detach().clone().requires_grad_()
    p = len(x["path_weights"])
    state = mindcore.InertiaState(4, 0.9, device=h.device)
    state.value.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    state.count.copy_(torch.tensor([0, 1, 2, 3]))
    slots = (torch.arange(p, device=h.device) % 5) - 1  # -1 (untracked), and slots shared by paths
    with forced_chunks(provider, rows, w.shape[0]):
        out = mindcore.perspective_cross_entropy(h, w, x["targets"], x["path_ids"], x["path_weights"],
                                                 inertia=state, path_slots=slots, provider=provider)
        (out.loss * grad_out).backward()
    return dict(loss=out.loss.detach(), path_loss=out.path_loss, grad_hidden=h.grad, grad_weight=w.grad,
                inertia=state.value.clone(), slots=slots)


def compare(name, got, truth, eager, dtype):
    got, truth, eager = got.double(), truth.double(), eager.double()
    scale = truth.abs().max().item() if truth.numel() else 0.0
    err = (got - truth).abs().max().item() if got.numel() else 0.0
    eager_err = (eager - truth).abs().max().item() if got.numel() else 0.0
    bound = 2 * eager_err + FLOOR[dtype] * max(scale, 1e-30)
    ok = bool(torch.isfinite(got).all()) and err <= bound
    return dict(quantity=name, error=err, eager_error=eager_err, bound=bound, scale=scale,
                status="ok" if ok else "FAIL")


def check_case(cname, case, provider, dtype, device):
    from mindcore.reference.perspective_cross_entropy import inertia_update, path_counts
    x = make(case, dtype, device)
    grad_out, rows = case[6], case[5]
    truth, eager = naive(x, torch.float64, grad_out), naive(x, dtype, grad_out)
    got = run_provider(x, provider, grad_out, rows)
    rows_out = [compare(k, got[k], truth[k], eager[k], dtype)
                for k in ("loss", "path_loss", "grad_hidden", "grad_weight")]
    non_target = torch.ones(x["weight"].shape[0], dtype=torch.bool, device=device)
    non_target[x["targets"][x["targets"] >= 0]] = False
    rows_out.append(compare("grad_weight[non-target rows]", got["grad_weight"][non_target],
                            truth["grad_weight"][non_target], eager["grad_weight"][non_target], dtype))
    p = len(x["path_weights"])
    tok = path_counts(x["targets"], x["path_ids"], p, -100)
    init_v = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device)
    init_c = torch.tensor([0, 1, 2, 3], device=device)

    def ema(path_loss):
        return inertia_update(init_v, init_c, (path_loss * tok).float(), tok, got["slots"], 0.9)[0]
    rows_out.append(compare("inertia", got["inertia"], ema(truth["path_loss"]), ema(eager["path_loss"]), dtype))
    n, d, v = case[:3]
    return [dict(provider=provider, dtype=str(dtype).split(".")[-1], case=cname, N=n, d=d, V=v, **r)
            for r in rows_out]


def providers_for(device, wanted):
    from mindcore import dispatch
    why = dispatch.reasons("perspective_cross_entropy", device)
    names = [p for p in (wanted or why) if p != "reference"]
    return [p for p in names if why.get(p) is None], {p: why.get(p) for p in names if why.get(p)}


def profile(device, out, providers):
    """Kernel table of one fwd+bwd at the Qwen2.5-0.5B head, N=8192, bf16, per provider."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    case = (8192, 896, 151936, 16, 1.0, None, 1.0) if device.type == "cuda" else (64, 16, 1031, 4, 1.0, None, 1.0)
    x = make(case, torch.bfloat16, device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for provider in providers:
        run_provider(x, provider, 1.0, None)  # warm-up (compiles)
        with torch_profile(activities=acts) as prof:
            run_provider(x, provider, 1.0, None)
            if device.type == "cuda":
                torch.cuda.synchronize()
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=15)
        (Path(out) / f"profile_{provider}.txt").write_text(table)
        print(f"== {provider}: one fwd+bwd, N={case[0]} d={case[1]} V={case[2]} bf16\n{table}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--providers", default="", help="comma list (default: every available non-reference one)")
    ap.add_argument("--dtypes", default="bf16,fp16,fp32")
    ap.add_argument("--quick", action="store_true", help="one small case only (for compute-sanitizer)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of one fwd+bwd instead")
    ap.add_argument("--out", default="out")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton providers through the interpreter
    Path(args.out).mkdir(parents=True, exist_ok=True)
    provs, refused = providers_for(device, [p for p in args.providers.split(",") if p])
    for p, why in refused.items():
        print(f"skip {p}: {why}")
    if args.profile:
        profile(device, args.out, provs)
        return 0
    cases = QUICK if args.quick else (CASES if device.type == "cuda" else TINY)
    rows = []
    for cname, case in cases.items():
        for dname in args.dtypes.split(","):
            dtype = DTYPES[dname]
            for provider in provs:
                try:
                    res = check_case(cname, case, provider, dtype, device)
                except Exception as exc:  # a crash is a failure of that provider, not of the check
                    res = [dict(provider=provider, dtype=dname, case=cname, N=case[0], d=case[1], V=case[2],
                                quantity="(run)", status="FAIL", error=f"{type(exc).__name__}: {str(exc)[:200]}")]
                rows.extend(res)
                bad = [r for r in res if r["status"] != "ok"]
                print(f"{provider:8s} {dname:5s} {cname:11s} " + ("ok" if not bad else "FAIL " + "; ".join(
                    f"{r['quantity']}: {r.get('error')} > {r.get('bound', '')}" for r in bad)), flush=True)
    path = Path(args.out) / "gpu_check.csv"
    keys = ["provider", "dtype", "case", "N", "d", "V", "quantity", "status", "error", "eager_error", "bound", "scale"]
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows)} checks, {failed} failed, providers {provs}; rows in {path}")
    return 1 if failed or not provs else 0


if __name__ == "__main__":
    sys.exit(main())

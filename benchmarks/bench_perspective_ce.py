"""Benchmark of ``perspective_cross_entropy``: every provider and its peers, same quantities.

Each provider computes per-token CE -> per-path means -> weighted loss, forward and backward,
from hidden (N, d) and the LM head weight (V, d). The oracle is ``mindcore.reference``: "eager" is
its materialised-logits form (``naive_perspective_cross_entropy``), "compile" is torch.compile of
that, and the correctness truth is the chunked reference. A provider that disagrees with the truth
is reported FAILED and not timed. "floor" is the three GEMMs alone (logits = H W^T,
grad_H = G W, grad_W = G^T H; fp32 on CPU, the input dtype on CUDA): the compute floor.

    python -m benchmarks.bench_perspective_ce --shapes qwen2.5-0.5b --tokens 2048 --dtypes fp32,bf16
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import mindcore
from mindcore import dispatch
from mindcore.reference.perspective_cross_entropy import (
    CHUNK_ELEMS, naive_perspective_cross_entropy, path_counts, perspective_cross_entropy as reference_impl)

from benchmarks import harness as H

OP = "perspective_cross_entropy"
IGNORE = -100
# LM heads of real students: (d, V).
SHAPES = {"smollm2-135m": (576, 49152), "qwen2.5-0.5b": (896, 151936), "qwen2.5-1.5b": (1536, 151936),
          "qwen2.5-7b": (3584, 152064), "llama3.1-8b": (4096, 128256), "tiny": (48, 1031)}
DEFAULT_TOKENS = {"cpu": [512, 2048], "cuda": [2048, 8192, 16384]}
MINDCORE = ("reference", "cpu", "triton", "cublas", "cuda")
# Baselines are what users run today: timed even when they miss the tolerance (eager bf16 on the
# CPU reduces the softmax in bf16), with the error in the note; any other provider is FAILED then.
BASELINES = ("eager", "compile")
PROVIDERS = ["floor", "eager", "compile", "torch-lce", "reference", "cpu", "triton", "cublas", "cuda", "liger",
             "liger-mean", "cce"]
# Timed without the per-path check: they compute another quantity (a plain mean CE over all tokens,
# no per-path losses), shown for what the fastest mode of a peer costs.
UNCHECKED = {"liger-mean": "plain mean CE (no per-path losses or weights): not checked, timed for reference"}


def parse_shape(name):
    if name in SHAPES:
        return SHAPES[name]
    if "x" in name:
        d, v = name.split("x")
        return int(d), int(v)
    raise SystemExit(f"--shapes: unknown shape {name!r}; use one of {sorted(SHAPES)} or DxV")


# ----------------------------------------------------------------------------- inputs
def make_inputs(n, d, v, dtype, device, paths=16, seed=0):
    """Random head inputs: logits ~ N(0, 1), 3% ignored tokens, P contiguous paths (packed).

    Drawn on the device (a CPU draw of a Llama-size head takes seconds); same seed -> same inputs.
    """
    g = torch.Generator(device).manual_seed(seed)
    kw = dict(generator=g, device=device)
    hidden = torch.randn(n, d, **kw).to(dtype)
    weight = (torch.randn(v, d, **kw) * d ** -0.5).to(dtype)
    targets = torch.randint(0, v, (n,), **kw)
    targets = torch.where(torch.rand(n, **kw) < 0.03, IGNORE, targets)
    path_ids = torch.randint(0, paths, (n,), **kw).sort().values
    path_weights = torch.softmax(torch.randn(paths, **kw), 0)
    return {"hidden": hidden.requires_grad_(), "weight": weight.requires_grad_(), "targets": targets,
            "path_ids": path_ids, "path_weights": path_weights}


def per_path(token_ce, x):
    """Peers give per-token CE; MIND's per-path means and weighted loss, as the reference forms them."""
    num_paths = x["path_weights"].shape[0]
    tokens = path_counts(x["targets"], x["path_ids"], num_paths, IGNORE)
    sums = torch.zeros(num_paths, dtype=torch.float32, device=token_ce.device).index_add(
        0, x["path_ids"], token_ce.float())
    path_loss = torch.where(tokens > 0, sums / tokens.clamp(min=1).float(), 0.0)
    return (x["path_weights"].float() * path_loss).sum(), path_loss


# ----------------------------------------------------------------------------- providers
def _eager(x, device):
    def fn(h, w):
        loss, path_loss, _ = naive_perspective_cross_entropy(
            h, w, None, x["targets"], x["path_ids"], x["path_weights"], IGNORE)
        return loss, path_loss
    return fn


def _compile(x, device):
    if device.type == "cpu" and not any(os.access(os.path.join(p, "g++"), os.X_OK)
                                        for p in os.environ.get("PATH", "").split(os.pathsep)):
        raise H.Skip("torch.compile on CPU needs a C++ compiler (g++ not on PATH)")
    return torch.compile(_eager(x, device), dynamic=False)


def _mindcore(name):
    def build(x, device):
        why = dispatch.REGISTRY[OP][name].reason(device, x["hidden"].dtype)
        if why is not None:
            raise H.Skip(why)

        def fn(h, w):
            out = mindcore.perspective_cross_entropy(h, w, x["targets"], x["path_ids"], x["path_weights"],
                                                     ignore_index=IGNORE, provider=name)
            return out.loss, out.path_loss
        return fn
    return build


def _liger_loss(device, reduction):
    if device.type != "cuda":
        raise H.Skip("liger-kernel's fused linear CE is Triton on CUDA")
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except Exception as exc:
        raise H.Skip(f"liger-kernel not importable ({type(exc).__name__}); see benchmarks/README.md")
    return LigerFusedLinearCrossEntropyLoss(reduction=reduction, ignore_index=IGNORE)


def _liger(x, device):
    loss_fn = _liger_loss(device, "none")
    return lambda h, w: per_path(loss_fn(w, h, x["targets"]), x)


def _liger_mean(x, device):
    loss_fn = _liger_loss(device, "mean")
    return lambda h, w: (loss_fn(w, h, x["targets"]), None)


def _torch_lce(x, device):
    """PyTorch's own chunked fused linear CE (>= 2.13): reduction="none", then per-path index_add."""
    import torch.nn.functional as F
    if not hasattr(F, "linear_cross_entropy") or not hasattr(torch.nn, "LinearCrossEntropyOptions"):
        raise H.Skip(f"torch {torch.__version__} has no F.linear_cross_entropy with LinearCrossEntropyOptions")
    opts = torch.nn.LinearCrossEntropyOptions()
    return lambda h, w: per_path(F.linear_cross_entropy(h, w, x["targets"], ignore_index=IGNORE,
                                                        reduction="none", options=opts), x)


def _cce(x, device):
    if device.type != "cuda":
        raise H.Skip("cut-cross-entropy's cce kernels are Triton on CUDA")
    try:
        from cut_cross_entropy import linear_cross_entropy
    except Exception as exc:
        raise H.Skip(f"cut-cross-entropy not importable ({type(exc).__name__}); see benchmarks/README.md")
    return lambda h, w: per_path(linear_cross_entropy(h, w, x["targets"], ignore_index=IGNORE,
                                                      reduction="none"), x)


BUILDERS = {"eager": _eager, "compile": _compile, "torch-lce": _torch_lce, "liger": _liger,
            "liger-mean": _liger_mean, "cce": _cce,
            **{name: _mindcore(name) for name in MINDCORE}}


class LossBench:
    """fwd(grad) -> loss; bwd(loss); grads accumulate into the leaf inputs."""

    needs_full_warmup = False

    def __init__(self, fn, x):
        self.fn, self.x = fn, x
        self.h, self.w = x["hidden"], x["weight"]
        self.h_nograd, self.w_nograd = self.h.detach(), self.w.detach()

    def reset(self):
        self.h.grad = self.w.grad = None

    def fwd(self, grad):
        if grad:
            return self.fn(self.h, self.w)[0]
        with torch.no_grad():
            return self.fn(self.h_nograd, self.w_nograd)[0]

    def bwd(self, loss):
        loss.backward()

    def grad_bytes(self):
        return sum(t.grad.numel() * t.grad.element_size() for t in (self.h, self.w) if t.grad is not None)

    def outputs(self):
        self.reset()
        loss, path_loss = self.fn(self.h, self.w)
        loss.backward()
        return {"loss": loss, "path_loss": path_loss, "grad_hidden": self.h.grad, "grad_weight": self.w.grad}


class FloorBench:
    """The three GEMMs of the fused head alone: the compute floor (no softmax, no reduction)."""

    needs_full_warmup = False

    def __init__(self, n, d, v, dtype, device):
        kw = dict(generator=torch.Generator(device).manual_seed(1), device=device)
        self.h, self.w, self.g = (torch.randn(*shape, **kw).to(dtype) for shape in ((n, d), (v, d), (n, v)))

    def reset(self):
        self.grads = ()

    def fwd(self, grad):
        return self.h @ self.w.t()

    def bwd(self, state):
        self.grads = (self.g @ self.w, self.g.t() @ self.h)

    def grad_bytes(self):
        return sum(t.numel() * t.element_size() for t in self.grads)


def floor_dtype(dtype, device):
    return torch.float32 if device.type == "cpu" else dtype


def estimate_bytes(provider, n, d, v, dtype):
    """Rough peak footprint, to skip sizes that would exhaust memory before trying them."""
    es = torch.tensor([], dtype=dtype).element_size()
    io = 2 * (n * d + v * d) * es
    logits = n * v
    extra = {"eager": logits * (3 * es + 8), "compile": logits * (es + 8),
             "reference": min(logits, CHUNK_ELEMS) * 4 * 2 + v * d * 8 + n * d * 4,
             "floor": logits * 4 * 2 + 2 * (n * d + v * d) * 4}.get(provider, v * d * 4 + n * d * 4)
    return io + extra


def make_bench(provider, n, d, v, dtype, device, seed=0):
    """Bench for one (provider, shape, dtype): also the entry point of the CPU memory probe."""
    device = torch.device(device)
    dtype = H.DTYPES[dtype] if isinstance(dtype, str) else dtype
    if provider == "floor":
        return FloorBench(n, d, v, floor_dtype(dtype, device), device)
    if provider not in BUILDERS:
        raise H.Skip(f"unknown provider {provider!r}; known: {PROVIDERS}")
    x = make_inputs(n, d, v, dtype, device, seed=seed)
    bench = LossBench(BUILDERS[provider](x, device), x)
    bench.needs_full_warmup = provider == "compile"
    return bench


def reference_outputs(n, d, v, dtype, device, seed=0):
    """The truth every provider is checked against: the chunked reference, same inputs."""
    x = make_inputs(n, d, v, dtype, device, seed=seed)
    num_paths = x["path_weights"].shape[0]
    f32 = dict(dtype=torch.float32, device=device)
    out = reference_impl(x["hidden"].detach(), x["weight"].detach(), None, x["targets"], x["path_ids"],
                         x["path_weights"], torch.zeros(0, **f32),
                         torch.zeros(0, dtype=torch.int64, device=device),
                         torch.full((num_paths,), -1, dtype=torch.int64, device=device), IGNORE, 0.0,
                         (True, True, True))
    return {"loss": out[0], "path_loss": out[1], "grad_hidden": out[5], "grad_weight": out[6]}


# ----------------------------------------------------------------------------- driver
def run(shapes, tokens, dtypes, providers, modes, reps, device, out, memory=True, log=print):
    """Measure every combination; append each row as soon as it exists (a timeout loses one)."""
    device = torch.device(device)
    env = H.environment(device)
    path = H.results_path(out, device)
    rows = []
    # ratios refer to eager / floor rows of this run, else to the latest such rows already in the CSV
    prior = H.prior_medians(path, ("eager", "floor"))
    floor_ms = {k[1:]: v for k, v in prior.items() if k[0] == "floor"}
    for shape in shapes:
        d, v = parse_shape(shape)
        for n in tokens:
            for dtype in dtypes:
                ref = functools.cache(lambda: reference_outputs(n, d, v, dtype, device))  # once per combination
                eager_ms = {k[-1]: v for k, v in prior.items()
                            if k[:4] == ("eager", shape, n, H.DTYPE_NAME[dtype])}
                for provider in providers:
                    base = dict(op=OP, provider=provider, dtype=H.DTYPE_NAME[dtype], shape=shape, N=n, d=d, V=v)
                    if provider == "floor":
                        base["dtype"] = H.DTYPE_NAME[floor_dtype(dtype, device)]
                    if provider == "floor" and (shape, n, base["dtype"]) in floor_ms:
                        continue  # the fp32 CPU floor serves every dtype; measure it once
                    status, note, bench = H.prepare(
                        estimate_bytes(provider, n, d, v, dtype), device,
                        lambda: make_bench(provider, n, d, v, dtype, device),
                        None if provider == "floor" or provider in UNCHECKED else ref, dtype,
                        baseline=provider in BASELINES, note=UNCHECKED.get(provider, ""))
                    if status != "ok":
                        H.emit(rows, path, H.make_row(env, **base, mode=",".join(modes), status=status, note=note))
                        continue
                    for mode in modes:
                        # the correctness run warmed up fwd+bwd on the CPU; compile re-traces per grad mode
                        warm = 0 if (device.type == "cpu" and mode == "fwd+bwd"
                                     and provider not in ("floor", "compile")) else 1
                        spec = dict(provider=provider, n=n, d=d, v=v, dtype=H.DTYPE_NAME[dtype], device=str(device))
                        row = H.measure(bench, mode, env=env, base=base, note=note, device=device, reps=reps,
                                        warmup=warm, memory_module=memory and "benchmarks.bench_perspective_ce",
                                        memory_spec=spec)
                        if row["status"] == "ok":
                            ms = row["median_ms"]
                            if provider == "floor":
                                floor_ms[(shape, n, base["dtype"], mode)] = ms
                                floor_ms[(shape, n, base["dtype"])] = ms
                            if provider == "eager":
                                eager_ms[mode] = ms
                            if mode in eager_ms:
                                row["x_eager"] = ms / eager_ms[mode]
                            fkey = (shape, n, H.DTYPE_NAME[floor_dtype(dtype, device)], mode)
                            if fkey in floor_ms:
                                row["x_floor"] = ms / floor_ms[fkey]
                        H.emit(rows, path, row)
                    del bench
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    log(f"rows appended to {path}")
    return rows


def main(argv=None):
    p = H.base_parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    device = torch.device(args.device)
    shapes = args.shapes or (["smollm2-135m", "qwen2.5-0.5b"] if device.type == "cpu" else
                             ["qwen2.5-0.5b", "qwen2.5-7b", "llama3.1-8b"])
    tokens = args.tokens or DEFAULT_TOKENS.get(device.type, [2048])
    providers = args.providers or PROVIDERS
    H.check_choices("providers", providers, PROVIDERS)
    # floor and eager first: the ratio columns of the rows after them refer to them
    providers = sorted(providers, key=lambda p: (p != "floor", p != "eager"))
    H.check_choices("modes", args.modes, H.MODES)
    rows = run(shapes, tokens, H.parse_dtypes(args.dtypes), providers, args.modes, args.reps, device,
               args.out, memory=not args.no_memory)
    if args.compare:
        return H.finish_with_compare(rows, args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())

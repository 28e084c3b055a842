"""Benchmark of MIND's answer-consistency term, as the trainer computes it.

Inputs: hidden states gathered at the answer positions, hidden_ans (B, K, A, d) in the input dtype,
the LM head weight (V, d), answer_mask (B, K, A) and alpha (B, K) (detached). Each provider computes
logits = h @ W^T in float32 (answer rows only) -> alpha-weighted pairwise JSD over the answer span
(``mindcore.reference.consistency.answer_consistency``), forward and backward (grads wrt h and W).
N in the rows is B*K*A, the number of answer rows; tflops counts the head GEMMs only (2NdV fwd,
6NdV fwd+bwd), the JSD itself is O(K^2 A V) elementwise work on top.

Providers: "mindcore" (the trainer's code, ``mindcore.mind.trainer`` ``_micro``: the op
``mindcore.answer_consistency``, which saves only fp32 log p and recomputes each pair in an analytic
backward), "reference" (the plain-autograd definition: keeps every pair's (B, A, V) intermediates for
backward), "eager-naive" (float32 log_softmax of all rows, then every pair i<j at once by broadcasting:
materialises K(K-1)/2 pairs of (B, A, V) distributions), "compile" (torch.compile of the reference;
CUDA only).
The truth is the reference on the same inputs; a provider outside tolerance is FAILED, not timed.

    python -m benchmarks.bench_answer_consistency --shapes qwen2.5-0.5b --questions 8 --dtypes fp32
"""
from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import harness as H
from benchmarks.bench_perspective_ce import parse_shape  # its SHAPES: the real LM heads
from mindcore.ops import answer_consistency as mindcore_consistency
from mindcore.reference.consistency import answer_consistency

OP = "answer_consistency"
PROVIDERS = ["eager-naive", "reference", "mindcore", "compile"]
BASELINES = ("eager-naive", "compile")
LOG2 = math.log(2.0)


# ----------------------------------------------------------------------------- inputs
def make_inputs(b, k, a, d, v, dtype, device, seed=0):
    """hidden_ans ~ N(0, 1), W ~ N(0, 1/d) (logits ~ N(0, 1)), ~10% of answer positions masked."""
    g = torch.Generator(device).manual_seed(seed)
    kw = dict(generator=g, device=device)
    hidden = torch.randn(b, k, a, d, **kw).to(dtype)
    weight = (torch.randn(v, d, **kw) * d ** -0.5).to(dtype)
    mask = torch.rand(b, k, a, **kw) >= 0.1
    mask[..., 0] = True  # every path answers at least one position
    alpha = torch.softmax(torch.randn(b, k, **kw), -1)
    return {"hidden": hidden.requires_grad_(), "weight": weight.requires_grad_(), "answer_mask": mask,
            "alpha": alpha}


# ----------------------------------------------------------------------------- providers
def _head_then(term):
    """fp32 logits of the answer rows (as the trainer computes them), then the consistency term."""
    def build(x, device):
        mask, alpha = x["answer_mask"], x["alpha"]

        def fn(h, w):
            b, k, a, d = h.shape
            logits = h.reshape(-1, d).float() @ w.float().t()
            return term(logits.view(b, k, a, -1), mask, alpha)
        return fn
    return build


_reference = _head_then(answer_consistency)
_mindcore = _head_then(mindcore_consistency)


def eager_naive_consistency(logits, answer_mask, alpha):
    """Loop-free float32 formulation: all K(K-1)/2 pairs at once by broadcasting (memory-hungry)."""
    k = logits.shape[1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    i, j = torch.triu_indices(k, k, 1, device=logits.device)
    lp, lq = logp[:, i], logp[:, j]  # (B, P, A, V)
    logm = torch.logaddexp(lp, lq) - LOG2
    jsd = 0.5 * ((lp.exp() * (lp - logm)).sum(-1) + (lq.exp() * (lq - logm)).sum(-1))  # (B, P, A)
    both = (answer_mask[:, i] & answer_mask[:, j]).float()
    per_pair = (jsd * both).sum(-1) / both.sum(-1).clamp(min=1)
    alpha = alpha.float()
    return (alpha[:, i] * alpha[:, j] * per_pair).sum(-1).mean()


_eager_naive = _head_then(eager_naive_consistency)


def _compile(x, device):
    if device.type != "cuda":
        raise H.Skip("torch.compile of the reference is benchmarked on CUDA only")
    return torch.compile(_reference(x, device), dynamic=False)


BUILDERS = {"eager-naive": _eager_naive, "reference": _reference, "mindcore": _mindcore, "compile": _compile}


class ConsBench:
    """fwd(grad) -> loss; bwd(loss); grads accumulate into hidden_ans and the weight."""

    needs_full_warmup = False

    def __init__(self, fn, x):
        self.fn = fn
        self.h, self.w = x["hidden"], x["weight"]
        self.h_nograd, self.w_nograd = self.h.detach(), self.w.detach()

    def reset(self):
        self.h.grad = self.w.grad = None

    def fwd(self, grad):
        if grad:
            return self.fn(self.h, self.w)
        with torch.no_grad():
            return self.fn(self.h_nograd, self.w_nograd)

    def bwd(self, loss):
        loss.backward()

    def grad_bytes(self):
        return sum(t.grad.numel() * t.grad.element_size() for t in (self.h, self.w) if t.grad is not None)

    def outputs(self):
        self.reset()
        loss = self.fn(self.h, self.w)
        loss.backward()
        return {"loss": loss, "grad_hidden": self.h.grad, "grad_weight": self.w.grad}


def estimate_bytes(provider, b, k, a, d, v, dtype):
    """Rough peak footprint, to skip sizes that would exhaust memory before trying them."""
    es = torch.tensor([], dtype=dtype).element_size()
    n = b * k * a
    io = 2 * (n * d + v * d) * es + v * d * 8  # inputs, grads, fp32 copies of W and its grad
    rows = n * v * 4 * 4  # logits, logp, their grads
    pair = b * a * v * 4  # one (B, A, V) fp32 tensor
    n_pairs = k * (k - 1) // 2
    # eager-naive and reference keep every pair's intermediates; mindcore ~3 pair temporaries (+ its
    # dL/dp buffer G, the size of the logits)
    pairs = {"eager-naive": n_pairs * pair * 8, "mindcore": 3 * pair + n * v * 4}.get(provider, n_pairs * pair * 6)
    return io + rows + pairs


def _split(n, k, a):
    return max(1, n // (k * a))


def make_bench(provider, n, d, v, dtype, device, k=8, a=4, seed=0):
    """Bench for one (provider, shape, dtype); n = B*K*A answer rows (B = n // (K*A)).

    Also the entry point of the CPU memory probe (which warms up at n <= 64).
    """
    device = torch.device(device)
    dtype = H.DTYPES[dtype] if isinstance(dtype, str) else dtype
    if provider not in BUILDERS:
        raise H.Skip(f"unknown provider {provider!r}; known: {PROVIDERS}")
    x = make_inputs(_split(n, k, a), k, a, d, v, dtype, device, seed=seed)
    bench = ConsBench(BUILDERS[provider](x, device), x)
    bench.needs_full_warmup = provider == "compile"
    return bench


def reference_outputs(b, k, a, d, v, dtype, device, seed=0):
    x = make_inputs(b, k, a, d, v, dtype, device, seed=seed)
    return ConsBench(_reference(x, device), x).outputs()


# ----------------------------------------------------------------------------- driver
def run(shapes, questions, k, a, dtypes, providers, modes, reps, device, out, memory=True, log=print):
    """Measure every combination; append each row as soon as it exists."""
    device = torch.device(device)
    env = H.environment(device)
    path = H.results_path(out, device)
    rows = []
    prior = H.prior_medians(path, ("eager-naive",))
    for shape in shapes:
        d, v = parse_shape(shape)
        for b in questions:
            n = b * k * a
            for dtype in dtypes:
                # the reference outputs, computed once for all providers of this combination
                ref = functools.cache(lambda: reference_outputs(b, k, a, d, v, dtype, device))
                eager_ms = {key[-1]: ms for key, ms in prior.items()
                            if key[:4] == ("eager-naive", shape, n, H.DTYPE_NAME[dtype])}
                for provider in providers:
                    base = dict(op=OP, provider=provider, dtype=H.DTYPE_NAME[dtype], shape=shape, N=n, d=d, V=v)
                    status, note, bench = H.prepare(
                        estimate_bytes(provider, b, k, a, d, v, dtype), device,
                        lambda: make_bench(provider, n, d, v, dtype, device, k=k, a=a), ref, dtype,
                        baseline=provider in BASELINES, note=f"B={b} K={k} A={a}")
                    if status != "ok":
                        H.emit(rows, path, H.make_row(env, **base, mode=",".join(modes), status=status, note=note))
                        continue
                    for mode in modes:
                        warm = 0 if (device.type == "cpu" and mode == "fwd+bwd") else 1
                        spec = dict(provider=provider, n=n, d=d, v=v, dtype=H.DTYPE_NAME[dtype],
                                    device=str(device), k=k, a=a)
                        row = H.measure(bench, mode, env=env, base=base, note=note, device=device, reps=reps,
                                        warmup=warm, memory_module=memory and "benchmarks.bench_answer_consistency",
                                        memory_spec=spec)
                        if row["status"] == "ok":
                            if provider == "eager-naive":
                                eager_ms[mode] = row["median_ms"]
                            if mode in eager_ms:
                                row["x_eager"] = row["median_ms"] / eager_ms[mode]
                        H.emit(rows, path, row)
                    del bench
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    log(f"rows appended to {path}")
    return rows


def main(argv=None):
    p = H.base_parser(__doc__.splitlines()[0])
    p.add_argument("--questions", type=lambda s: [int(t) for t in H.csv_list(s)], default=[8],
                   help="questions per step B (comma-separated); N = B*K*A answer rows")
    p.add_argument("--paths", type=int, default=8, help="rationales per question K")
    p.add_argument("--answer-len", type=int, default=4, help="answer-span positions A")
    args = p.parse_args(argv)
    if args.tokens:
        raise SystemExit("--tokens: not used here; N = B*K*A, set --questions, --paths, --answer-len")
    device = torch.device(args.device)
    shapes = args.shapes or (["smollm2-135m", "qwen2.5-0.5b"] if device.type == "cpu" else
                             ["qwen2.5-0.5b", "llama3.1-8b"])
    providers = args.providers or PROVIDERS
    H.check_choices("providers", providers, PROVIDERS)
    providers = sorted(providers, key=lambda q: q != "eager-naive")  # x_eager refers to its rows
    H.check_choices("modes", args.modes, H.MODES)
    rows = run(shapes, args.questions, args.paths, args.answer_len, H.parse_dtypes(args.dtypes), providers,
               args.modes, args.reps, device, args.out, memory=not args.no_memory)
    if args.compare:
        return H.finish_with_compare(rows, args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())

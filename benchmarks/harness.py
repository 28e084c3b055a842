"""One harness for every mindcore benchmark: environment, timing, memory, correctness, CSV rows.

A suite (``bench_<op>.py``) builds *benches*: objects with ``fwd(grad) -> state``, ``bwd(state)``,
``reset()`` and ``grad_bytes()``. The harness times them, measures their memory, checks them against
the oracle, and appends one row per (op, provider, mode, dtype, shape, N) to
``<out>/<device>.csv``. ``plot.py`` and ``compare.py`` read those rows.

Memory, "beyond inputs and gradients":
- CUDA: ``max_memory_allocated`` during the step minus what was allocated before it (the inputs)
  minus the bytes of the gradients it leaves.
- CPU: torch's CPU allocations are invisible to tracemalloc, so a fresh subprocess per
  (provider, shape, dtype, mode) builds the inputs, warms up at a tiny N (same d, V), drops the
  gradients, reads VmRSS, resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``),
  runs one step and reads VmHWM. extra = VmHWM - VmRSS(before) - gradient bytes. Pages freed to
  glibc's heap and reused are not counted twice; large (> 32 MB) buffers are mmapped and exact.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import gc
import importlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODES = ("fwd", "bwd", "fwd+bwd")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
DTYPE_NAME = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
COLUMNS = ["device", "torch", "triton", "cuda", "git_sha", "timestamp", "op", "provider", "mode",
           "dtype", "shape", "N", "d", "V", "status", "note", "median_ms", "p20_ms", "p80_ms",
           "reps", "tokens_per_s", "tflops", "peak_mem_mb", "extra_mem_mb", "x_eager", "x_floor"]


class Skip(Exception):
    """A provider or size that cannot run here; the message says why."""


# ----------------------------------------------------------------------------- environment
def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return slug(torch.cuda.get_device_name(device))
    return slug(f"cpu-{cpu_model()}")


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


def environment(device) -> dict:
    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = "none"
    return {"device": device_name(device), "torch": torch.__version__, "triton": triton_version,
            "cuda": torch.version.cuda or "none", "git_sha": git_sha()}


# ----------------------------------------------------------------------------- timing
def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def one_step(bench, mode, device) -> float:
    """Seconds for one step of ``mode``; for "bwd" the forward runs untimed first."""
    bench.reset()
    if mode == "bwd":
        state = bench.fwd(True)
        sync(device)
        t0 = time.perf_counter()
        bench.bwd(state)
    else:
        sync(device)
        t0 = time.perf_counter()
        state = bench.fwd(mode == "fwd+bwd")
        if mode == "fwd+bwd":
            bench.bwd(state)
    sync(device)
    return time.perf_counter() - t0


def percentile(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def time_bench(bench, mode, device, reps, warmup=1) -> dict:
    for _ in range(warmup):
        one_step(bench, mode, device)
    times = [one_step(bench, mode, device) for _ in range(reps)]
    return {"median_ms": 1e3 * statistics.median(times), "p20_ms": 1e3 * percentile(times, 0.2),
            "p80_ms": 1e3 * percentile(times, 0.8), "reps": reps}


# ----------------------------------------------------------------------------- memory
def free_bytes(device) -> int:
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 62


def probe(need_bytes: int, device, margin=0.85):
    """Raise Skip when an estimated footprint would not fit in what is free now."""
    have = free_bytes(device)
    if need_bytes > margin * have:
        raise Skip(f"needs ~{need_bytes / 2**30:.1f} GiB (estimate), {have / 2**30:.1f} GiB free")


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise RuntimeError(f"{key} missing from /proc/self/status")


def cuda_memory(bench, mode, device) -> dict:
    bench.reset()
    gc.collect()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    state = bench.fwd(mode != "fwd")
    if mode != "fwd":
        bench.bwd(state)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del state
    extra = peak - base - bench.grad_bytes()
    return {"peak_mem_mb": peak / 2**20, "extra_mem_mb": extra / 2**20}


def cpu_memory_inprocess(bench, mode) -> dict:
    """Peak-RSS growth of one step in this process (the subprocess probe calls this)."""
    bench.reset()
    gc.collect()
    base = _status_kib("VmRSS:") * 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    state = bench.fwd(mode != "fwd")
    if mode != "fwd":
        bench.bwd(state)
    peak = _status_kib("VmHWM:") * 1024
    del state
    extra = peak - base - bench.grad_bytes()
    return {"peak_mem_mb": peak / 2**20, "extra_mem_mb": extra / 2**20}


def cpu_memory_subprocess(module: str, spec: dict, mode: str, timeout=1800) -> dict:
    """Run ``module.make_bench(**spec)`` in a fresh interpreter and measure one step there."""
    cmd = [sys.executable, "-m", "benchmarks.harness", "memprobe", module, json.dumps(spec), mode]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("MEMPROBE ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"memory probe failed (rc={out.returncode}): {out.stderr.strip()[-400:]}")
    return json.loads(lines[-1][len("MEMPROBE "):])


def _memprobe_main(module, spec_json, mode):
    mod = importlib.import_module(module)
    spec = json.loads(spec_json)
    warm = mod.make_bench(**{**spec, "n": min(spec["n"], 64)})  # loads libraries, thread pools
    one_step(warm, mode, "cpu")
    del warm
    bench = mod.make_bench(**spec)
    if getattr(bench, "needs_full_warmup", False):  # e.g. torch.compile specialises on the shape
        one_step(bench, mode, "cpu")
    print("MEMPROBE " + json.dumps(cpu_memory_inprocess(bench, mode)), flush=True)


# ----------------------------------------------------------------------------- correctness
TOL = {torch.float32: (1e-4, 1e-3), torch.bfloat16: (2e-2, 5e-2), torch.float16: (1e-2, 3e-2)}


def rel_err(got, ref) -> float:
    got, ref = got.detach().double(), ref.detach().double()
    if got.shape != ref.shape:
        return float("inf")
    denom = ref.norm().item()
    return (got - ref).norm().item() / (denom if denom > 0 else 1.0)


def check(outputs: dict, reference: dict, dtype) -> str | None:
    """None if every output is within the dtype's tolerance of the reference, else what is off.

    loss and path_loss: relative error <= tol_loss; grads: relative Frobenius error <= tol_grad.
    """
    tol_loss, tol_grad = TOL[dtype]
    bad = []
    for key, ref in reference.items():
        got = outputs.get(key)
        if got is None:
            bad.append(f"{key} missing")
            continue
        err = rel_err(got, ref)
        tol = tol_grad if key.startswith("grad") else tol_loss
        if not err <= tol:  # also catches NaN
            bad.append(f"{key} rel err {err:.2e} > {tol:.0e}")
    return "; ".join(bad) or None


# ----------------------------------------------------------------------------- rows
def append_rows(path: Path, rows):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != COLUMNS:
            raise RuntimeError(f"{path} has columns {header}; expected {COLUMNS}. Move it aside or pass --out")
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        for row in rows:
            w.writerow({k: _fmt(row.get(k, "")) for k in COLUMNS})


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def prior_medians(path, providers) -> dict:
    """{(provider, shape, N, dtype, mode): median_ms} of the latest ok rows already in ``path``."""
    if not Path(path).exists():
        return {}
    out = {}
    for r in sorted(read_rows(path), key=lambda r: r["timestamp"]):
        if r["provider"] in providers and r["status"] == "ok" and r["median_ms"]:
            out[(r["provider"], r["shape"], int(r["N"]), r["dtype"], r["mode"])] = float(r["median_ms"])
    return out


def make_row(env, **fields) -> dict:
    row = dict(env)
    row["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    row.update(fields)
    return row


FLOPS = {"fwd": 2, "bwd": 4, "fwd+bwd": 6}  # x N*d*V: the head GEMMs of one mode


def emit(rows, path, row):
    """Keep the row, append it to the CSV now (a later timeout loses nothing) and print it."""
    rows.append(row)
    append_rows(path, [row])
    print_row(row)


def prepare(need_bytes, device, build, reference, dtype, *, baseline=False, note=""):
    """Probe memory, build the bench, check it against the reference before timing.

    ``reference`` is a callable giving the reference outputs (or None: nothing to check). A baseline
    outside tolerance is timed anyway, flagged INACCURATE in the note; any other provider FAILED.
    Returns (status, note, bench); bench is None unless status is "ok".
    """
    try:
        probe(need_bytes, device)
        bench = build()
        bad = check(bench.outputs(), reference(), dtype) if reference is not None else None
    except Skip as exc:
        return "skipped", str(exc), None
    except Exception as exc:  # a provider that crashes is a failed provider
        return "FAILED", f"{type(exc).__name__}: {str(exc)[:300]}", None
    if bad and not baseline:
        return "FAILED", bad, None
    if bad:
        note = "; ".join(filter(None, [note, f"INACCURATE baseline (timed anyway): {bad}"]))
    return "ok", note, bench


def measure(bench, mode, *, env, base, note, device, reps, warmup, memory_module=None, memory_spec=None) -> dict:
    """One checked bench in one mode -> a row with time, tokens/s, effective TFLOP/s and memory.

    ``base`` holds N, d, V; the memory probe runs when ``memory_module`` is given (CUDA: in process;
    CPU: ``memory_module``'s memprobe in a fresh subprocess with ``memory_spec``).
    """
    row = make_row(env, **base, mode=mode, status="ok", note=note)
    try:
        row.update(time_bench(bench, mode, device, reps, warmup=warmup))
    except Exception as exc:
        row.update(status="FAILED", note=f"{type(exc).__name__}: {str(exc)[:300]}")
        return row
    secs = row["median_ms"] / 1e3
    row["tokens_per_s"] = base["N"] / secs
    row["tflops"] = FLOPS[mode] * base["N"] * base["d"] * base["V"] / secs / 1e12
    if memory_module:
        try:
            row.update(cuda_memory(bench, mode, device) if device.type == "cuda"
                       else cpu_memory_subprocess(memory_module, memory_spec, mode))
        except Exception as exc:
            row["note"] = "; ".join(filter(None, [note, f"memory not measured: {type(exc).__name__}: "
                                                        f"{str(exc)[:200]}"]))
    return row


def check_choices(name, chosen, allowed):
    unknown = set(chosen) - set(allowed)
    if unknown:
        raise SystemExit(f"--{name}: unknown {sorted(unknown)}; choose from {list(allowed)}")


def results_path(out, device) -> Path:
    return Path(out) / f"{device_name(device)}.csv"


def print_row(row):
    keys = ("op", "provider", "mode", "dtype", "shape", "N", "status", "median_ms", "tokens_per_s",
            "tflops", "extra_mem_mb", "x_eager", "x_floor")
    parts = []
    for k in keys:
        v = row.get(k, "")
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) and not math.isnan(v) else f"{k}={v}")
    note = row.get("note")
    print("  ".join(parts) + (f"  note={note}" if note else ""), flush=True)


# ----------------------------------------------------------------------------- CLI
def csv_list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def base_parser(description) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--shapes", type=csv_list, help="comma-separated shape names (or DxV, e.g. 64x1000)")
    p.add_argument("--tokens", type=lambda s: [int(t) for t in csv_list(s)], help="token counts N")
    p.add_argument("--dtypes", type=csv_list, default=["fp32"], help="fp32,bf16,fp16")
    p.add_argument("--providers", type=csv_list, help="providers to run (default: all)")
    p.add_argument("--modes", type=csv_list, default=["fwd+bwd"], help="fwd,bwd,fwd+bwd")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(RESULTS), help="folder for <device>.csv")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--compare", metavar="BASELINE.csv",
                   help="after the run, compare the new rows with a stored baseline; exit 1 on regressions")
    return p


def parse_dtypes(names):
    try:
        return [DTYPES[n] for n in names]
    except KeyError as exc:
        raise SystemExit(f"--dtypes: unknown dtype {exc}; use fp32, bf16 or fp16")


def finish_with_compare(new_rows, baseline, threshold=0.10) -> int:
    from benchmarks.compare import compare_rows, report
    regressions, compared = compare_rows(new_rows, read_rows(baseline), threshold)
    print(report(regressions, compared, threshold))
    return 1 if regressions else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "memprobe":
        _memprobe_main(*sys.argv[2:])
    else:
        raise SystemExit("usage: python -m benchmarks.harness memprobe MODULE SPEC_JSON MODE")

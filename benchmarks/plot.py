"""Render PNGs from benchmark rows: speed vs tokens per provider, and memory bars.

    python -m benchmarks.plot benchmarks/results/<device>.csv [--out DIR] [--metric tflops|median_ms|tokens_per_s]

Per (device, op) two figures, one panel per (dtype, mode) x shape: ``<device>__<op>__speed.png``
(the metric vs N, one line per provider; the latest row of each key) and ``<device>__<op>__memory.png``
(memory beyond inputs and gradients per provider at the largest N measured).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.compare import latest  # noqa: E402
from benchmarks.harness import read_rows  # noqa: E402

LABEL = {"tflops": "effective TFLOP/s", "median_ms": "median time (ms)", "tokens_per_s": "tokens/s"}


def _f(row, key):
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def _grid(n_rows, n_cols):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.2 * n_rows), squeeze=False)
    return fig, axes


def plot(rows, out_dir, metric=None):
    """Write the PNGs; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = [r for r in latest(rows).values() if r.get("status") == "ok"]
    groups = defaultdict(list)
    for r in ok:
        groups[(r["device"], r["op"])].append(r)
    written = []
    for (device, op), rs in sorted(groups.items()):
        m = metric or ("tflops" if any(_f(r, "tflops") for r in rs) else "tokens_per_s")
        # the CPU floor is fp32 only: it joins the panels of every dtype that has no floor of its own
        panels = sorted({(r["dtype"], r["mode"]) for r in rs if r["provider"] != "floor"}) \
            or sorted({(r["dtype"], r["mode"]) for r in rs})
        floor_dtypes = {r["dtype"] for r in rs if r["provider"] == "floor"}
        shapes = sorted({r["shape"] for r in rs})
        for kind in ("speed", "memory"):
            fig, axes = _grid(len(panels), len(shapes))
            for i, (dtype, mode) in enumerate(panels):
                for j, shape in enumerate(shapes):
                    ax = axes[i][j]
                    fl = dtype if dtype in floor_dtypes else "fp32"
                    sel = [r for r in rs if r["shape"] == shape and r["mode"] == mode
                           and r["dtype"] == (fl if r["provider"] == "floor" else dtype)]
                    ax.set_title(f"{shape} {dtype} {mode}", fontsize=9)
                    if kind == "speed":
                        _speed(ax, sel, m)
                    else:
                        _memory(ax, sel)
            fig.suptitle(f"{op} on {device}", fontsize=10)
            fig.tight_layout()
            path = out_dir / f"{device}__{op.replace('/', '_')}__{kind}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def _speed(ax, sel, metric):
    by_provider = defaultdict(list)
    for r in sel:
        y = _f(r, metric)
        if y is not None:
            by_provider[r["provider"]].append((int(r["N"]), y))
    for provider, pts in sorted(by_provider.items()):
        pts.sort()
        style = "k--s" if provider == "floor" else "-o"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=provider, markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens N")
    ax.set_ylabel(LABEL.get(metric, metric))
    if by_provider:
        ax.legend(fontsize=7)


def _memory(ax, sel):
    if not sel:
        return
    n_max = max(int(r["N"]) for r in sel)
    pts = [(r["provider"], _f(r, "extra_mem_mb")) for r in sel if int(r["N"]) == n_max]
    pts = sorted((p, y) for p, y in pts if y is not None)
    ax.bar([p for p, _ in pts], [max(y, 0.0) for _, y in pts], color="tab:blue")
    ax.set_ylabel(f"MiB beyond inputs+grads (N={n_max})")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)


def table(rows) -> str:
    """Markdown table of the latest row per key (skipped / FAILED rows with their note)."""
    cols = ("op", "provider", "mode", "dtype", "shape", "N", "status", "median_ms", "p20_ms", "p80_ms",
            "tokens_per_s", "tflops", "extra_mem_mb", "x_eager", "x_floor")
    lines = ["| " + " | ".join(cols) + " | note |", "|" + "---|" * (len(cols) + 1)]
    for r in latest(rows).values():
        cells = []
        for c in cols:
            v = _f(r, c) if c not in ("op", "provider", "mode", "dtype", "shape", "N", "status") else None
            cells.append(f"{v:.4g}" if v is not None else str(r.get(c, "")))
        lines.append("| " + " | ".join(cells) + f" | {r.get('note', '')} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+")
    p.add_argument("--out", help="folder for the PNGs (default: next to the first CSV)")
    p.add_argument("--metric", choices=sorted(LABEL))
    p.add_argument("--table", action="store_true", help="also print a markdown table of the rows")
    args = p.parse_args(argv)
    rows = [r for path in args.csv for r in read_rows(path)]
    if args.table:
        print(table(rows))
    for path in plot(rows, args.out or Path(args.csv[0]).parent, args.metric):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

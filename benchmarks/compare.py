"""Compare benchmark rows with a stored baseline; exit 1 when something got slower or broke.

    python -m benchmarks.compare NEW.csv BASELINE.csv [--threshold 0.10]

Rows match on (device, op, provider, mode, dtype, shape, N, d, V); the latest row of each key wins.
A regression is a median time more than ``threshold`` above the baseline's, or a provider that
was "ok" in the baseline and is FAILED now. Rows without a match are listed, not judged.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import read_rows

KEY = ("device", "op", "provider", "mode", "dtype", "shape", "N", "d", "V")


def _key(row):
    return tuple(str(row.get(k, "")) for k in KEY)


def latest(rows):
    out = {}
    for row in sorted(rows, key=lambda r: str(r.get("timestamp", ""))):
        out[_key(row)] = row
    return out


def _ms(row):
    try:
        return float(row.get("median_ms", ""))
    except (TypeError, ValueError):
        return None


def compare_rows(new_rows, base_rows, threshold=0.10):
    """(regressions, compared): lists of (key, base_ms, new_ms, why)."""
    new, base = latest(new_rows), latest(base_rows)
    regressions, compared = [], []
    for key, row in new.items():
        if key not in base:
            continue
        b, n = base[key], row
        b_ms, n_ms = _ms(b), _ms(n)
        if b.get("status") == "ok" and n.get("status") == "FAILED":
            regressions.append((key, b_ms, None, f"FAILED now: {n.get('note', '')}"))
        elif b_ms is not None and n_ms is not None:
            entry = (key, b_ms, n_ms, f"{n_ms / b_ms - 1:+.1%}")
            compared.append(entry)
            if n_ms > b_ms * (1 + threshold):
                regressions.append(entry)
    return regressions, compared


def report(regressions, compared, threshold) -> str:
    lines = [f"compared {len(compared)} rows with the baseline (threshold +{threshold:.0%})"]
    for key, b_ms, n_ms, why in compared:
        tag = "REGRESSION" if any(r[0] == key for r in regressions) else "ok"
        lines.append(f"  {tag:<10} {'/'.join(key[1:])}: {b_ms:.4g} ms -> {n_ms:.4g} ms ({why})")
    for key, b_ms, n_ms, why in regressions:
        if n_ms is None:
            lines.append(f"  REGRESSION {'/'.join(key[1:])}: {why}")
    lines.append(f"{len(regressions)} regression(s)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new")
    p.add_argument("baseline")
    p.add_argument("--threshold", type=float, default=0.10, help="allowed slowdown (0.10 = 10%%)")
    args = p.parse_args(argv)
    regressions, compared = compare_rows(read_rows(args.new), read_rows(args.baseline), args.threshold)
    print(report(regressions, compared, args.threshold))
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())

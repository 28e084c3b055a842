"""Seeds and uncertainty: mean/spread over seeds, paired per-question comparisons of two modes.

Paired comparisons pair the same eval question (and the same seed) across two modes, which removes
the between-question variance that dominates unpaired comparisons at a few hundred questions.
"""
from __future__ import annotations

import math
import random
from typing import Sequence


def mean_sd(xs: Sequence[float]) -> dict:
    """{"mean", "sd" (sample sd, None for one value), "min", "max", "n"}."""
    xs = [float(x) for x in xs]
    if not xs:
        raise ValueError("mean_sd: no values")
    n, m = len(xs), sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {"mean": m, "sd": sd, "min": min(xs), "max": max(xs), "n": n}


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test on paired outcomes (a[i], b[i] of the same item).

    Only the discordant pairs matter: n01 = a wrong & b right, n10 = a right & b wrong; under H0
    each discordant pair goes either way with probability 1/2.
    """
    if len(a) != len(b):
        raise ValueError(f"mcnemar_exact: {len(a)} vs {len(b)} outcomes; pair the same items")
    n10 = sum(1 for x, y in zip(a, b) if x and not y)
    n01 = sum(1 for x, y in zip(a, b) if y and not x)
    n = n10 + n01
    if n == 0:
        p = 1.0
    else:
        try:
            from scipy.stats import binomtest
            p = float(binomtest(min(n10, n01), n, 0.5).pvalue)
        except ImportError:  # the same exact test by hand
            k = min(n10, n01)
            p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"a_only": n10, "b_only": n01, "p_value": p}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 5000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean of a - b over items with a percentile bootstrap CI (items resampled with replacement).

    ``a``/``b``: per-item scores of two modes on the same items (0/1, or seed-averaged accuracy).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_bootstrap: need equal, non-empty lists, got {len(a)} and {len(b)}")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    n, rng = len(d), random.Random(seed)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    lo = means[int((1 - level) / 2 * n_boot)]
    hi = means[min(n_boot - 1, int((1 + level) / 2 * n_boot))]
    return {"diff": sum(d) / n, "ci_low": lo, "ci_high": hi, "level": level, "n_items": n}


def compare(per_seed_a: Sequence[Sequence[bool]], per_seed_b: Sequence[Sequence[bool]], **kw) -> dict:
    """Paired comparison of mode a vs b: per-seed item outcomes, same seeds and items in both.

    Bootstrap over questions on the seed-averaged per-question accuracy; McNemar over all
    (seed, question) pairs.
    """
    if len(per_seed_a) != len(per_seed_b) or not per_seed_a:
        raise ValueError("compare: both modes need outcomes for the same, non-empty list of seeds")
    n_items = {len(s) for s in list(per_seed_a) + list(per_seed_b)}
    if len(n_items) != 1:
        raise ValueError(f"compare: outcome lists differ in length {sorted(n_items)}; use the same eval items")
    s = len(per_seed_a)
    avg = lambda runs: [sum(r[i] for r in runs) / s for i in range(len(runs[0]))]  # noqa: E731
    out = paired_bootstrap(avg(per_seed_a), avg(per_seed_b), **kw)
    flat_a = [x for r in per_seed_a for x in r]
    flat_b = [x for r in per_seed_b for x in r]
    out["mcnemar"] = mcnemar_exact(flat_a, flat_b)
    out["seeds"] = s
    return out

import math

import pytest

from mindcore.mind import stats
from mindcore.mind.study import spearman


def test_mean_sd():
    r = stats.mean_sd([0.2, 0.4, 0.6])
    assert r["mean"] == pytest.approx(0.4) and r["sd"] == pytest.approx(0.2) and r["n"] == 3
    assert stats.mean_sd([0.5])["sd"] is None
    with pytest.raises(ValueError):
        stats.mean_sd([])


def test_mcnemar_exact_by_hand():
    # 8 items a right / b wrong, 2 the other way, 10 concordant: p = 2 * P(X <= 2), X ~ Bin(10, 1/2)
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 5
    r = stats.mcnemar_exact(a, b)
    assert (r["a_only"], r["b_only"]) == (8, 2)
    assert r["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert stats.mcnemar_exact([1, 0], [1, 0])["p_value"] == 1.0
    with pytest.raises(ValueError, match="pair"):
        stats.mcnemar_exact([1], [1, 0])


def test_paired_bootstrap_ci():
    a = [1] * 60 + [0] * 40
    b = [1] * 40 + [0] * 60
    r = stats.paired_bootstrap(a, b, n_boot=2000, seed=1)
    assert r["diff"] == pytest.approx(0.2)
    assert r["ci_low"] < 0.2 < r["ci_high"] and r["ci_low"] > 0.05 and r["ci_high"] < 0.35
    assert stats.paired_bootstrap(a, b, n_boot=2000, seed=1) == r            # seeded: reproducible
    same = stats.paired_bootstrap(a, a, n_boot=500)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0


def test_compare_over_seeds():
    a = [[1, 1, 0, 1], [1, 0, 0, 1]]
    b = [[0, 1, 0, 0], [0, 0, 0, 1]]
    r = stats.compare(a, b, n_boot=500)
    assert r["seeds"] == 2 and r["diff"] == pytest.approx((5 - 2) / 8)
    assert r["mcnemar"]["a_only"] == 3 and r["mcnemar"]["b_only"] == 0
    with pytest.raises(ValueError, match="same eval items"):
        stats.compare([[1, 0]], [[1]])


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert math.isfinite(spearman([1, 2, 2, 3], [1, 3, 2, 4]))

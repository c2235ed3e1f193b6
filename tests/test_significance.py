"""McNemar on a worked example; the paired bootstrap covers the truth and is reproducible."""

import numpy as np
import pytest

from nlclf.significance import mcnemar, paired_bootstrap


def pairs(b, c, both_right=5, both_wrong=3):
    """y and predictions with b (A right, B wrong) and c (A wrong, B right) discordant examples."""
    y = np.zeros(b + c + both_right + both_wrong, dtype=int)
    a = np.r_[np.zeros(b), np.ones(c), np.zeros(both_right), np.ones(both_wrong)].astype(int)
    p = np.r_[np.ones(b), np.zeros(c), np.zeros(both_right), np.ones(both_wrong)].astype(int)
    return y, a, p


def test_mcnemar_worked_example():
    r = mcnemar(*pairs(10, 2))
    assert (r["b"], r["c"], r["n"]) == (10, 2, 20)
    assert r["p_exact"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)          # 0.0386
    assert r["p_exact"] == pytest.approx(0.0386, abs=1e-4)
    assert r["chi2"] == pytest.approx(49 / 12)                                # (|10-2|-1)^2 / 12
    assert r["p_chi2"] == pytest.approx(0.0433, abs=1e-4)
    assert r["accuracy_a"] == pytest.approx(15 / 20) and r["accuracy_b"] == pytest.approx(7 / 20)
    swapped = mcnemar(*[pairs(10, 2)[i] for i in (0, 2, 1)])
    assert (swapped["b"], swapped["c"]) == (2, 10) and swapped["p_exact"] == pytest.approx(r["p_exact"])


def test_mcnemar_identical_and_balanced():
    y = np.array([0, 1, 2, 1])
    pred = np.array([0, 2, 2, 0])
    r = mcnemar(y, pred, pred)
    assert (r["b"], r["c"], r["p_exact"], r["chi2"], r["p_chi2"]) == (0, 0, 1.0, 0.0, 1.0)
    r = mcnemar(*pairs(4, 4))
    assert r["p_exact"] == pytest.approx(1.0) and r["chi2"] == 0.0 and r["p_chi2"] == pytest.approx(1.0)


def test_bootstrap_covers_the_true_difference_and_is_reproducible():
    rng = np.random.default_rng(0)
    N = 2000
    y = rng.integers(0, 3, N)
    pred_a = np.where(rng.random(N) < 0.80, y, (y + 1) % 3)                   # 80% right
    pred_b = np.where(rng.random(N) < 0.70, y, (y + 2) % 3)                   # 70% right
    r = paired_bootstrap(y, pred_b, pred_a, n=2000, seed=3)                   # B (80%) against A (70%)
    assert r["difference"] == pytest.approx(r["accuracy_b"] - r["accuracy_a"])
    assert r["difference"] > 0.05
    assert r["ci_low"] < 0.10 < r["ci_high"] and r["ci_low"] < r["difference"] < r["ci_high"]
    assert r["ci_high"] - r["ci_low"] < 0.1 and r["p_value"] < 0.001            # P(B <= A): B is clearly better
    worse = paired_bootstrap(y, pred_a, pred_b, n=2000, seed=3)                # the other way round
    assert worse["difference"] == pytest.approx(-r["difference"]) and worse["p_value"] > 0.999
    assert paired_bootstrap(y, pred_b, pred_a, n=2000, seed=3) == r
    assert paired_bootstrap(y, pred_b, pred_a, n=2000, seed=4)["ci_low"] != r["ci_low"]
    same = paired_bootstrap(y, pred_b, pred_b, n=200)
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_value"] == 1.0


def test_bootstrap_chunks_do_not_change_the_interval(monkeypatch):
    import nlclf.significance as s
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    a, b = np.where(rng.random(300) < 0.7, y, 1 - y), np.where(rng.random(300) < 0.6, y, 1 - y)
    r = s.paired_bootstrap(y, a, b, n=1000, seed=0)
    monkeypatch.setattr(s, "CHUNK_ELEMENTS", 300 * 7)                         # 7 resamples a chunk
    small = s.paired_bootstrap(y, a, b, n=1000, seed=0)
    assert small["ci_low"] == pytest.approx(r["ci_low"], abs=0.02)
    assert small["ci_high"] == pytest.approx(r["ci_high"], abs=0.02)

"""Multi-label metrics, decisions and dev thresholds, checked against scikit-learn and by hand."""

import numpy as np
import pytest
from sklearn import metrics as skm

from nlclf import metrics


def sample(n=60, c=7, seed=0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, c)) < 0.3).astype(np.uint8)
    S = np.clip(0.5 * Y + 0.6 * rng.random((n, c)), 0, 1).astype(np.float32)
    return Y, S


def test_report_matches_scikit_learn():
    Y, S = sample()
    P = metrics.decide(S, 0.5)
    r = metrics.multilabel_report(Y, P, S, list("abcdefg"))
    for avg in ("micro", "macro", "samples"):
        p, rc, f, _ = skm.precision_recall_fscore_support(Y, P.astype(int), average=avg, zero_division=0)
        assert (r[f"{avg}_precision"], r[f"{avg}_recall"], r[f"{avg}_f1"]) == pytest.approx((p, rc, f))
    assert r["hamming_loss"] == pytest.approx(skm.hamming_loss(Y, P.astype(int)))
    assert r["subset_accuracy"] == pytest.approx(skm.accuracy_score(Y, P.astype(int)))
    p, rc, f, s = skm.precision_recall_fscore_support(Y, P.astype(int), zero_division=0)
    assert [d["f1"] for d in r["per_label"]] == pytest.approx(f)
    assert [d["support"] for d in r["per_label"]] == list(s)
    assert metrics.multilabel_quick(Y, P) == pytest.approx({"micro_f1": r["micro_f1"], "macro_f1": r["macro_f1"]})


def test_precision_and_recall_at_k_by_hand():
    Y = np.array([[1, 0, 0], [0, 1, 1]])
    S = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.1]])
    assert metrics.at_k(Y, S, 1) == pytest.approx((0.5, 1 / 3))
    assert metrics.at_k(Y, S, 2) == pytest.approx((0.5, 2 / 3))
    assert metrics.at_k(Y, S, 5) == pytest.approx((3 / 6, 1.0))    # k is cut to C


def test_decide_keeps_the_top_label_unless_empty_is_allowed():
    S = np.array([[0.2, 0.3], [0.9, 0.6]])
    assert metrics.decide(S, 0.5).tolist() == [[False, True], [True, True]]
    assert metrics.decide(S, 0.5, allow_empty=True).tolist() == [[False, False], [True, True]]
    assert metrics.decide(S, np.array([0.1, 0.95]), allow_empty=True).tolist() == [[True, False], [True, False]]


def test_thresholds_maximise_dev_micro_f1():
    Y, S = sample(seed=3)
    t = metrics.choose_thresholds(Y, S)
    f = lambda th: metrics.multilabel_quick(Y, metrics.decide(S, th))["micro_f1"]
    assert f(t) == max(f(g) for g in metrics.THRESHOLD_GRID)
    th = metrics.choose_thresholds(Y, S, per_label=True)
    assert th.shape == (7,) and f(th) >= f(t)

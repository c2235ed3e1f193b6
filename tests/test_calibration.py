"""Reliability bins and ECE on hand-computed numbers; temperature scaling recovers a known T."""

import numpy as np
import pytest

from nlclf.calibration import ece, fit_temperature, nll, reliability
from nlclf.nn.losses import softmax


def test_reliability_and_ece_by_hand():
    # confidences 0.9, 0.8, 0.6, 0.55; bins of width 0.25: [0.5, 0.75) holds 0.6 and 0.55, [0.75, 1] 0.9 and 0.8
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    y = np.array([0, 0, 0, 1])                               # right, wrong, right, right
    r = reliability(proba, y, bins=4)
    assert r["count"] == [0, 0, 2, 2] and r["n"] == 4
    assert r["confidence"][:2] == [None, None] and r["accuracy"][:2] == [None, None]
    assert r["confidence"][2:] == pytest.approx([0.575, 0.85])
    assert r["accuracy"][2:] == pytest.approx([1.0, 0.5])
    assert r["edges"] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    expected = 0.5 * abs(1.0 - 0.575) + 0.5 * abs(0.5 - 0.85)        # 0.3875
    assert ece(proba, y, bins=4) == pytest.approx(expected) == r["ece"]


def test_confidence_one_falls_in_the_last_bin():
    r = reliability(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]), bins=10)
    assert r["count"][-1] == 2 and r["accuracy"][-1] == 0.5 and r["ece"] == pytest.approx(0.5)


def test_calibrated_data_have_small_ece():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.full(3, 0.7), size=20000)                 # (N, C)
    y = (proba.cumsum(axis=1) < rng.random((20000, 1))).sum(axis=1)     # y ~ proba
    assert ece(proba, y) < 0.02
    sharp = softmax(3 * np.log(proba))                                 # same argmax, overconfident
    assert ece(sharp, y) > 0.1


def sample(z, T, rng):
    p = softmax(z / T)
    return (p.cumsum(axis=1) < rng.random((len(z), 1))).sum(axis=1)


@pytest.mark.parametrize("T0", [0.5, 2.0])
def test_fit_temperature_recovers_a_known_temperature(T0):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(8000, 4))
    y = sample(z, T0, rng)
    T = fit_temperature(z, y)
    assert T == pytest.approx(T0, rel=0.05)
    assert nll(z, y, T) <= min(nll(z, y, T * 1.01), nll(z, y, T / 1.01))     # a minimum
    assert fit_temperature(z, y) == T                                  # deterministic


def test_nll_by_hand_and_range_ends():
    z = np.array([[2.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0])
    expected = (np.log(1 + np.exp(-2)) + np.log(1 + np.exp(1))) / 2
    assert nll(z, y) == pytest.approx(expected)
    assert nll(z, y, 2.0) == pytest.approx(nll(z / 2, y))
    separable = np.array([[3.0, -3.0], [-2.0, 2.0]])
    assert fit_temperature(separable, np.array([0, 1])) == pytest.approx(np.exp(-3))
    assert fit_temperature(separable, np.array([1, 0])) == pytest.approx(np.exp(3))
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0, int)) == 1.0

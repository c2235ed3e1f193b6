"""Optimiser updates restated from their formulas and compared exactly; schedules; clipping."""

import math

import numpy as np
import pytest

from nlclf.nn import optim
from nlclf.nn.layers import Rows


def setup(rng):
    params = {"W": rng.normal(size=(6, 3)), "b": rng.normal(size=3)}
    grads = {"W": Rows(np.array([1, 4]), rng.normal(size=(2, 3))), "b": rng.normal(size=3)}
    return params, grads


def test_sgd_is_the_notes_update(rng):
    params, grads = setup(rng)
    before = {k: v.copy() for k, v in params.items()}
    optim.SGD(params).step(params, grads, 0.1)
    expected_W = before["W"].copy()
    expected_W[[1, 4]] -= 0.1 * grads["W"].value
    assert np.array_equal(params["W"], expected_W)
    assert np.array_equal(params["b"], before["b"] - 0.1 * grads["b"])


def test_momentum_two_steps_lazy_rows(rng):
    params, g1 = setup(rng)
    _, g2 = setup(rng)
    g2["W"] = Rows(np.array([0, 4]), g2["W"].value)
    W0 = params["W"].copy()
    opt = optim.SGD(params, momentum=0.9, lr_mult={"W": 0.5})
    opt.step(params, g1, 0.1)
    opt.step(params, g2, 0.1)
    v = np.zeros_like(W0)
    W = W0.copy()
    for g in (g1["W"], g2["W"]):
        v[g.index] = 0.9 * v[g.index] + g.value
        W[g.index] -= 0.05 * v[g.index]
    assert np.allclose(params["W"], W, rtol=0, atol=1e-15)
    assert np.array_equal(params["W"][[2, 3, 5]], W0[[2, 3, 5]])     # rows never in a batch do not move


def test_adam_matches_the_formula(rng):
    params, g1 = setup(rng)
    _, g2 = setup(rng)
    W0, b0 = params["W"].copy(), params["b"].copy()
    opt = optim.Adam(params, beta1=0.9, beta2=0.99, eps=1e-8)
    opt.step(params, g1, 0.01)
    opt.step(params, g2, 0.01)
    m, v, W = np.zeros_like(W0), np.zeros_like(W0), W0.copy()
    mb, vb, b = np.zeros_like(b0), np.zeros_like(b0), b0.copy()
    for t, g in enumerate((g1, g2), start=1):
        i, gw = g["W"].index, g["W"].value
        m[i] = 0.9 * m[i] + 0.1 * gw
        v[i] = 0.99 * v[i] + 0.01 * gw**2
        W[i] -= 0.01 * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.99**t)) + 1e-8)
        mb = 0.9 * mb + 0.1 * g["b"]
        vb = 0.99 * vb + 0.01 * g["b"] ** 2
        b -= 0.01 * (mb / (1 - 0.9**t)) / (np.sqrt(vb / (1 - 0.99**t)) + 1e-8)
    assert np.allclose(params["W"], W, rtol=1e-12, atol=1e-15)
    assert np.allclose(params["b"], b, rtol=1e-12, atol=1e-15)


def test_adagrad_matches_the_formula_row_wise_on_rows(rng):
    """Row-wise for the parameters named in ``rows`` (one accumulator a row: the mean of its
    squared gradient), element-wise for the others; rows never in a batch do not move."""
    params, g1 = setup(rng)
    _, g2 = setup(rng)
    g2["W"] = Rows(np.array([0, 4]), g2["W"].value)
    W0, b0 = params["W"].copy(), params["b"].copy()
    opt = optim.Adagrad(params, eps=1e-8, lr_mult={"W": 0.5}, rows={"W"})
    assert opt.s["W"].shape == (6,) and opt.s["b"].shape == (3,)
    opt.step(params, g1, 0.1)
    opt.step(params, g2, 0.1)
    s, W = np.zeros(6), W0.copy()
    sb, b = np.zeros(3), b0.copy()
    for g in (g1, g2):
        i, gw = g["W"].index, g["W"].value
        s[i] += (gw ** 2).mean(axis=1)
        W[i] -= 0.05 * gw / (np.sqrt(s[i])[:, None] + 1e-8)
        sb += g["b"] ** 2
        b -= 0.1 * g["b"] / (np.sqrt(sb) + 1e-8)
    assert np.allclose(params["W"], W, rtol=1e-12, atol=1e-15)
    assert np.allclose(params["b"], b, rtol=1e-12, atol=1e-15)
    assert np.array_equal(params["W"][[2, 3, 5]], W0[[2, 3, 5]])
    assert np.allclose(opt.s["W"], s, rtol=1e-12, atol=0)


def test_adagrad_element_wise_on_rows_of_a_parameter_not_named(rng):
    params, g1 = setup(rng)
    W0 = params["W"].copy()
    optim.Adagrad(params, eps=1e-8).step(params, g1, 0.1)
    i, gw = g1["W"].index, g1["W"].value
    W = W0.copy()
    W[i] -= 0.1 * gw / (np.sqrt(gw ** 2) + 1e-8)
    assert np.allclose(params["W"], W, rtol=1e-12, atol=1e-15)


def sparse_case(rng, monkeypatch, fused: bool, seed: int):
    """(X (5, 40) CSR of counts, dy (5, 3), W (40, 3), params {"W": a copy}, the first layer's
    gradient of W as layers.sparse_backward gives it); ``fused`` False forbids the fused update."""
    import scipy.sparse as sp
    from nlclf.nn import layers
    if not fused:
        monkeypatch.setattr(layers, "FUSE_ROWS_PER_ENTRY", 0)
    X = sp.random(5, 40, density=0.15, random_state=seed, format="csr", dtype=np.float64)
    X.data[:] = rng.integers(1, 4, size=X.nnz)
    dy = rng.normal(size=(5, 3))
    W = rng.normal(size=(40, 3))
    params = {"W": W.copy()}
    _, g, _ = layers.sparse_backward(params["W"], None, layers.SparseBatch.of(X), dy)
    return X, dy, W, params, g


@pytest.mark.parametrize("fused", [True, False])
def test_adagrad_on_a_sparse_layer_gradient(rng, monkeypatch, fused):
    """The row-scaled update of the first layer's Xᵀ dy, in one CSR pass (fused) or by its
    rows: the same numbers as the formula."""
    X, dy, W, params, g = sparse_case(rng, monkeypatch, fused, seed=3)
    opt = optim.make("adagrad", params, rows={"W"})
    opt.step(params, {"W": g}, 0.1)
    G = np.asarray(X.T @ dy)                                               # (V, H)
    s = (G ** 2).mean(axis=1)
    expected = W - 0.1 * G / (np.sqrt(s)[:, None] + 1e-8)
    assert np.allclose(params["W"], expected, rtol=0, atol=1e-12)
    untouched = np.setdiff1d(np.arange(40), X.indices)
    assert np.array_equal(params["W"][untouched], W[untouched])


def test_adagrad_state_round_trips(rng):
    params, g1 = setup(rng)
    opt = optim.Adagrad(params, rows={"W"})
    opt.step(params, g1, 0.1)
    arrays = {k: v.copy() for k, v in opt.state_arrays().items()}
    other = optim.Adagrad({k: v.copy() for k, v in params.items()}, rows={"W"})
    other.load_state_arrays(arrays, opt.t)
    assert other.t == 1 and all(np.array_equal(other.s[k], opt.s[k]) for k in opt.s)


def test_float32_stays_float32(rng):
    params = {"W": rng.normal(size=(4, 2)).astype(np.float32)}
    grads = {"W": Rows(np.array([2]), np.ones((1, 2), np.float32))}
    for opt in (optim.SGD(params), optim.SGD(params, 0.9), optim.Adam(params), optim.Adagrad(params),
                optim.Adagrad(params, rows={"W"})):
        opt.step(params, grads, 0.1)
        assert params["W"].dtype == np.float32


@pytest.mark.parametrize("schedule,step,expected", [
    ("constant", 7, 0.5), ("linear", 0, 0.5), ("linear", 5, 0.25), ("linear", 10, 0.0),
    ("cosine", 0, 0.5), ("cosine", 5, 0.25), ("cosine", 10, 0.0)])
def test_schedules(schedule, step, expected):
    assert optim.lr_at(step, 10, 0.5, schedule) == pytest.approx(expected, abs=1e-12)


def test_warmup_then_schedule():
    assert optim.lr_at(0, 20, 1.0, "linear", warmup=4) == pytest.approx(0.25)
    assert optim.lr_at(3, 20, 1.0, "linear", warmup=4) == pytest.approx(1.0)
    assert optim.lr_at(12, 20, 1.0, "linear", warmup=4) == pytest.approx(0.5)


def test_clip_by_global_norm(rng):
    grads = {"a": np.array([3.0, 0.0]), "b": Rows(np.array([0]), np.array([[0.0, 4.0]]))}
    norm = optim.clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert np.allclose(grads["a"], [0.6, 0.0]) and np.allclose(grads["b"].value, [[0.0, 0.8]])
    assert optim.clip_by_global_norm(grads, 10.0) == pytest.approx(1.0)      # below the limit: unchanged
    assert math.isclose(float(np.linalg.norm(grads["a"])), 0.6)


@pytest.mark.parametrize("fused", [True, False])
def test_sgd_on_a_sparse_layer_gradient_adds_x_transpose_dy_into_the_rows(rng, monkeypatch, fused):
    """Plain SGD applies the first layer's gradient Xᵀ dy straight into W (no (U, H) block) when
    V is small next to the batch; otherwise it forms the rows. Same numbers either way."""
    X, dy, W, params, g = sparse_case(rng, monkeypatch, fused, seed=1)
    optim.SGD(params).step(params, {"W": g}, 0.1)
    assert (g._value is None) == fused                      # the (U, H) block was never formed
    expected = W - 0.1 * (X.T @ dy)
    assert np.allclose(params["W"], expected, rtol=0, atol=1e-13)
    untouched = np.setdiff1d(np.arange(40), X.indices)
    assert np.array_equal(params["W"][untouched], W[untouched])
    assert np.allclose(g.dense(W.shape), X.T @ dy, rtol=0, atol=1e-13)


def test_sgd_on_a_non_contiguous_parameter_takes_the_row_path(rng):
    import scipy.sparse as sp
    from nlclf.nn import layers
    X = sp.random(4, 10, density=0.3, random_state=2, format="csr", dtype=np.float64)
    dy = rng.normal(size=(4, 3))
    W = np.asfortranarray(rng.normal(size=(10, 3)))
    expected = W - 0.5 * (X.T @ dy)
    _, g, _ = layers.sparse_backward(W, None, layers.SparseBatch.of(X), dy)
    g.add_scaled_to(W, -0.5)
    assert np.allclose(W, expected, rtol=0, atol=1e-13)

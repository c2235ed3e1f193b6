"""Central-difference gradient checks in float64 for every parameter of the network."""

import itertools

import numpy as np
import pytest

from nlclf.nn import mlp
from nlclf.nn.activations import ACTIVATIONS
from nlclf.nn.layers import Rows, dropout_mask
from nlclf.nn.losses import binary_cross_entropy, cross_entropy, sigmoid

from conftest import random_csr

N, V, C, E, T = 6, 9, 3, 4, 5
EPS = 1e-6
TOL = 1e-6


def loss_and_grads(params, spec, X, y, smoothing, masks=None, decay=None):
    z, caches = mlp.forward(params, spec, X, train=masks is not None, masks=masks)
    loss, dz = cross_entropy(z, y, smoothing)
    grads = mlp.backward(params, spec, caches, dz)
    loss += mlp.add_l2(params, grads, decay or {})
    return loss, grads


def dense(g, shape):
    return g.dense(shape) if isinstance(g, Rows) else g


def check(params, spec, X, y, smoothing=0.0, masks=None, decay=None):
    _, grads = loss_and_grads(params, spec, X, y, smoothing, masks, decay)
    expected = set(params) - ({"E"} if spec.freeze_embeddings else set())
    assert set(grads) == expected
    for name, g in grads.items():
        ana = dense(g, params[name].shape)
        assert ana.shape == params[name].shape
        num = np.zeros_like(ana)
        p = params[name]
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + EPS
            lp, _ = loss_and_grads(params, spec, X, y, smoothing, masks, decay)
            p[i] = old - EPS
            lm, _ = loss_and_grads(params, spec, X, y, smoothing, masks, decay)
            p[i] = old
            num[i] = (lp - lm) / (2 * EPS)
        if name == "E" and spec.input_kind == "embed_concat":
            num[spec.pad_id] = 0.0          # padding is not learned: its row is left out by design
        err = np.linalg.norm(ana - num) / max(np.linalg.norm(ana) + np.linalg.norm(num), 1e-12)
        assert err <= TOL, f"{name}: relative error {err:.2e}"


def make(spec, rng):
    params = mlp.init_params(spec, rng, np.float64)
    for k in params:                       # non-zero biases, so that they matter
        if k.startswith("b"):
            params[k] += rng.normal(0, 0.1, size=params[k].shape)
    return params


@pytest.mark.parametrize("activation,bias,smoothing,depth",
                         list(itertools.product(sorted(ACTIVATIONS), [True, False], [0.0, 0.1], [0, 1, 2])))
def test_bow_network(activation, bias, smoothing, depth, rng):
    spec = mlp.NetSpec("bow", V, C, hidden=(7, 5)[:depth], activation=activation, leaky_slope=0.1,
                       hidden_bias=bias, output_bias=bias)
    params = make(spec, rng)
    X = random_csr(rng, N, V)
    y = rng.integers(0, C, size=N)
    check(params, spec, X, y, smoothing)


def test_first_layer_gradient_is_row_sparse(rng):
    spec = mlp.NetSpec("bow", 50, C, hidden=(4,))
    params = make(spec, rng)
    X = random_csr(rng, N, 50, density=0.05)
    _, grads = loss_and_grads(params, spec, X, rng.integers(0, C, size=N), 0.0)
    g = grads["H1"]
    assert isinstance(g, Rows)
    assert np.array_equal(g.index, np.unique(X.indices))
    assert g.value.shape == (len(np.unique(X.indices)), 4)


@pytest.mark.parametrize("depth", [1, 2])
def test_dropout_with_fixed_mask(depth, rng):
    spec = mlp.NetSpec("bow", V, C, hidden=(6, 5)[:depth], activation="tanh", dropout=0.5)
    params = make(spec, rng)
    X = random_csr(rng, N, V)
    y = rng.integers(0, C, size=N)
    widths = spec.hidden
    masks = {i: dropout_mask((N, w), 0.5, rng, np.dtype(np.float64)) for i, w in enumerate(widths)}
    assert any((m == 0).any() for m in masks.values())
    check(params, spec, X, y, 0.0, masks)


def test_l2_weight_decay_not_on_biases(rng):
    spec = mlp.NetSpec("bow", V, C, hidden=(5,), activation="sigmoid")
    params = make(spec, rng)
    X = random_csr(rng, N, V)
    y = rng.integers(0, C, size=N)
    check(params, spec, X, y, 0.0, decay={"H1": 0.3, "U": 0.2})
    _, g0 = loss_and_grads(params, spec, X, y, 0.0)
    _, g1 = loss_and_grads(params, spec, X, y, 0.0, decay={"H1": 0.3, "U": 0.2})
    assert np.array_equal(g0["bH1"], g1["bH1"]) and np.array_equal(g0["bU"], g1["bU"])
    assert not np.allclose(g0["U"], g1["U"])


def _ids_with_padding_and_repeats(rng):
    J = rng.integers(2, V, size=(N, T)).astype(np.int32)
    J[0, :] = 3                             # one token repeated through a whole row
    J[1, 2:] = 0                            # padding at the end
    J[2, :] = 0                             # an empty text
    return J


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_embed_concat(depth, rng):
    spec = mlp.NetSpec("embed_concat", V, C, hidden=(6, 4)[:depth], activation="gelu",
                       embed_dim=E, max_tokens=T)
    params = make(spec, rng)
    J = _ids_with_padding_and_repeats(rng)
    y = rng.integers(0, C, size=N)
    check(params, spec, J, y, 0.1, decay={"E": 0.05})
    _, grads = loss_and_grads(params, spec, J, y, 0.0)
    assert 0 not in grads["E"].index        # the padding row gets no gradient


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_embed_mean(depth, rng):
    spec = mlp.NetSpec("embed_mean", V, C, hidden=(6, 4)[:depth], activation="leaky_relu",
                       embed_dim=E)
    params = make(spec, rng)
    X = random_csr(rng, N, V).tolil()       # counts > 1: repeated tokens
    X[3] = 0                                # an empty text
    X = X.tocsr()
    X.eliminate_zeros()
    check(params, spec, X, rng.integers(0, C, size=N), 0.0, decay={"E": 0.05, "U": 0.01})


def test_frozen_embeddings_get_no_gradient(rng):
    spec = mlp.NetSpec("embed_mean", V, C, hidden=(4,), embed_dim=E, freeze_embeddings=True)
    params = make(spec, rng)
    check(params, spec, random_csr(rng, N, V), rng.integers(0, C, size=N))


def test_softmax_cross_entropy_is_stable():
    z = np.array([[1000.0, 0.0, -1000.0]])
    loss, dz = cross_entropy(z, np.array([0]))
    assert np.isfinite(loss) and loss == pytest.approx(0.0)
    assert np.allclose(dz, 0.0)


# --- several labels a text: sigmoid outputs and binary cross-entropy ---------------------------

def bce_loss(params, spec, X, Y, smoothing, w):
    z, caches = mlp.forward(params, spec, X)
    loss, dz = binary_cross_entropy(z, Y, smoothing, w)
    return loss, mlp.backward(params, spec, caches, dz), dz, z


@pytest.mark.parametrize("kind,smoothing,weighted", list(itertools.product(["bow", "embed_mean"], [0.0, 0.2], [False, True])))
def test_binary_cross_entropy_gradients_through_the_network(kind, smoothing, weighted, rng):
    spec = mlp.NetSpec(kind, V, C, hidden=(5,), activation="tanh", embed_dim=E)
    params = make(spec, rng)
    X = random_csr(rng, N, V)
    Y = (rng.random((N, C)) < 0.4).astype(np.float64)
    w = rng.uniform(0.5, 3.0, size=C) if weighted else None
    _, grads, dz, z = bce_loss(params, spec, X, Y, smoothing, w)
    num_dz = np.zeros_like(z)                                  # dℓ/dz against the loss itself
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += EPS
        zm[i] -= EPS
        num_dz[i] = (binary_cross_entropy(zp, Y, smoothing, w)[0] - binary_cross_entropy(zm, Y, smoothing, w)[0]) / (2 * EPS)
    assert np.allclose(dz, num_dz, rtol=1e-6, atol=1e-9)
    for name, g in grads.items():
        ana, p, num = dense(g, params[name].shape), params[name], np.zeros(params[name].shape)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + EPS
            lp = bce_loss(params, spec, X, Y, smoothing, w)[0]
            p[i] = old - EPS
            lm = bce_loss(params, spec, X, Y, smoothing, w)[0]
            p[i] = old
            num[i] = (lp - lm) / (2 * EPS)
        err = np.linalg.norm(ana - num) / max(np.linalg.norm(ana) + np.linalg.norm(num), 1e-12)
        assert err <= TOL, f"{name}: relative error {err:.2e}"


def test_binary_cross_entropy_is_o_minus_y_and_its_exact_value():
    z = np.array([[2.0, -1.0, 0.0], [0.5, 3.0, -2.0]])
    Y = np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float64)
    loss, dz = binary_cross_entropy(z, Y)
    o = 1 / (1 + np.exp(-z))
    assert np.allclose(dz, (o - Y) / 2, rtol=1e-12)
    assert loss == pytest.approx(-(Y * np.log(o) + (1 - Y) * np.log(1 - o)).sum() / 2, rel=1e-12)
    loss_w, dz_w = binary_cross_entropy(z, Y, pos_weight=np.array([2.0, 1.0, 3.0]))
    w = np.array([2.0, 1.0, 3.0])
    assert loss_w == pytest.approx(-(w * Y * np.log(o) + (1 - Y) * np.log(1 - o)).sum() / 2, rel=1e-12)
    assert np.allclose(dz_w, (-w * Y * (1 - o) + (1 - Y) * o) / 2, rtol=1e-12)


def test_binary_cross_entropy_is_stable_where_a_rounded_probability_is_0_or_1():
    z = np.array([[1000.0, -1000.0, 40.0, -40.0]])
    loss, dz = binary_cross_entropy(z, np.array([[1.0, 0.0, 0.0, 1.0]]))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    assert loss == pytest.approx(80.0, rel=1e-12)                       # softplus(40) + softplus(40)
    assert np.allclose(dz, [[0.0, 0.0, 1.0, -1.0]])
    assert np.array_equal(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])
    z32 = np.array([[30.0, -30.0]], dtype=np.float32)
    loss32, dz32 = binary_cross_entropy(z32, np.array([[0, 1]]))
    assert dz32.dtype == np.float32 and loss32 == pytest.approx(60.0, rel=1e-6)

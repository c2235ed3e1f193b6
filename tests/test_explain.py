"""Gradient × input attributions: a hand-set model, names of n-grams and buckets, and
central differences of the logit w.r.t. the input in float64 for every input kind."""

import numpy as np
import pytest
import scipy.sparse as sp

from nlclf.explain import attribute, explain, feature_name
from nlclf.config import FeatureSpec
from nlclf.features import make as Featurizer

from nlclf.model import Classifier
from nlclf.nn import mlp

TRAIN = ["great movie", "awful movie", "great fun", "awful plot", "a great plot", "fun movie"]
LABELS = ["neg", "pos"]
EPS = 1e-6


def make(kind, hidden=(), activation="tanh", seed=0, **features):
    features = {"ngrams": 1, "weighting": "count", "min_count": 1, "char_ngrams": (), "normalize": False,
                **features}                          # hand-set models: plain counts of every word
    spec_f = FeatureSpec(kind=kind, tokenizer="whitespace", embed_dim=3, max_tokens=5, **features)
    f = Featurizer(spec_f).fit(TRAIN)
    spec = mlp.NetSpec(input_kind=kind, n_inputs=f.n_features, n_classes=len(LABELS), hidden=tuple(hidden),
                       activation=activation, embed_dim=spec_f.embed_dim, max_tokens=spec_f.max_tokens)
    params = mlp.init_params(spec, np.random.default_rng(seed), np.float64)
    for name in params:
        if name.startswith("b"):            # non-zero biases, so the checks see them
            params[name] = np.random.default_rng(seed + 1).normal(0, 0.3, params[name].shape)
    return Classifier(f, spec, params, LABELS)


def test_hand_set_bow_names_the_pushing_words():
    m = make("bow")
    ix = m.featurizer.vocab.index
    U = np.zeros_like(m.params["U"])                        # (V, C): z_neg, z_pos
    U[ix["great"]] = [-1.0, 3.0]
    U[ix["awful"]] = [2.0, -1.0]
    U[ix["movie"]] = [0.0, 0.2]
    m.params["U"], m.params["bU"] = U, np.zeros(2)
    r = explain(m, ["great awful movie", "awful movie", ""], k=5)
    assert r[0]["label"] == "pos" and r[0]["proba"] == pytest.approx(1 / (1 + np.exp(-1.2)))
    assert r[0]["toward"] == [("great", pytest.approx(3.0)), ("movie", pytest.approx(0.2))]
    assert r[0]["against"] == [("awful", pytest.approx(-1.0))]
    assert r[1]["label"] == "neg" and r[1]["toward"] == [("awful", pytest.approx(2.0))]
    assert r[1]["against"] == [] and r[1]["text"] == "awful movie"
    assert r[2]["toward"] == [] and r[2]["against"] == []
    assert explain(m, ["great awful movie"], k=1)[0]["toward"] == [("great", pytest.approx(3.0))]


def test_hand_set_hidden_layer_and_temperature():
    m = make("bow", hidden=[2], activation="relu")
    ix = m.featurizer.vocab.index
    H1 = np.zeros_like(m.params["H1"])                      # unit 0 fires for great, unit 1 for awful
    H1[ix["great"], 0], H1[ix["awful"], 1] = 2.0, 1.0
    m.params.update(H1=H1, bH1=np.zeros(2), U=np.array([[0.0, 1.5], [1.0, -0.5]]), bU=np.zeros(2))
    m.temperature = 2.0
    r = explain(m, ["great awful fun"])[0]                  # h = (2, 1): z = (1, 2.5)
    assert r["label"] == "pos" and r["proba"] == pytest.approx(1 / (1 + np.exp(-0.75)))
    assert r["toward"] == [("great", pytest.approx(3.0))] and r["against"] == [("awful", pytest.approx(-0.5))]


def test_ngram_bucket_and_unknown_names():
    m = make("bow", ngrams=2, hash_buckets=7)
    r = explain(m, ["great movie zebra", "movie great"], k=10)
    names = [{f for f, _ in x["toward"] + x["against"]} for x in r]
    bag = m.featurizer                                      # n-grams hash their words' ids; an unknown word is <unk>
    assert names[0] == {"great", "movie", "<unk>", "great movie", f"#bucket{bag.ngram_bucket(['movie', 'zebra'])}"}
    assert names[1] == {"great", "movie", f"#bucket{bag.ngram_bucket(['movie', 'great'])}"}
    assert all(len(x["toward"]) + len(x["against"]) == len(n) for x, n in zip(r, names))


def test_batches_give_the_same_answer():
    m = make("embed_mean", hidden=[4])
    texts = ["great movie", "awful plot", "a fun movie", "fun", "plot twist great", ""]
    assert explain(m, texts, k=3, batch=2) == explain(m, texts, k=3)


def z_at(params, spec, X, c):
    X = sp.csr_matrix(X) if isinstance(X, np.ndarray) and X.dtype.kind == "f" else X
    z, _ = mlp.forward(params, spec, X)
    return z[np.arange(len(c)), c]


def after_embedding(m, width):
    """The network above E as a bow network reading f (N, width) (as CSR) directly."""
    s = m.spec
    spec = mlp.NetSpec(input_kind="bow", n_inputs=width, n_classes=s.n_classes, hidden=s.hidden,
                       activation=s.activation)
    return spec, {k: v for k, v in m.params.items() if k != "E"}


TEXTS = ["great movie great", "awful plot", "a great fun movie zebra", "plot"]
HIDDEN = [(), (4,), (4, 3)]


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_bow_matches_central_differences(hidden, activation):
    m = make("bow", hidden, activation, ngrams=2, hash_buckets=5, weighting="log")
    X = m.featurizer.transform(TEXTS).astype(np.float64)
    z, c, A = attribute(m.params, m.spec, X)
    assert (A.indices == X.indices).all() and (A.indptr == X.indptr).all()
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    for i in range(X.nnz):
        old = X.data[i]
        X.data[i] = old + EPS
        zp = z_at(m.params, m.spec, X, c)[rows[i]]
        X.data[i] = old - EPS
        zm = z_at(m.params, m.spec, X, c)[rows[i]]
        X.data[i] = old
        assert A.data[i] == pytest.approx(old * (zp - zm) / (2 * EPS), abs=1e-7)
    if not hidden:                                          # linear: the shares add up to z_c - b_c
        assert A.sum(axis=1).A1 == pytest.approx(z[np.arange(len(c)), c] - m.params["bU"][c])


@pytest.mark.parametrize("hidden", HIDDEN)
def test_embed_mean_matches_central_differences(hidden):
    m = make("embed_mean", hidden, "tanh")
    X = m.featurizer.transform(TEXTS).astype(np.float64)
    z, c, A = attribute(m.params, m.spec, X)
    E = m.params["E"]
    spec, rest = after_embedding(m, E.shape[1])
    sums = np.repeat(X.sum(axis=1).A1, np.diff(X.indptr))
    w = sp.csr_matrix((X.data / sums, X.indices, X.indptr), shape=X.shape)    # the weights on E's rows
    assert z_at(rest, spec, w @ E, c) == pytest.approx(z[np.arange(len(c)), c])
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    raw = np.zeros(X.nnz)                                   # X_j dz/dX_j through the normalisation
    for i in range(X.nnz):
        fd = []
        for M in (w, X):
            old = M.data[i]
            M.data[i] = old + EPS
            zp = z_at(rest, spec, M @ E, c) if M is w else z_at(m.params, m.spec, M, c)
            M.data[i] = old - EPS
            zm = z_at(rest, spec, M @ E, c) if M is w else z_at(m.params, m.spec, M, c)
            M.data[i] = old
            fd.append(old * (zp[rows[i]] - zm[rows[i]]) / (2 * EPS))
        assert A.data[i] == pytest.approx(fd[0], abs=1e-7)
        raw[i] = fd[1]
    # the docstring's relation: X_j dz/dX_j = a_j - w_j (f·g) = a_j - w_j Σ_i a_i, summing to 0 per text
    total = np.repeat(A.sum(axis=1).A1, np.diff(X.indptr))
    assert raw == pytest.approx(A.data - w.data * total, abs=1e-7)
    assert np.add.reduceat(raw, X.indptr[:-1]) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_embed_concat_matches_central_differences(hidden):
    m = make("embed_concat", hidden, "tanh")
    J = m.featurizer.transform(TEXTS)                       # (N, T)
    z, c, A = attribute(m.params, m.spec, J)
    assert A.shape == J.shape
    E, (n, T), e = m.params["E"], J.shape, m.params["E"].shape[1]
    spec, rest = after_embedding(m, T * e)
    f = E[J].reshape(n, T * e)
    for t in range(T):                                      # scale slice t by 1 ± eps: d/deps = E[j_t] · g_t
        fp, fm = f.copy(), f.copy()
        fp[:, t * e:(t + 1) * e] *= 1 + EPS
        fm[:, t * e:(t + 1) * e] *= 1 - EPS
        fd = (z_at(rest, spec, fp, c) - z_at(rest, spec, fm, c)) / (2 * EPS)
        assert A[:, t] == pytest.approx(fd, abs=1e-7)


def test_embed_concat_names_positions_and_skips_padding():
    m = make("embed_concat", (3,), "tanh")
    r = explain(m, ["great movie great zebra", "fun"], k=10)
    assert sorted(f for f, _ in r[0]["toward"] + r[0]["against"]) == ["<unk>", "great", "great", "movie"]
    assert [f for f, _ in r[1]["toward"] + r[1]["against"]] == ["fun"]
    scores = [abs(s) for _, s in r[0]["toward"]]
    assert scores == sorted(scores, reverse=True)
    assert r[0]["label"] in LABELS and 0.5 <= r[0]["proba"] <= 1


def test_float32_model_runs():
    m = make("bow", (4,), "tanh")
    m.params = {k: v.astype(np.float32) for k, v in m.params.items()}
    r = explain(m, ["great movie"], k=2)[0]
    assert len(r["toward"]) + len(r["against"]) >= 1 and isinstance(r["proba"], float)
    assert sp.issparse(attribute(m.params, m.spec, m.featurizer.transform(["great"]))[2])


def test_feature_names_of_words_ngrams_character_ngrams_and_buckets():
    tokens = ["<pad>", "<unk>", "great", "not great", "\t<gre", "\ting>"]
    assert [feature_name(j, tokens) for j in range(2, 7)] == ["great", "not great", "~<gre", "~ing>", "#bucket0"]

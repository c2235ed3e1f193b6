"""What keeps large inputs fast and lean: character n-grams for rare words only, epochs cut
from a pass, training states that store a copy once."""

import dataclasses
import math

import numpy as np
import pytest

from nlclf import checkpoint, training
from nlclf.config import FeatureSpec, TrainConfig
from nlclf.features import make as Featurizer
from nlclf.nn import mlp
from nlclf.text import CHAR_MARK
from nlclf.vocab import Vocabulary

from conftest import random_csr

TEXTS = ["the cat sat", "the dog sat", "the cat ran", "the emu"]


def char_columns(f, X, row):
    """The character n-gram features of a row of counts X."""
    cols = X[row].indices
    return [f.vocab.tokens[c] for c in cols if f.vocab.tokens[c].startswith(CHAR_MARK)]


def test_char_below_gives_character_ngrams_to_rare_and_unknown_words_only():
    f = Featurizer(FeatureSpec(ngrams=1, char_ngrams=(3, 3), char_below=3, weighting="count", normalize=False))
    X = f.fit_counts(lambda: iter(TEXTS))
    assert f.vocab.counts[f.vocab.index["the"]] == 4 and f.vocab.counts[f.vocab.index["emu"]] == 1
    assert not any(CHAR_MARK + g in f.vocab.index for g in ("<th", "the", "he>"))   # "the": 4 times, "sat": 2
    assert char_columns(f, X, 3) == sorted([CHAR_MARK + "<em", CHAR_MARK + "emu", CHAR_MARK + "mu>"],
                                           key=f.vocab.index.get)
    Y = f.counts(["the gnu", "the emus"])
    assert char_columns(f, Y, 0) == []                                        # no grams of "gnu" were seen
    assert char_columns(f, Y, 1) == [CHAR_MARK + g for g in ("<em", "emu")]  # unknown word: its known grams
    every = Featurizer(FeatureSpec(ngrams=1, char_ngrams=(3, 3), weighting="count", normalize=False))
    every.fit_counts(lambda: iter(TEXTS))
    assert CHAR_MARK + "the" in every.vocab.index


def test_a_vocabulary_without_counts_gives_character_ngrams_of_every_word():
    """Models saved before counts were kept were trained with the n-grams of every word."""
    spec = FeatureSpec(ngrams=1, char_ngrams=(3, 3), char_below=3, weighting="count", normalize=False)
    f = Featurizer(spec)
    f.fit_counts(lambda: iter(TEXTS))
    old = Featurizer(spec, Vocabulary(f.vocab.tokens))
    assert old.vocab.counts is None
    assert char_columns(old, old.counts(["emu"]), 0) == char_columns(f, f.counts(["emu"]), 0)
    tokens = [t for t in f.vocab.tokens if t.startswith(CHAR_MARK)]
    assert len(char_columns(old, old.counts(["cat"]), 0)) == sum(g in tokens for g in
                                                                 (CHAR_MARK + "<ca", CHAR_MARK + "cat", CHAR_MARK + "at>"))


@pytest.mark.parametrize("n, size, expected", [(10, 0, (1, 10)), (10, 10, (1, 10)), (10, 4, (3, 4)),
                                               (10, 5, (2, 5)), (1_000_000, 0, (5, 200_000)), (0, 0, (1, 0))])
def test_epoch_parts(n, size, expected):
    assert training.epoch_parts(n, size) == expected


def _fit(X, y, epochs, epoch_size, rng_seed=0):
    spec = mlp.NetSpec(input_kind="bow", n_inputs=X.shape[1], n_classes=2, hidden=(8,), dropout=0.2)
    params = mlp.init_params(spec, np.random.default_rng(1), np.float64)
    cfg = TrainConfig(optimizer="adam", lr=0.01, batch_size=4, epochs=epochs, epoch_size=epoch_size,
                      patience=0, label_smoothing=0.0, dtype="float64")
    last = {}
    hooks = training.Hooks(checkpoint=lambda st, why: last.update(params={k: v.copy() for k, v in st.params.items()}))
    result = training.fit(spec, params, training.Data(X, y, X[:8], y[:8]), cfg, np.random.default_rng(rng_seed), hooks)
    return result, last["params"]


def test_epochs_cut_from_a_pass_train_on_each_row_once_a_pass(rng):
    """Three epochs of a third of the rows are one pass: the same batches, the same weights."""
    X = random_csr(rng, 48, 30)
    y = rng.integers(0, 2, 48)
    whole, w1 = _fit(X, y, epochs=1, epoch_size=0)
    thirds, w3 = _fit(X, y, epochs=3, epoch_size=16)
    assert len(whole.history) == 1 and len(thirds.history) == 3
    assert [h["passes"] for h in thirds.history] == [pytest.approx(1 / 3, abs=1e-4), pytest.approx(2 / 3, abs=1e-4), 1.0]
    for k in w1:
        np.testing.assert_array_equal(w1[k], w3[k])
    _, w6 = _fit(X, y, epochs=6, epoch_size=16)                       # the second pass is shuffled anew
    assert not all(np.array_equal(w6[k], w3[k]) for k in w3)


def test_a_state_whose_best_is_current_stores_the_weights_once(tmp_path, rng):
    params = {"H0": rng.standard_normal((30, 8)).astype(np.float32), "b": np.zeros(8, np.float32)}
    state = training.State(params=params, opt_arrays={"m.H0": np.ones((30, 8), np.float32)}, opt_t=3,
                        rng_state=np.random.default_rng(0).bit_generator.state, epoch=2,
                        best_params={k: v.copy() for k, v in params.items()}, best_epoch=1, best_score=0.5)
    from nlclf.config import Config
    checkpoint.save_state(tmp_path, state, Config(), best_is_current=True)
    loaded, meta = checkpoint.load_state(tmp_path)
    assert meta["best_is_current"] and not any(k.startswith("best.") for k in meta["arrays"])
    for k in params:
        np.testing.assert_array_equal(loaded.best_params[k], params[k])
        assert loaded.best_params[k] is not loaded.params[k]
    checkpoint.save_state(tmp_path, state, Config())
    _, meta = checkpoint.load_state(tmp_path)
    assert sorted(k for k in meta["arrays"] if k.startswith("best.")) == ["best.H0", "best.b"]


def test_patience_waits_for_improvements_larger_than_min_delta(rng):
    """With min_delta 1 no later epoch counts as better: patience 2 stops after epoch 3,
    whatever the scores; the best epoch is still the best score's."""
    X = random_csr(rng, 40, 20)
    y = (X[:, 0].toarray().ravel() > 0).astype(np.int64)
    spec = mlp.NetSpec(input_kind="bow", n_inputs=20, n_classes=2, hidden=(8,))
    params = mlp.init_params(spec, np.random.default_rng(1), np.float64)
    cfg = TrainConfig(lr=0.01, batch_size=8, epochs=10, patience=2, min_delta=1.0, dtype="float64")
    result = training.fit(spec, params, training.Data(X, y, X, y), cfg, np.random.default_rng(0))
    assert len(result.history) == 3
    scores = [h["dev_accuracy"] for h in result.history]
    assert result.best_score == max(scores) and result.best_epoch == 1 + scores.index(max(scores))


@pytest.mark.parametrize("kind", ["bow", "embed_mean", "embed_concat"])
def test_auto_features_follow_the_number_of_training_tokens(monkeypatch, kind):
    from nlclf.features import base
    chars = (3, 3) if kind != "embed_concat" else ()
    small = Featurizer(FeatureSpec(kind=kind, ngrams=1, char_ngrams=chars))
    small.fit_counts(lambda: iter(TEXTS))
    assert (small.spec.max_size, small.spec.char_below) == (0, 0)                     # 11 tokens: small
    assert kind == "embed_concat" or CHAR_MARK + "the" in small.vocab.index
    monkeypatch.setattr(base, "AUTO_TOKENS", 11)
    monkeypatch.setattr(base, "AUTO_CHAR_BELOW", 3)
    monkeypatch.setattr(base, "AUTO_MAX_SIZE", 4)
    large = Featurizer(FeatureSpec(kind=kind, ngrams=1, char_ngrams=chars))
    large.fit_counts(lambda: iter(TEXTS))
    assert (large.spec.max_size, large.spec.char_below) == (4, 3)
    assert len(large.vocab) == 2 + 4 and CHAR_MARK + "the" not in large.vocab.index
    fixed = Featurizer(FeatureSpec(kind=kind, ngrams=1, char_ngrams=chars, max_size=0, char_below=0))
    fixed.fit_counts(lambda: iter(TEXTS))
    assert (fixed.spec.max_size, fixed.spec.char_below) == (0, 0)                     # set values stay


def test_a_model_keeps_its_auto_values_as_chosen(tmp_path):
    from nlclf import pipeline
    from nlclf.config import Config
    cfg = Config()
    model, _ = pipeline.fit_lists(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1)),
                                  (["a", "b"] * 4, ["good film", "bad film"] * 4), (["a", "b"], ["good", "bad"]))
    checkpoint.save(tmp_path, model, cfg)
    loaded, config, meta = checkpoint.load(tmp_path)
    assert meta["config"]["features"]["max_size"] == 0 and meta["config"]["features"]["char_below"] == 0
    assert loaded.featurizer.spec.max_size == 0


def test_auto_is_a_value_only_where_documented(tmp_path):
    from nlclf import config
    from nlclf.errors import ConfigError
    assert config.load_text("data: {train: t.tsv}\nfeatures: {char_below: auto}\n", "c.yaml").features.char_below == "auto"
    assert config.load_text("data: {train: t.tsv}\nfeatures: {char_below: 7}\n", "c.yaml").features.char_below == 7
    with pytest.raises(ConfigError, match=r"c.yaml:2: features.char_below: must be an integer or auto; got sometimes"):
        config.load_text("data: {train: t.tsv}\nfeatures: {char_below: sometimes}\n", "c.yaml")
    with pytest.raises(ConfigError, match="features.min_count: must be an integer"):
        config.load_text("data: {train: t.tsv}\nfeatures: {min_count: auto}\n", "c.yaml")


@pytest.mark.parametrize("weighting_name", ["count", "binary", "log", "tfidf", "nb"])
def test_weights_and_weighing_are_the_same_a_block_of_rows_at_a_time(monkeypatch, rng, weighting_name):
    from nlclf.features import weighting
    X = random_csr(rng, 300, 40, density=0.2, dtype=np.float32)
    y = rng.integers(0, 5, 300)
    whole = weighting.nb_spread(X, y, 1.0), weighting.weigh(X.copy(), weighting_name, weighting.idf(X, 40), True)
    monkeypatch.setattr(weighting, "BLOCK_VALUES", 7)
    assert len(list(weighting.row_blocks(X))) > 100
    blocks = weighting.nb_spread(X, y, 1.0), weighting.weigh(X.copy(), weighting_name, weighting.idf(X, 40), True)
    np.testing.assert_array_equal(whole[0], blocks[0])
    np.testing.assert_array_equal(whole[1].data, blocks[1].data)


def test_train_says_what_auto_chose(tmp_path):
    from nlclf import config, pipeline
    (tmp_path / "t.tsv").write_text("a\tgood film\nb\tbad film\n" * 4)
    (tmp_path / "d.tsv").write_text("a\tgood\nb\tbad\n")
    cfg = config.load_text("data: {train: t.tsv, dev: d.tsv}\n", "c.yaml")
    said = []
    feats = pipeline.featurize(cfg, {"train": tmp_path / "t.tsv", "dev": tmp_path / "d.tsv"}, lambda e, i: None,
                               said.append)
    assert "features: char_below 0, max_size 0 (auto: chosen by the training set's size, under 1,000,000 tokens)" in said
    assert feats.featurizer.spec.max_size == 0


@pytest.mark.parametrize("n, bow, tokens, set_, expected", [
    (999_999, True, None, {}, ("adam", 0.0003, "constant")),
    (999_999, True, 999_999, {}, ("adam", 0.0003, "constant")),
    (20_000, True, 1_000_000, {}, ("adagrad", 0.1, "constant")),            # a large bag under a million examples
    (1_000_000, True, 54_000_000, {}, ("sgd", 2.0, "linear")),
    (1_000_000, False, 54_000_000, {}, ("adam", 0.0003, "constant")),       # the embedding kinds keep adam
    (50_000, False, 3_000_000, {}, ("adam", 0.0003, "constant")),
    (10, True, None, {"optimizer": "sgd"}, ("sgd", 2.0, "linear")),         # the optimizer's lr and schedule
    (10, True, None, {"optimizer": "momentum"}, ("momentum", 0.2, "linear")),
    (10, True, None, {"optimizer": "adagrad"}, ("adagrad", 0.1, "constant")),
    (1_000_000, True, None, {"lr": 0.5, "schedule": "cosine"}, ("sgd", 0.5, "cosine")),   # set values stay
    (1_000_000, True, None, {"optimizer": "adam"}, ("adam", 0.0003, "constant"))])
def test_auto_optimizer_follows_the_size_of_the_training_set(n, bow, tokens, set_, expected):
    r = training.resolve_auto(TrainConfig(**set_), n, bow, tokens)
    assert (r.optimizer, r.lr, r.schedule) == expected


def test_training_uses_the_optimizer_auto_chose(monkeypatch, rng):
    from nlclf.nn import optim
    made = []
    make = optim.make
    monkeypatch.setattr(optim, "make", lambda name, *a, **k: made.append(name) or make(name, *a, **k))
    X = random_csr(rng, 40, 20)
    y = (X[:, 0].toarray().ravel() > 0).astype(np.int64)
    spec = mlp.NetSpec(input_kind="bow", n_inputs=20, n_classes=2, hidden=(8,))
    for threshold, name in ((41, "adam"), (40, "sgd")):
        monkeypatch.setattr(training, "AUTO_SGD_EXAMPLES", threshold)
        params = mlp.init_params(spec, np.random.default_rng(1), np.float32)
        training.fit(spec, params, training.Data(X, y, X, y), TrainConfig(epochs=1), np.random.default_rng(0))
        assert made[-1] == name


def test_auto_optimizer_keys_in_the_config():
    from nlclf import config
    from nlclf.errors import ConfigError
    cfg = config.load_text("data: {train: t.tsv}\ntrain: {optimizer: auto, lr: auto, schedule: auto}\n", "c.yaml")
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.schedule) == ("auto", "auto", "auto") == \
        (config.Config().train.optimizer, config.Config().train.lr, config.Config().train.schedule)
    assert config.load_text("data: {train: t.tsv}\ntrain: {lr: 1e-3}\n", "c.yaml").train.lr == 0.001
    with pytest.raises(ConfigError, match=r"c.yaml:2: train.lr: must be a number or auto; got fast"):
        config.load_text("data: {train: t.tsv}\ntrain: {lr: fast}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"train.metric: must be one of accuracy, macro_f1, micro_f1; got auto"):
        config.load_text("data: {train: t.tsv}\ntrain: {metric: auto}\n", "c.yaml")
    assert config.load_text("data: {train: t.tsv}\ntrain: {optimizer: adagrad}\n", "c.yaml").train.optimizer == \
        "adagrad"
    with pytest.raises(ConfigError, match=r"train.optimizer: must be one of adagrad, adam, auto, momentum, sgd; got "
                                          r"adadelta"):
        config.load_text("data: {train: t.tsv}\ntrain: {optimizer: adadelta}\n", "c.yaml")


def test_train_says_what_auto_chose_for_the_optimizer(tmp_path):
    from nlclf import pipeline
    from nlclf.config import Config
    cfg = Config()
    said = []
    pipeline.fit_lists(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1)),
                       (["a", "b"] * 4, ["good film", "bad film"] * 4), (["a", "b"], ["good", "bad"]), log=said.append)
    assert "train: optimizer adam, lr 0.0003, schedule constant, patience 3 (auto: adam for a bag of under 1,000,000 " \
        "training tokens)" in said


@pytest.mark.parametrize("set_, expected", [
    ({}, 3), ({"optimizer": "sgd"}, 0), ({"schedule": "cosine"}, 0), ({"optimizer": "sgd", "schedule": "constant"}, 3),
    ({"optimizer": "sgd", "patience": 2}, 2), ({"patience": 0}, 0)])
def test_auto_patience_is_off_for_a_schedule_that_decays(set_, expected):
    assert training.resolve_auto(TrainConfig(**set_), 100, True).patience == expected
    assert TrainConfig().patience == "auto"


def test_a_decaying_schedule_runs_to_its_end_under_auto_patience(rng):
    """min_delta 1: no epoch after the first counts as better; patience auto (off for linear)
    trains all 6 epochs, a patience of 2 stops after the third."""
    X = random_csr(rng, 40, 12)
    y = (X[:, 0].toarray().ravel() > 0).astype(np.int64)
    spec = mlp.NetSpec(input_kind="bow", n_inputs=12, n_classes=2, hidden=(4,))
    for patience, epochs in (("auto", 6), (2, 3)):
        params = mlp.init_params(spec, np.random.default_rng(1), np.float32)
        cfg = TrainConfig(optimizer="sgd", epochs=6, min_delta=1.0, patience=patience)
        r = training.fit(spec, params, training.Data(X, y, X, y), cfg, np.random.default_rng(0))
        assert len(r.history) == epochs


# --- the training matrix in fewer bytes (features.store.RowStore) ----------------------------

CORPUS = [" ".join(f"w{(i * 7 + j * j) % 23}" for j in range(3 + i % 5)) + (" w0 w0" if i % 3 else "")
          for i in range(300)]


@pytest.mark.parametrize("weighting_name", ["nb", "binary", "tfidf", "count", "log"])
def test_a_row_store_reads_the_rows_of_the_weighed_csr(monkeypatch, weighting_name):
    """The same vocabulary and weights, and every cut of rows the same float32 CSR, bit for bit,
    with the counts kept only where the weighting reads them; chunks stacked (CHUNK 64)."""
    from nlclf.features import bag, base, store
    monkeypatch.setattr(base, "CHUNK", 64)
    monkeypatch.setattr(bag, "CHUNK", 64)
    y = np.arange(len(CORPUS)) % 3
    spec = FeatureSpec(char_ngrams=(2, 3), weighting=weighting_name, workers=1)
    plain, compact = Featurizer(spec), Featurizer(spec)
    A = plain.fit_counts(lambda: iter(CORPUS))
    B = compact.fit_counts(lambda: iter(CORPUS), compact=True)
    assert isinstance(B, store.RowStore) and B.shape == A.shape and B.nnz == A.nnz
    assert B.indices.dtype == np.uint16 and B.indptr.dtype == np.int64
    assert (B.counts is None) == (weighting_name in ("nb", "binary"))
    if B.counts is not None:
        assert B.counts.dtype == np.uint8 and np.array_equal(B.counts, A.data)
    plain.fit_weights(A, y)
    compact.fit_weights(B, y)
    assert plain.vocab.tokens == compact.vocab.tokens
    assert (plain.weights is None) == (compact.weights is None)
    if plain.weights is not None:
        assert np.array_equal(plain.weights, compact.weights)
    A, B = plain.weigh(A), compact.weigh(B)
    for rows in (np.array([0, 5, 6, 299]), np.arange(64, 130), np.array([7]), slice(10, 20)):
        a, b = A[rows], B[rows]
        assert b.dtype == np.float32 and b.indices.dtype == np.int32
        assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
        assert np.array_equal(a.data, b.data)
    assert (B.csr() != A).nnz == 0


@pytest.mark.parametrize("n_cols, packed", [(70_001, True), ((1 << 24) + 1, False)])
def test_a_row_store_widens_its_columns_and_counts_when_needed(n_cols, packed):
    """Past 65,536 columns the ids take 3 bytes (a uint16 and a uint8 array), past 2^24 an int32;
    counts widen as they need."""
    import scipy.sparse as sp
    from nlclf.features import weighting
    from nlclf.features.store import PackedColumns, RowStore
    cols = np.array([3, n_cols - 1, 65_536, 9, 65_535, 69_999])
    X = sp.csr_matrix((np.array([1.0, 300.0, 2.0, 1.0, 2.5, 1.0], np.float32), (np.array([0, 0, 0, 1, 1, 1]), cols)),
                      shape=(2, n_cols))
    s = RowStore.of(X, keep_counts=True)
    assert isinstance(s.indices, PackedColumns) == packed and s.indices.dtype == np.int32
    assert s.nbytes == s.indptr.nbytes + (3 if packed else 4) * X.nnz + 4 * X.nnz
    assert s.counts.dtype == np.float32                                     # a fraction: kept as float32
    assert np.array_equal(np.asarray(s.indices), X.indices) and np.array_equal(s.indices[2:5], X.indices[2:5])
    assert np.array_equal(weighting.idf(s, n_cols), weighting.idf(X, n_cols))
    assert np.array_equal(weighting.nb_spread(s, np.array([0, 1]), 1.0), weighting.nb_spread(X, np.array([0, 1]), 1.0))
    assert (s.csr() != X).nnz == 0 and (s[[1]] != X[[1]]).nnz == 0
    s = RowStore.of(X[:1], keep_counts=True)
    assert s.counts.dtype == np.uint16 and (s.csr() != X[:1]).nnz == 0
    assert RowStore.of(X, keep_counts=False).counts is None
    parts = [RowStore.of(X[:1], True), RowStore.of(X[1:], True)]
    stacked = RowStore.stack(parts, X.shape[1])
    assert parts == [] and (stacked.csr() != X).nnz == 0 and isinstance(stacked.indices, PackedColumns) == packed
    assert stacked.weighed(None).high is stacked.high


def test_training_on_a_row_store_is_training_on_its_csr(rng):
    """The network trained from the RowStore of X and from X itself: the same weights."""
    from nlclf.features.store import RowStore
    X = random_csr(rng, 200, 30)
    X.data[:] = 1.0
    y = (X[:, 0].toarray().ravel() + X[:, 1].toarray().ravel() > 0).astype(np.int64)
    store = RowStore.of(X, keep_counts=False)
    spec = mlp.NetSpec(input_kind="bow", n_inputs=30, n_classes=2, hidden=(8,))
    out = []
    for data in (X, store):
        params = mlp.init_params(spec, np.random.default_rng(1), np.float32)
        training.fit(spec, params, training.Data(data, y, X, y), TrainConfig(epochs=3, batch_size=16),
                     np.random.default_rng(0))
        out.append(params)
    assert all(np.array_equal(out[0][k], out[1][k]) for k in out[0])


def test_the_pipeline_keeps_a_bag_training_matrix_compact(tmp_path):
    from nlclf import pipeline
    from nlclf.config import Config
    from nlclf.features.store import RowStore
    (tmp_path / "t.tsv").write_text("".join(f"{'ab'[i % 2]}\t{t}\n" for i, t in enumerate(CORPUS)))
    (tmp_path / "d.tsv").write_text("a\tw1 w2\nb\tw3 w0\n")
    feats = pipeline.featurize(Config(), {"train": tmp_path / "t.tsv", "dev": tmp_path / "d.tsv"},
                               lambda e, i: None, lambda msg: None)
    assert isinstance(feats.X, RowStore) and feats.X.counts is None and not isinstance(feats.X_dev, RowStore)
    assert feats.X.indices.dtype == np.uint16


@pytest.mark.parametrize("kind, n_features, expected", [
    ("bow", 5_000, (256,)), ("bow", 50_781, (256,)), ("bow", 50_782, (128,)), ("bow", 101_562, (128,)),
    ("bow", 101_563, (64,)), ("bow", 172_617, (64,)), ("bow", 5_000_000, (64,)),   # never narrower than 64
    ("embed_mean", 172_617, (256,)), ("embed_concat", 5_000_000, (256,))])
def test_auto_hidden_keeps_a_bags_first_layer_within_its_budget(kind, n_features, expected):
    from nlclf import pipeline
    assert pipeline.auto_hidden(kind, n_features) == expected
    assert kind != "bow" or n_features * expected[0] <= pipeline.FIRST_LAYER_WEIGHTS or expected == (64,)


def test_auto_hidden_is_chosen_from_the_features_said_and_kept_in_the_model(monkeypatch, tmp_path):
    from nlclf import config, pipeline
    from nlclf.errors import ConfigError
    cfg = config.load_text("data: {train: t.tsv}\ntrain: {epochs: 1}\n", "c.yaml")
    assert cfg.model.hidden == "auto" and cfg.model.activation == "gelu"
    data = (["a", "b"] * 4, ["good film", "bad film"] * 4), (["a", "b"], ["good", "bad"])
    monkeypatch.setattr(pipeline, "FIRST_LAYER_WEIGHTS", 60 * 128)      # this bag: 30 to 60 features
    said = []
    model, result = pipeline.fit_lists(cfg, *data, log=said.append)
    n = model.featurizer.n_features
    assert 30 < n <= 60 and model.spec.hidden == (128,) and model.params["H1"].shape == (n, 128)
    assert f"model: hidden [128] (auto: the widest of 256, 128, 64 whose first layer of {n:,} features holds at " \
        f"most 7,680 weights)" in said
    checkpoint.save(tmp_path, model, cfg)
    loaded, saved_cfg, _ = checkpoint.load(tmp_path)
    assert loaded.spec.hidden == (128,) and saved_cfg.model.hidden == "auto"
    fixed = config.load_text("data: {train: t.tsv}\nmodel: {hidden: [16, 8]}\ntrain: {epochs: 1}\n", "c.yaml")
    assert pipeline.fit_lists(fixed, *data)[0].spec.hidden == (16, 8)              # set widths stay
    with pytest.raises(ConfigError, match=r"c.yaml:2: model.hidden: must be a list of integers or auto; got wide"):
        config.load_text("data: {train: t.tsv}\nmodel: {hidden: wide}\n", "c.yaml")


def test_fitting_on_two_workers_that_release_their_chunks_gives_the_same_matrix(monkeypatch):
    """Each process drops the chunks of ids up to the one it assembles (trimming the heap every
    TRIM_EVERY): the vocabulary, X and the held-out rows are those of one process."""
    from nlclf.features import bag, base
    for module in (bag, base):
        monkeypatch.setattr(module, "CHUNK", 16)
    monkeypatch.setattr(bag, "TRIM_EVERY", 2)
    mask = np.arange(len(CORPUS)) % 5 == 0
    out = []
    for workers in (1, 2):
        f = Featurizer(FeatureSpec(char_ngrams=(2, 3), weighting="count", workers=workers))
        X, held = f.fit_counts(lambda: iter(CORPUS), mask=mask, compact=True)
        out.append((f.vocab.tokens, X.csr(), held))
    assert out[0][0] == out[1][0]
    assert (out[0][1] != out[1][1]).nnz == 0 and (out[0][2] != out[1][2]).nnz == 0
    fit = bag._FitPass(Featurizer(FeatureSpec()), None, True)
    fit.chunks = list(range(6))
    fit.release_through(2)
    fit.release_through(1)                                     # never back
    assert fit.chunks == [None, None, None, 3, 4, 5] and fit.released == 3

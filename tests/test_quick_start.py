"""Predicting a few texts with a loaded bag model: no SciPy, no lookup tables built, and the
same bits as the table and SciPy path (features.bag.Bag.counts, nn.layers.csr_matmul)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nlclf import checkpoint, pipeline
from nlclf.features import bag
from nlclf.nn import layers, mlp

from conftest import ENV, REPO, TIMEOUT, cfg_for
from test_multilabel import several_cfg

ODD = ["", "owl", "<pad> <unk> owl", "apple banana and some filler", "zzz qqq unseen words only",
       "hammer hammer hammer saw saw", "Émile's naïve café — déjà vu!", "a " * 300]


@pytest.fixture(scope="module", params=[
    ("bow", {"ngrams": 3, "char_ngrams": "[2,4]", "char_weight": 0.3, "weighting": "nb"}),
    ("bow", {"ngrams": 2, "weighting": "tfidf", "char_ngrams": "[1,3]", "char_below": 3}),
    ("embed_mean", {"ngrams": 2, "char_ngrams": "[2,3]", "weighting": "log"}),
    ("several", {}),
], ids=["bow-nb-chars", "bow-tfidf-char-below", "embed-mean", "several-labels"])
def run(request, tmp_path_factory):
    """A tiny trained model folder of each kind, and texts to predict (its test texts and odd ones)."""
    kind, features = request.param
    root = tmp_path_factory.mktemp(kind)
    if kind == "several":
        cfg, test = several_cfg(root, "train.epochs=3"), root / "test.txt"
        texts = [line.split(" ", 2)[-1] for line in test.read_text().splitlines()]
    else:
        cfg = cfg_for(kind, root, **features)
        texts = [line.split("\t", 1)[1] for line in (root / "test.tsv").read_text().splitlines()]
    pipeline.run_train(cfg, root, root / "run", log=lambda msg: None)
    return root / "run", texts[:40] + ODD


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


def test_a_few_texts_give_the_bits_of_the_table_path(run):
    folder, texts = run
    model, _, _ = checkpoint.load(folder)
    f = model.featurizer
    assert f._index is None                                  # loading builds no lookup tables
    one = [model.proba([t]) for t in texts]                  # the string lookups, NumPy's product
    batch = model.proba(texts)
    assert f._index is None and f._scale is None
    f.prepare()                                              # the tables, the whole column scale
    old = lambda ts: mlp.predict_proba(model.params, model.spec, f.transform(ts), model.temperature)
    for t, p in zip(texts, one):
        assert np.array_equal(bits(p), bits(old([t]))), t
    assert np.array_equal(bits(batch), bits(old(texts)))
    assert np.array_equal(bits(model.proba(texts)), bits(batch))       # tables built: their path


def test_a_model_with_hash_buckets_uses_the_tables(tmp_path):
    pipeline.run_train(cfg_for("bow", tmp_path, ngrams=2, hash_buckets=64), tmp_path, tmp_path / "run",
                       log=lambda msg: None)
    model, _, _ = checkpoint.load(tmp_path / "run")
    p = model.proba(["apple owl unseen-word"])
    assert model.featurizer._index is not None
    assert np.array_equal(bits(p), bits(mlp.predict_proba(model.params, model.spec,
                                                          model.featurizer.transform(["apple owl unseen-word"]))))


def test_a_large_chunk_builds_the_tables(run, monkeypatch):
    folder, texts = run
    model, _, _ = checkpoint.load(folder)
    monkeypatch.setattr(bag, "FEW_TOKENS", 3)
    model.proba(texts[:5])
    assert model.featurizer._index is not None


def test_a_stream_of_small_batches_builds_the_tables_once_the_budget_is_spent(run, monkeypatch):
    folder, texts = run
    model, _, _ = checkpoint.load(folder)
    f = model.featurizer
    first, rest = texts[3], [t for t in texts if t.strip()][:20]
    monkeypatch.setattr(bag, "FEW_TOKENS", len(f._token_ids([first])[0]))
    p = model.proba([first])                                 # the budget, spent
    assert f._index is None
    calls = []
    monkeypatch.setattr(f, "scale_of", lambda columns: calls.append(len(columns)) or bag.Bag.scale_of(f, columns))
    model.proba(rest[:1])                                    # one more small batch: the tables,
    assert f._index is not None and f._scale is not None     # and the column scale with them
    assert np.array_equal(bits(model.proba([first])), bits(p))
    assert calls == []                                       # no batch's columns scaled one by one


def test_the_numpy_product_has_scipys_bits(rng):
    kernels = layers.sparsetools()
    for _ in range(50):
        n, D, H = int(rng.integers(1, 30)), 400, int(rng.choice([1, 7, 64]))
        lengths = rng.integers(0, 60, n) * (rng.random(n) > 0.2)                 # empty rows too
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        indices = rng.integers(0, D, indptr[-1]).astype(np.int32)
        data = rng.random(indptr[-1], dtype=np.float32)
        M = rng.normal(size=(D, H)).astype(np.float32)
        want = np.zeros((n, H), np.float32)
        kernels.csr_matvecs(n, D, H, indptr, indices, data, M.ravel(), want.ravel())
        assert np.array_equal(bits(layers.gather_matmul(indptr, indices, data, M)), bits(want))


def test_predicting_a_line_imports_neither_scipy_nor_scikit_learn(run):
    folder, _ = run
    code = ("import sys\nfrom nlclf.predict import run_predict\n"
            f"out = [r for b in run_predict({str(folder)!r}, texts=['apple owl', 'saw'], workers=1) for r in b]\n"
            "assert len(out) == 2 and out[0]['top'], out\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'sklearn'))\n"
            "assert not bad, bad[:5]\n")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr


def test_the_prefetched_checksum_is_the_one_load_uses(run, monkeypatch):
    from nlclf import digest
    folder, _ = run
    path = next(folder.glob("model.*.npz"))
    numpy_ranges = [(n, dt.str, shape, off, nb) for n, dt, shape, _, off, nb in checkpoint._member_arrays(path)]
    assert digest.members(path) == numpy_ranges                     # the headers read alike
    digest.prefetch(folder)
    started = digest._STARTED[str(path.resolve())]
    started.join()
    assert started.digest is not None
    calls = []
    monkeypatch.setattr(digest, "of_ranges", lambda *a: calls.append(a))          # would hash again
    checkpoint.load(folder)
    assert str(path.resolve()) not in digest._STARTED and not calls


def test_a_file_changed_after_the_prefetch_is_hashed_again(tmp_path):
    from nlclf import digest
    from nlclf.errors import CheckpointError
    pipeline.run_train(cfg_for("bow", tmp_path, ngrams=1), tmp_path, tmp_path / "run", log=lambda msg: None)
    folder = tmp_path / "run"
    path = next(folder.glob("model.*.npz"))
    digest.prefetch(folder)
    digest._STARTED[str(path.resolve())].join()
    offset = digest.members(path)[0][3]
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 1                                                # a byte of the first array's data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        checkpoint.load(folder)


def test_a_large_input_file_builds_the_tables_before_the_workers_fork(run, tmp_path, monkeypatch):
    from nlclf import predict
    folder, texts = run
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("apple owl\n")
    big.write_text("apple owl\n" * 4)
    monkeypatch.setattr(predict, "PREPARE_BYTES", 30)
    for path, built in ((small, False), (big, True)):
        predict._LOADED.clear()
        list(predict.run_predict(folder, [str(path)], workers=2))
        assert (predict._cached_model(folder)[0].featurizer._index is not None) == built


def test_the_command_starts_hashing_the_model_before_it_imports_typer(run):
    folder, _ = run
    code = "import sys; from nlclf.__main__ import main; sys.argv[0] = 'nlclf'; main()"
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code, "predict", str(folder), "-"],
                       input="apple owl\n", env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    assert imported.index("nlclf.digest") < imported.index("typer")
    assert 'nlclf = "nlclf.__main__:main"' in (REPO / "pyproject.toml").read_text()


def test_the_predict_command_imports_neither_scipy_scikit_learn_nor_yaml(run):
    folder, _ = run
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "nlclf", "predict", str(folder), "-"],
                       input="apple owl\n", env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    assert "numpy" in imported
    heavy = [m for m in imported if m.split(".")[0] in ("scipy", "sklearn", "pydantic", "yaml")]
    assert not heavy, (f"{heavy[:5]} (pydantic: typer 0.29 and later coerce options with it; pyproject keeps "
                       f"typer<0.29; yaml: config.py imports it when a config is read or written as YAML)")

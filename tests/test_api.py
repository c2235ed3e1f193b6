"""The Python API (nlclf.load, nlclf.train, Model) and the scikit-learn estimator, in process;
and the README's Python examples, executed as they are written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nlclf
from nlclf import config as config_mod
from nlclf.errors import CheckpointError, ConfigError, OutputError

from conftest import BASE_CONFIG, ENV, LABELS, PREDICT_LINES, REPO, TIMEOUT, texts_for, write_tsv

TEXTS = [t for t, _ in PREDICT_LINES]
FAST = {"hidden": [16], "epochs": 5, "lr": 0.05, "batch_size": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    for split, n, seed in (("train", 40, 1), ("dev", 10, 2), ("test", 10, 3)):
        write_tsv(root / f"{split}.tsv", n, seed)
    result = nlclf.train(json.loads(json.dumps(BASE_CONFIG)), out=root / "model", data_root=root)
    return root, result


def test_import_nlclf_loads_nothing_heavy():
    code = ("import sys, nlclf; heavy = [m for m in ('numpy', 'scipy', 'sklearn', 'yaml', 'typer', 'fastapi') "
            "if m in sys.modules]; print(heavy, callable(nlclf.train), nlclf.load.__module__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.stdout.split("]")[0] == "[" and r.stdout.split("] ")[1].strip() == "True nlclf.api", r.stdout + r.stderr


def test_train_is_the_api_function_after_the_training_loop_is_imported(trained):
    import nlclf.training as loop                   # the training loop's module has its own name
    assert nlclf.train is nlclf.api.train and hasattr(loop, "fit_ensemble")


def test_train_returns_the_folder_the_model_and_the_report(trained):
    root, (path, model, report) = trained
    assert path == root / "model" and (path / "model.json").is_file()
    assert model.labels == LABELS and report["final"]["dev"]["accuracy"] >= 0.9
    again = nlclf.load(path)
    assert again.checksum == model.checksum
    np.testing.assert_array_equal(again.predict_proba(TEXTS), model.predict_proba(TEXTS))


def test_predict_predict_proba_and_top(trained):
    _, (path, model, _) = trained
    p = model.predict_proba(TEXTS)
    assert p.shape == (len(TEXTS), 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    labels = model.predict(TEXTS)
    assert labels == [model.labels[i] for i in p.argmax(1)]
    assert [lab for lab, (_, want) in zip(labels, PREDICT_LINES) if want] == [w for _, w in PREDICT_LINES if w]
    two = model.predict(TEXTS, k=2)
    assert [row[0] for row in two] == labels and all(len(row) == 2 for row in two)
    assert all(len(row) == 3 for row in model.predict(TEXTS, k=-1))
    ranked = model.top(TEXTS, k=-1)
    assert model.predict(TEXTS, k=-1, threshold=0.5) == [[lab for lab, q in row if q >= 0.5] for row in ranked]
    assert model.predict(TEXTS, threshold=0.5) == [[lab for lab, q in row[:1] if q >= 0.5] for row in ranked]
    top = model.top(TEXTS[:1], k=3)[0]
    assert [lab for lab, _ in top] == model.predict(TEXTS[:1], k=3)[0]
    assert [q for _, q in model.top(TEXTS, k=3)[0]] == sorted((float(q) for q in p[0]), reverse=True)
    # One text alone: the same numbers up to float32 rounding (BLAS may pick another kernel for
    # one row than for several: OpenBLAS's gemv for a single row).
    assert np.allclose([q for _, q in top], sorted(p[0].tolist(), reverse=True), rtol=1e-5, atol=1e-7)
    assert model.predict_proba([]).shape == (0, 3) and model.predict([]) == []


def test_the_api_gives_nlclf_predicts_results(trained):
    root, (path, model, _) = trained
    (root / "lines.txt").write_text("".join(t + "\n" for t in TEXTS))
    r = subprocess.run([sys.executable, "-m", "nlclf", "predict", str(path), str(root / "lines.txt"), "--top-k", "2",
                        "--proba", "--format", "tsv"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    want = [line.split("\t") for line in r.stdout.splitlines()]
    got = [[x for lab, q in row for x in (lab, f"{q:.4f}")] for row in model.top(TEXTS, k=2)]
    assert got == want


def test_explain(trained):
    _, (_, model, _) = trained
    one = model.explain("goal match team", k=2)
    assert one["label"] == "sport" and 0 < one["proba"] <= 1 and len(one["toward"]) <= 2
    assert all(score > 0 for _, score in one["toward"]) and all(score < 0 for _, score in one["against"])
    two = model.explain(["goal match team", "pasta"], k=2)[0]      # in a batch of two: the same up to
    assert two["label"] == one["label"] and np.isclose(two["proba"], one["proba"], rtol=1e-5)   # rounding
    for side in ("toward", "against"):
        assert [f for f, _ in two[side]] == [f for f, _ in one[side]]
        assert np.allclose([v for _, v in two[side]], [v for _, v in one[side]], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("call, error", [
    (lambda m: m.predict("one string"), "wrap it"),
    (lambda m: m.predict(["a", 3]), r"texts\[1\] must be a string"),
    (lambda m: m.predict(["a"], k=0), "k must be"),
    (lambda m: m.predict(["a"], k=True), "k must be"),
    (lambda m: m.predict(["a"], threshold=1.5), "threshold must be"),
    (lambda m: m.explain("a", k=0), "k must be"),
])
def test_bad_arguments_are_type_errors(trained, call, error):
    with pytest.raises(TypeError, match=error):
        call(trained[1].model)


def test_load_of_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        nlclf.load(tmp_path / "nothing")


def test_overrides_by_name_and_dotted(tmp_path):
    cfg = nlclf.api.make_config(None, {"train": "t.tsv", "lr": 0.01, "hidden": (8, 4), "train.epochs": 3,
                                       "char_ngrams": [], "seed": np.int64(5)})
    assert (cfg.data.train, cfg.train.lr, cfg.model.hidden, cfg.train.epochs, cfg.features.char_ngrams, cfg.seed) == \
        ("t.tsv", 0.01, (8, 4), 3, (), 5)
    assert cfg.data.root == str(Path.cwd())
    y = tmp_path / "c.yaml"
    y.write_text("data: {train: a.tsv}\nmodel: {hidden: [32]}\n")
    cfg = nlclf.api.make_config(y, {"activation": "tanh"})
    assert cfg.model.hidden == (32,) and cfg.model.activation == "tanh" and cfg.data.root == ""
    assert nlclf.api.make_config(cfg, {}) is cfg
    with pytest.raises(ConfigError, match="did you mean lr"):
        nlclf.api.make_config(None, {"train": "t.tsv", "lrr": 0.1})
    with pytest.raises(ConfigError, match=r"^train.lr: must be a number > 0"):
        nlclf.api.make_config(None, {"train": "t.tsv", "lr": -1})
    with pytest.raises(TypeError):
        nlclf.api.make_config(3)


def test_train_from_a_yaml_file_with_overrides(trained, tmp_path):
    root, _ = trained
    y = tmp_path / "c.yaml"
    y.write_text(config_mod.dump(config_mod.from_dict(json.loads(json.dumps(BASE_CONFIG)))))
    path, model, report = nlclf.train(y, tmp_path / "run", data_root=root, hidden=[8], **{"train.epochs": 2})
    assert report["model"]["hidden"] == [8] and len(report["history"]) == 2 and model.labels == LABELS
    with pytest.raises(OutputError):                            # the folder holds a run: refused without overwrite
        nlclf.train(y, tmp_path / "run", data_root=root, epochs=1, load_model=False)
    assert nlclf.train(y, tmp_path / "run", data_root=root, epochs=1, load_model=False, overwrite=True).model is None


# --- the scikit-learn estimator ------------------------------------------------------------------

def corpus(n=30, seed=0):
    import random
    rng = random.Random(seed)
    X, y = [], []
    for i, lab in enumerate(LABELS):
        for t in texts_for(lab, n, rng):
            X.append(t)
            y.append(lab)
    order = rng.sample(range(len(X)), len(X))
    return [X[i] for i in order], [y[i] for i in order]


def test_estimator_fit_predict_score(tmp_path, monkeypatch):
    from nlclf.sklearn import TextMLPClassifier
    monkeypatch.chdir(tmp_path)
    X, y = corpus()
    clf = TextMLPClassifier(**FAST).fit(X, y)
    assert list(clf.classes_) == LABELS and clf.score(X, y) >= 0.95
    p = clf.predict_proba(["goal match team", "pasta sauce oven"])
    assert p.shape == (2, 3) and p.dtype == np.float64 and list(clf.classes_[p.argmax(1)]) == ["sport", "food"]
    assert list(clf.predict(["kernel router database"])) == ["tech"]
    assert list(tmp_path.iterdir()) == []                        # fit wrote nothing


def test_estimator_numeric_labels_keep_their_sorted_order():
    from nlclf.sklearn import TextMLPClassifier
    X, y = corpus()
    code = {"food": 10, "sport": 2, "tech": 33}
    clf = TextMLPClassifier(**FAST).fit(X, [code[v] for v in y])
    assert list(clf.classes_) == [2, 10, 33]
    assert list(clf.predict(["goal match team", "pasta sauce oven", "laptop compiler"])) == [2, 10, 33]


def test_seeded_fits_are_identical():
    from nlclf.sklearn import TextMLPClassifier
    X, y = corpus()
    a = TextMLPClassifier(seed=3, **FAST).fit(X, y).predict_proba(X)
    b = TextMLPClassifier(seed=3, **FAST).fit(X, y).predict_proba(X)
    c = TextMLPClassifier(seed=4, **FAST).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_params_clone_and_set_params():
    from sklearn.base import clone
    from nlclf.sklearn import PARAMS, TextMLPClassifier
    clf = TextMLPClassifier(hidden=[16], lr=0.05)
    params = clf.get_params()
    assert set(params) == set(PARAMS) and params["hidden"] == [16] and params["epochs"] is None
    assert {"lr", "hidden", "ngrams", "kind", "seed", "dev_fraction", "optimizer"} <= set(params)
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == params
    assert clf.set_params(epochs=4) is clf and clf.epochs == 4
    with pytest.raises(ValueError):
        clf.set_params(bogus=1)
    with pytest.raises(TypeError, match="unknown parameter"):
        TextMLPClassifier(bogus=1)
    with pytest.raises(ConfigError, match="train.lr"):
        TextMLPClassifier(lr=-1).fit(*corpus(5))


def test_cross_val_score_grid_search_and_pipeline():
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from nlclf.sklearn import TextMLPClassifier
    X, y = corpus()
    scores = cross_val_score(TextMLPClassifier(**FAST), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() >= 0.8
    search = GridSearchCV(TextMLPClassifier(epochs=4, batch_size=8, lr=0.05), {"hidden": [[4], [16]]}, cv=2).fit(X, y)
    assert search.best_params_["hidden"] in ([4], [16]) and search.best_score_ >= 0.8
    assert list(search.predict(["goal match team"])) == ["sport"]
    pipe = make_pipeline(FunctionTransformer(lambda xs: [x.upper() for x in xs]), TextMLPClassifier(**FAST)).fit(X, y)
    assert pipe.score(X, y) >= 0.95 and list(pipe.predict(["pasta sauce"])) == ["food"]
    pipe.set_params(textmlpclassifier__hidden=[8])
    assert pipe.get_params()["textmlpclassifier__hidden"] == [8]


# --- the README's Python examples ----------------------------------------------------------------

def readme_python_blocks() -> list:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## From Python"):text.index("## Over HTTP")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_examples_run(tmp_path, monkeypatch, capsys):
    blocks = readme_python_blocks()
    assert len(blocks) == 2
    shutil.copytree(REPO / "data" / "demo", tmp_path / "data" / "demo")
    monkeypatch.chdir(tmp_path)
    spaces = [{} for _ in blocks]
    for block, space in zip(blocks, spaces):
        exec(compile(block, "README.md", "exec"), space)
    capsys.readouterr()                                      # what the examples print is for the reader
    ns = spaces[0]
    assert ns["model"].labels == ["cooking", "sports", "tech", "weather"]
    assert ns["model"].predict(ns["texts"]) == ["sports", "cooking"]
    assert ns["proba"].shape == (2, 4) and ns["why"]["label"] == "sports"
    ns = spaces[1]
    assert list(ns["clf"].classes_) == ["cooking", "sports", "tech", "weather"]
    assert list(ns["clf"].predict(["Heavy snow is expected tonight"])) == ["weather"]
    assert list(ns["pipe"].predict(["  Preheat the oven  "])) == ["cooking"]
    assert (tmp_path / "runs" / "demo-api" / "model.json").is_file()

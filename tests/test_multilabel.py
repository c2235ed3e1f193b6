"""Several labels a text end to end: detection, training, thresholds, predict, eval, API, serve,
and single-label models left as they were."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from nlclf import api, checkpoint, config, data, metrics, pipeline, serve
from nlclf.errors import ConfigError
from nlclf.features import weighting
from nlclf.nn import mlp
from nlclf.nn.losses import sigmoid
from nlclf.training import pos_weights

from conftest import ENV, REPO, TIMEOUT, write_data

WORDS = {"art": ["paint", "canvas", "brush", "gallery"], "bio": ["cell", "gene", "enzyme", "protein"],
         "cs": ["kernel", "compiler", "python", "server"], "eco": ["market", "price", "trade", "bank"]}
FILLER = ["the", "and", "of", "with", "some", "very", "new"]
CLASSES = sorted(WORDS)


def several_lines(n: int, seed: int) -> list:
    """fastText lines of 1 to 3 labels each, each label's words in the text."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        labels = [c for c in CLASSES if r.random() < 0.35] or [r.choice(CLASSES)]
        words = [r.choice(WORDS[c]) for c in labels for _ in range(2)] + r.sample(FILLER, 3)
        r.shuffle(words)
        out.append(" ".join(f"__label__{c}" for c in labels) + " " + " ".join(words))
    return out


def write_several(root, n=300):
    for split, size, seed in (("train", n, 0), ("dev", n // 3, 1), ("test", n // 3, 2)):
        (root / f"{split}.txt").write_text("\n".join(several_lines(size, seed)) + "\n", encoding="utf-8")


def several_cfg(root, *overrides):
    write_several(root)
    return config.load_text("data: {train: train.txt, dev: dev.txt, test: test.txt}\n"
                            "model: {hidden: [16]}\ntrain: {epochs: 12, lr: 0.02, batch_size: 16}\n",
                            "<test>", list(overrides))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A multi-label run (global threshold) and its logs."""
    root = tmp_path_factory.mktemp("ml")
    logs = []
    r = pipeline.run_train(several_cfg(root), root, root / "run", log=logs.append)
    return root, r, logs


# --- config ----------------------------------------------------------------------------------

def test_config_keys_and_their_rules():
    c = config.Config()
    assert (c.data.multi_label, c.train.pos_weight, c.train.thresholds) == ("auto", "auto", "global")
    cfg = config.load_text("data: {train: t, multi_label: true}\ntrain: {pos_weight: 3, thresholds: per_label, "
                           "metric: micro_f1}\n", "c.yaml")
    assert (cfg.data.multi_label, cfg.train.pos_weight, cfg.train.thresholds, cfg.train.metric) == \
        (True, 3.0, "per_label", "micro_f1")
    for text, needle in (("data: {train: t, multi_label: maybe}", "c.yaml:1: data.multi_label: must be true, false or auto; got maybe"),
                         ("data: {train: t}\ntrain: {pos_weight: 0}", "c.yaml:2: train.pos_weight: must be a number > 0; got 0.0"),
                         ("data: {train: t}\ntrain: {pos_weight: many}", "c.yaml:2: train.pos_weight: must be a number or auto; got many"),
                         ("data: {train: t}\ntrain: {thresholds: per_class}", "c.yaml:2: train.thresholds: must be one of global, per_label; got per_class (did you mean 'per_label'?)")):
        with pytest.raises(ConfigError) as e:
            config.load_text(text, "c.yaml")
        assert needle in str(e.value)
    assert "train.pos_weight" in config.AUTO_KEYS and "data.multi_label" in config.AUTO_KEYS


def test_pos_weights_auto_and_fixed():
    Y = np.zeros((100, 3), np.uint8)
    Y[:50, 0] = 1                     # half: (50/50)^.5 = 1
    Y[:4, 1] = 1                      # 4 %: (96/4)^.5 = 4.9
    Y[:0, 2] = 1                      # none: clipped to 10
    assert np.allclose(pos_weights(Y, "auto"), [1.0, np.sqrt(24.0), 10.0])
    assert pos_weights(Y, "auto").dtype == np.float32
    assert np.array_equal(pos_weights(Y, 2.5), [2.5, 2.5, 2.5])


def test_nb_weights_of_several_labels_count_a_text_for_each_label(rng):
    X = sp.csr_matrix((rng.random((30, 12)) < 0.3) * rng.integers(1, 4, (30, 12)), dtype=np.float32)
    Y = (rng.random((30, 3)) < 0.4).astype(np.uint8)
    counts = (X.toarray() > 0).astype(float).T @ Y                                  # (D, C), a reference
    L = np.log(counts + 1.0) - np.log(1.0 * 12 + counts.sum(0))
    assert np.allclose(weighting.nb_spread(X, Y, 1.0), L.max(1) - L.min(1), atol=1e-6)


# --- training --------------------------------------------------------------------------------

def test_auto_detects_several_labels_says_so_and_reaches_an_f1_floor(trained):
    root, r, logs = trained
    assert r["multi_label"] and r["metric"] == "micro_f1"
    assert any("data.multi_label: several labels a text (auto:" in m for m in logs)
    test = r["final"]["test"]
    assert test["micro_f1"] >= 0.9 and test["p_at_1"] >= 0.95 and test["n"] == 100
    assert {"micro_f1", "macro_f1", "samples_f1", "p_at_5", "r_at_5", "hamming_loss", "subset_accuracy",
            "per_label"} <= set(test)
    assert [d["label"] for d in test["per_label"]] == CLASSES
    assert all("dev_micro_f1" in h and "dev_accuracy" not in h for h in r["history"])
    md = (root / "run" / "report.md").read_text(encoding="utf-8")
    assert "dev micro-F1" in md and "| label | precision | recall | F1 | support |" in md


def test_a_fasttext_file_of_one_label_a_text_stays_single_label(tmp_path):
    lines = [f"__label__{c} {' '.join(WORDS[c][:3])}" for c in CLASSES for _ in range(10)]
    for split in ("train", "dev"):
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    logs = []
    cfg = config.load_text("data: {train: train.txt, dev: dev.txt}\nmodel: {hidden: [8]}\ntrain: {epochs: 2}\n")
    r = pipeline.run_train(cfg, tmp_path, tmp_path / "run", log=logs.append)
    assert not r["multi_label"] and r["metric"] == "accuracy" and "accuracy" in r["final"]["dev"]
    assert not any("multi_label" in m for m in logs)
    model, _, meta = checkpoint.load(tmp_path / "run")
    assert model.spec.output == "softmax" and model.thresholds is None and not model.several


def test_thresholds_are_chosen_on_dev_stored_and_used(trained, tmp_path):
    root, r, _ = trained
    meta = json.loads((root / "run" / "model.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == checkpoint.SEVERAL_FORMAT and meta["net"]["output"] == "sigmoid"
    assert meta["thresholds"] in metrics.THRESHOLD_GRID.tolist() and r["final"]["dev"]["thresholds"] == meta["thresholds"]
    model, _, _ = checkpoint.load(root / "run")
    texts = [l.split(" ", 1)[1] for l in several_lines(20, 5)]
    S = model.proba(texts)
    assert np.allclose(S, sigmoid(model.logits(texts)))                       # sigmoid, not softmax
    got = api.Model(model, None, meta).predict(texts)
    want = metrics.decide(S, meta["thresholds"])
    assert [set(g) for g in got] == [{model.labels[c] for c in np.flatnonzero(row)} for row in want]
    # the stored threshold is the one used: raise it and only the top label is left
    import shutil
    shutil.copytree(root / "run", tmp_path / "high")
    meta["thresholds"] = 1.0
    (tmp_path / "high" / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    high = api.load(tmp_path / "high")
    assert high.predict(texts) == [[model.labels[int(c)]] for c in S.argmax(1)]
    assert high.predict(texts, allow_empty=True) == [[] for _ in texts]


def test_per_label_thresholds(tmp_path):
    r = pipeline.run_train(several_cfg(tmp_path, "train.thresholds=per_label", "train.epochs=4"), tmp_path,
                           tmp_path / "run")
    model, _, meta = checkpoint.load(tmp_path / "run")
    assert isinstance(meta["thresholds"], list) and len(meta["thresholds"]) == len(CLASSES)
    assert model.thresholds.shape == (len(CLASSES),) and r["final"]["test"]["thresholds"] == meta["thresholds"]


def test_several_labels_can_be_forced_off_and_on(tmp_path):
    write_several(tmp_path)
    from nlclf.errors import DataError
    cfg = config.load_text("data: {train: train.txt, dev: dev.txt, multi_label: false}\n")
    with pytest.raises(DataError, match=r"train.txt:\d+: \d labels .*data.multi_label: true"):
        pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    (tmp_path / "one.txt").write_text("".join(f"__label__{c} {' '.join(WORDS[c])}\n" for c in CLASSES * 5))
    cfg = config.load_text("data: {train: one.txt, dev: one.txt, multi_label: true}\nmodel: {hidden: [8]}\n"
                           "train: {epochs: 2}\n")
    assert pipeline.run_train(cfg, tmp_path, tmp_path / "run2")["multi_label"]


# --- predict, API, serve -----------------------------------------------------------------------

def run_cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "nlclf.cli", *map(str, args)], cwd=REPO, env=ENV, input=input,
                          capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)


PREDICT = ["paint canvas gene cell", "kernel python", "the and of", "market price brush"]


@pytest.mark.slow
def test_predict_cli_prints_the_decided_labels(trained):
    root, _, _ = trained
    model = api.load(root / "run")
    text = "".join(t + "\n" for t in PREDICT)
    runs = {name: run_cli("predict", root / "run", *extra, input=text) for name, extra in (
        ("default", []), ("proba", ["--proba"]), ("top2", ["--top-k", "2"]), ("empty", ["--threshold", "1", "--allow-empty"]),
        ("high", ["--threshold", "1"]), ("jsonl", ["--format", "jsonl"]), ("bad", ["--top-k", "0"]))}
    for name, r in runs.items():
        assert r.returncode == (2 if name == "bad" else 0), (name, r.stderr)
    assert [line.split() for line in runs["default"].stdout.splitlines()] == model.predict(PREDICT)
    assert set(runs["default"].stdout.split()[:2]) == {"art", "bio"}                  # two labels a line
    proba = [line.split() for line in runs["proba"].stdout.splitlines()]
    assert [row[::2] for row in proba] == model.predict(PREDICT)
    assert all(float(p) >= model.thresholds for row in proba for p in row[1::2][1:])
    assert all(len(line.split()) == 2 for line in runs["top2"].stdout.splitlines())
    assert runs["empty"].stdout == "\n" * len(PREDICT)
    assert [line.split()[0] for line in runs["high"].stdout.splitlines()] == [row[0][0] for row in model.top(PREDICT, k=1)]
    records = [json.loads(l) for l in runs["jsonl"].stdout.splitlines()]
    assert [[t["label"] for t in rec["top"]] for rec in records] == model.predict(PREDICT)


def test_api_and_serve_give_the_same_labels(trained):
    root, _, _ = trained
    model = api.load(root / "run")
    assert model.multi_label and model.metadata()["multi_label"] and model.metadata()["thresholds"] == model.thresholds
    labels = model.predict(PREDICT)
    assert all(isinstance(row, list) and row for row in labels) and len(labels[0]) >= 2
    assert model.predict(PREDICT, k=1) == [[row[0][0]] for row in model.top(PREDICT, k=1)]
    assert all(len(row) == len(CLASSES) for row in model.predict(PREDICT, k=-1))
    job = serve.Job(PREDICT, None, None, True, 0, None)
    body = json.loads(serve.score(model, [job])[0])
    assert [[t["label"] for t in rec["top"]] for rec in body["results"]] == labels
    empty = serve.Job(PREDICT, None, 1.0, False, 0, None, allow_empty=True)
    assert json.loads(serve.score(model, [empty])[0])["results"] == [{"label": None, "top": []}] * len(PREDICT)
    assert serve.parse_predict(b'{"texts": ["x"], "allow_empty": true}', 10)["allow_empty"] is True
    with pytest.raises(serve.BadRequest, match="allow_empty must be true or false"):
        serve.parse_predict(b'{"texts": ["x"], "allow_empty": 1}', 10)


def test_eval_of_a_multi_label_model(trained):
    from nlclf.evaluate import run_eval
    from nlclf.report import eval_text
    root, r, _ = trained
    m = run_eval(root / "run", root / "test.txt", top_k=3)
    assert m["multi_label"] and m["micro_f1"] == pytest.approx(r["final"]["test"]["micro_f1"])
    assert m["top_k"] == 3 and 0 < m["precision_at_k"] <= 1 and 0 < m["recall_at_k"] <= 1
    text = eval_text(m)
    assert text.startswith(f"micro-F1 {m['micro_f1']:.4f}") and "P@3" in text and "| art |" in text


# --- single-label models are as they were ----------------------------------------------------

def test_single_label_checkpoints_are_written_and_read_as_before(tmp_path):
    write_data(tmp_path)
    cfg = config.load_text("data: {train: train.tsv, dev: dev.tsv}\nmodel: {hidden: [8]}\ntrain: {epochs: 2}\n")
    pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 2 and "output" not in meta["net"] and "thresholds" not in meta
    model = api.load(tmp_path / "run")
    texts = ["apple banana", "hammer saw drill", "robin owl"]
    assert not model.multi_label and model.thresholds is None
    P = model.predict_proba(texts)
    assert np.allclose(P.sum(1), 1.0, atol=1e-5)                                      # softmax
    assert model.predict(texts) == [model.labels[i] for i in P.argmax(1)]
    assert model.predict(texts, threshold=0.0) == [[model.labels[int(np.argmax(p))]] for p in P]   # k 1, as before
    r = run_cli("predict", tmp_path / "run", input="".join(t + "\n" for t in texts))
    assert r.returncode == 0 and r.stdout.split("\n")[:3] == model.predict(texts)


def test_a_network_description_without_output_is_a_softmax():
    spec = mlp.NetSpec("bow", 5, 3)
    assert spec.output == "softmax" and set(mlp.OUTPUTS) == {"softmax", "sigmoid"}


def test_cv_of_several_labels_a_text(trained, tmp_path):
    """cv on a multi-label file: shuffled folds (no classes to stratify by), each fold a model
    with several labels a text scored by micro-F1, macro-F1 and P@1; cv.md leads with micro-F1."""
    from nlclf.report import cv_markdown
    from nlclf.search import folds, run_cv
    root, _, _ = trained
    cfg = config.load_text("data: {train: train.txt}\nmodel: {hidden: [16]}\n"
                           "train: {epochs: 8, lr: 0.02, batch_size: 16}\n", "<t>")
    said = []
    r = run_cv(cfg, 3, root=root, jobs=1, log=said.append)
    assert r["metric"] == "micro_f1" and r["failed"] == 0 and len(r["runs"]) == 3 and r["n"] == 300
    assert r["micro_f1"]["mean"] >= 0.85 and r["p_at_1"]["mean"] >= 0.9
    assert all({"micro_f1", "macro_f1", "p_at_1"} <= set(x) and "accuracy" not in x for x in r["runs"])
    assert sorted(np.concatenate([te for _, te in folds([("a",)] * 10, 3, 0)]).tolist()) == list(range(10))
    assert any("micro-F1" in line for line in said)
    md = cv_markdown(r)
    assert "**micro-F1 " in md and "| P@1 |" in md.replace(" P@1 ", "| P@1 |") and "accuracy" not in md


def test_tune_of_several_labels_a_text(trained):
    """tune on a multi-label file: trials scored by dev micro-F1 (the best epoch's), a dev
    share split off at random, and with --cv by the folds' micro-F1."""
    from nlclf.search import run_tune
    root, _, _ = trained
    cfg = config.load_text("data: {train: train.txt}\nmodel: {hidden: [16]}\n"
                           "train: {epochs: 6, lr: 0.02, batch_size: 16}\n", "<t>")
    for cv in (0, 2):
        r = run_tune(cfg, {"model.hidden": ("choice", [[8], [16]])}, trials=2, jobs=1, cv=cv, root=root)
        scores = [t["score"] for t in r["trials"]]
        assert len(scores) == 2 and all(s is not None and 0.7 <= s <= 1 for s in scores), r["trials"]


def test_the_micro_f1_bootstrap_against_its_formula(rng):
    from nlclf import significance
    Y = rng.random((60, 4)) < 0.4
    P_a = Y ^ (rng.random(Y.shape) < 0.3)                                # A: 30 % of the cells flipped
    P_b = Y ^ (rng.random(Y.shape) < 0.1)                                # B: 10 %
    f1 = lambda P: 2 * (Y & P).sum() / (2 * (Y & P).sum() + (~Y & P).sum() + (Y & ~P).sum())
    r = significance.paired_bootstrap_micro_f1(Y, P_a, P_b, 2000, seed=3)
    assert r["micro_f1_a"] == pytest.approx(f1(P_a)) and r["micro_f1_b"] == pytest.approx(f1(P_b))
    assert r["difference"] == pytest.approx(f1(P_b) - f1(P_a)) and r["difference"] > 0.1
    assert r["ci_low"] < r["difference"] < r["ci_high"] and r["p_value"] < 0.01
    assert r == significance.paired_bootstrap_micro_f1(Y, P_a, P_b, 2000, seed=3)       # seeded
    idx = np.random.default_rng(3).integers(0, 60, size=(1, 60))[0]      # the one resample, by hand
    f1_of = lambda P: 2 * (Y[idx] & P[idx]).sum() / (2 * (Y[idx] & P[idx]).sum() + (~Y[idx] & P[idx]).sum()
                                                    + (Y[idx] & ~P[idx]).sum())
    one = significance.paired_bootstrap_micro_f1(Y, P_a, P_b, 1, seed=3)
    assert one["ci_low"] == pytest.approx(f1_of(P_b) - f1_of(P_a))
    tie = significance.paired_bootstrap_micro_f1(Y, P_a, P_a, 500)
    assert tie["difference"] == 0 and tie["p_value"] == 1.0


def test_compare_two_multi_label_models(trained, tmp_path):
    """compare on several labels a text: each model decided at its own thresholds, micro-F1,
    macro-F1, P@1 and exact matches side by side, McNemar on exact matches, the micro-F1
    bootstrap; a one-label model against a multi-label one is refused."""
    from nlclf.evaluate import run_compare
    root, _, _ = trained
    weak = pipeline.run_train(several_cfg(root, "model.hidden=[2]", "train.epochs=1", "train.lr=0.001"), root,
                              tmp_path / "weak")
    r = run_compare(tmp_path / "weak", root / "run", root / "test.txt", 1000)
    Y_sets, texts = data.read_multilabelled(root / "test.txt", config.Config().data)
    Y = data.label_matrix(Y_sets, CLASSES).astype(bool)
    for key, path in (("a", tmp_path / "weak"), ("b", root / "run")):
        m = api.load(path)
        P = data.label_matrix([tuple(l) for l in m.predict(texts)], CLASSES).astype(bool)
        assert r[key]["micro_f1"] == pytest.approx(metrics.multilabel_quick(Y, P)["micro_f1"])
        assert r[key]["subset_accuracy"] == pytest.approx((P == Y).all(1).mean())
    assert r["multi_label"] and r["b_minus_a"]["micro_f1"] > 0.05 and r["bootstrap"]["p_value"] < 0.05
    assert r["bootstrap"]["difference"] == pytest.approx(r["b_minus_a"]["micro_f1"])
    assert r["mcnemar"]["n"] == len(texts)
    out = run_cli("compare", tmp_path / "weak", root / "run", root / "test.txt", "--resamples", "500")
    assert out.returncode == 0, out.stderr
    assert "| micro-F1 |" in out.stdout and "| exact match |" in out.stdout and "micro-F1 difference B − A" in out.stdout
    one = tmp_path / "one"
    one.mkdir()
    write_data(one, n=40)
    pipeline.run_train(config.load_text("data: {train: train.tsv, dev: dev.tsv}\ntrain: {epochs: 1}\n", "<t>"),
                       one, one / "run")
    with pytest.raises(ConfigError, match="compare needs two models of a kind"):
        run_compare(one / "run", root / "run", root / "test.txt")


def test_explain_gives_every_predicted_label_its_features(trained):
    """--explain on a multi-label model: one explanation for each label it predicts, most
    probable first, each the gradient × input of that label's logit (its own words push it up)."""
    from nlclf import explain
    root, _, _ = trained
    model = api.load(root / "run")
    out = explain.explain(model.classifier, PREDICT, k=3)
    predicted = model.predict(PREDICT)
    for text, e, labels in zip(PREDICT, out, predicted):
        assert [x["label"] for x in e["labels"]] == labels
        assert e["label"] == labels[0] and e["toward"] == e["labels"][0]["toward"]
        probs = [x["proba"] for x in e["labels"]]
        assert probs == sorted(probs, reverse=True)
        for x in e["labels"]:
            if set(text.split()) & set(WORDS[x["label"]]):                   # its own words push it most
                assert set(x["toward"][0][0].lstrip("~").split()) & set(WORDS[x["label"]]), (text, x)
    single, _, _ = explain.attribute(model.classifier.params, model.classifier.spec,
                                     model.classifier.featurizer.transform(PREDICT[:1]),
                                     np.array([CLASSES.index(predicted[0][1])]))
    assert out[0]["labels"][1]["proba"] == pytest.approx(float(sigmoid(single[0, CLASSES.index(predicted[0][1])])),
                                                         rel=1e-5)
    r = run_cli("predict", root / "run", "--explain", "2", "--format", "jsonl", input=PREDICT[0] + "\n")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert [x["label"] for x in rec["labels"]] == predicted[0] and rec["label"] == predicted[0][0]
    text = run_cli("predict", root / "run", "--explain", "2", input=PREDICT[0] + "\n")
    fields = text.stdout.rstrip("\n").split(" ")
    assert text.returncode == 0 and fields[0] == predicted[0][0] and predicted[0][1] in fields

"""Reports people can look at and predictions they can question, through the real commands."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nlclf import checkpoint, config, inspection, pipeline

from conftest import write_data

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "nlclf.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    write_data(root, n=30)
    text = """
data: {train: train.tsv, dev: dev.tsv, test: test.tsv}
features: {kind: bow, ngrams: 2}
model: {hidden: [16]}
train: {epochs: 6, lr: 0.01, batch_size: 16, calibrate: true}
"""
    cfg = config.load_text(text, "r.yaml")
    logs = []
    r = pipeline.run_train(cfg, root, root / "a", log=logs.append)
    cfg_b = config.load_text(text, "r.yaml", ["model.hidden=[]", "train.epochs=1", "train.lr=0.001"])
    pipeline.run_train(cfg_b, root, root / "b")
    return root, r, logs


def test_train_writes_json_and_markdown_reports_and_pictures(trained):
    root, r, logs = trained
    rep = json.loads((root / "a" / "report.json").read_text())
    for h in rep["history"]:
        assert {"epoch", "train_loss", "dev_loss", "dev_accuracy", "dev_macro_f1", "lr", "seconds"} <= set(h)
    assert {"dev", "test"} <= set(rep["final"]) and rep["final"]["test"]["accuracy"] >= 0.9
    cal = rep["calibration"]
    assert cal["temperature"] > 0 and {"dev_ece_before", "dev_ece_after", "test_ece_before"} <= set(cal)
    assert cal["dev_ece_after"] <= cal["dev_ece_before"] + 1e-9
    model, _, _ = checkpoint.load(root / "a")
    assert model.temperature == pytest.approx(cal["temperature"])
    md = (root / "a" / "report.md").read_text()
    for needle in ("training examples: 90", "parameters", "best epoch", "| class |", "Confusion matrix",
                   "Calibration: softmax temperature"):
        assert needle in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert any("pip install 'nlclf[plot]'" in m for m in logs) and rep["pictures"] == []
        return
    for name in ("learning_curves.png", "confusion_matrix.png"):
        raw = (root / "a" / name).read_bytes()
        assert raw[:8] == PNG and len(raw) > 5000
        assert f"]({name})" in md


def test_eval_errors_calibration_plots_and_quality_gate(trained, tmp_path):
    root, _, _ = trained
    p = run("eval", root / "b", root / "test.tsv", "--errors", "3", "--report", tmp_path / "m.json",
            "--plots", tmp_path / "plots", "--fail-under", "accuracy=1")
    assert p.returncode == 7 and "accuracy" in p.stderr and "below --fail-under 1.0" in p.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"micro_avg", "macro_avg", "weighted_avg", "ece", "reliability"} <= set(m)
    assert 0 <= m["ece"] <= 1 and sum(m["reliability"]["count"]) == m["n"]
    errs = m["errors"]
    assert len(errs) == min(3, m["n"] - round(m["accuracy"] * m["n"]))
    assert all(e["label"] != e["predicted"] for e in errs)
    assert [e["proba"] for e in errs] == sorted((e["proba"] for e in errs), reverse=True)
    assert "Most confident mistakes" in p.stdout and "expected calibration error" in p.stdout
    if m.get("pictures"):
        assert (tmp_path / "plots" / "reliability.png").read_bytes()[:8] == PNG
    ok = run("eval", root / "a", root / "test.tsv", "--fail-under", "accuracy=0.5", "--fail-under", "macro_f1=0.5")
    assert ok.returncode == 0, ok.stderr
    bad = run("eval", root / "a", root / "test.tsv", "--fail-under", "speed=3")
    assert bad.returncode == 2 and "--fail-under" in bad.stderr


def test_compare_reports_both_models_and_significance(trained, tmp_path):
    root, _, _ = trained
    p = run("compare", root / "b", root / "a", root / "test.tsv", "--report", tmp_path / "c.json",
            "--resamples", "500")
    assert p.returncode == 0, p.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["b"]["accuracy"] >= c["a"]["accuracy"]
    assert c["mcnemar"]["n"] == c["a"]["n"] and 0 <= c["mcnemar"]["p_exact"] <= 1
    assert c["bootstrap"]["ci_low"] <= c["bootstrap"]["difference"] <= c["bootstrap"]["ci_high"]
    assert "McNemar" in p.stdout and "paired bootstrap" in p.stdout


def test_compare_signs_agree_when_b_is_clearly_better(trained, tmp_path):
    """A is the weak model (one epoch of a linear model), B the trained one: the table, the
    bootstrap line and the JSON all say B − A = acc_B − acc_A > 0, and P(B ≤ A) is small."""
    import re
    root, _, _ = trained
    p = run("compare", root / "b", root / "a", root / "test.tsv", "--report", tmp_path / "c.json",
            "--resamples", "2000")
    assert p.returncode == 0, p.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    margin = c["b"]["accuracy"] - c["a"]["accuracy"]
    assert margin > 0.2, c                                     # B is clearly the better model
    assert c["bootstrap"]["difference"] == pytest.approx(margin) == c["b_minus_a"]["accuracy"]
    assert c["bootstrap"]["accuracy_b"] - c["bootstrap"]["accuracy_a"] == pytest.approx(margin)
    assert c["bootstrap"]["p_value"] < 0.01 and c["bootstrap"]["ci_low"] > 0
    row = next(l for l in p.stdout.splitlines() if l.startswith("| accuracy |"))
    assert float(row.split("|")[4]) == pytest.approx(margin, abs=1e-4)
    line = next(l for l in p.stdout.splitlines() if l.startswith("paired bootstrap"))
    diff = float(re.search(r"B − A = ([+-][0-9.]+)", line).group(1))
    assert diff == pytest.approx(margin, abs=1e-4) and diff > 0
    assert float(re.search(r"P\(B ≤ A\) = ([0-9.e-]+)", line).group(1)) < 0.01
    swapped = run("compare", root / "a", root / "b", root / "test.tsv", "--report", tmp_path / "s.json",
                  "--resamples", "2000")
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["bootstrap"]["difference"] == pytest.approx(-margin) and s["bootstrap"]["p_value"] > 0.99


def test_predict_explain_names_the_telling_words(trained):
    root, _, _ = trained
    p = subprocess.run([sys.executable, "-m", "nlclf.cli", "predict", str(root / "a"), "--explain", "2",
                        "--format", "jsonl"], input="robin eagle owl and some filler\nhammer drill\n",
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(l) for l in p.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["birds", "tools"]
    assert rows[0]["toward"][0][0] in {"robin", "eagle", "owl", "robin eagle", "eagle owl"}
    assert all(score > 0 for _, score in rows[0]["toward"]) and all(s < 0 for _, s in rows[0]["against"])
    tsv = subprocess.run([sys.executable, "-m", "nlclf.cli", "predict", str(root / "a"), "--explain", "2",
                          "--format", "tsv"], input="hammer drill\n", cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert tsv.stdout.split("\t")[0] == "tools" and len(tsv.stdout.split("\t")) == 4


def test_inspect_shows_shape_features_and_unknown_words(trained, tmp_path):
    root, _, _ = trained
    f = tmp_path / "new.txt"
    f.write_text("apple zebra zebra\nowl xylophone\n")
    r = inspection.run_inspect(root / "a", f, top=3)
    assert r["n_parameters"] == sum(int(__import__("numpy").prod(s)) for s in r["parameters"].values())
    assert r["unknown_rate"] == pytest.approx(3 / 5) and r["frequent_unknown"][0] == ("zebra", 2)
    top = r["top_features"]["fruit"][0][0]              # a word, an n-gram, or ~gram: a character n-gram
    fruit = TOPIC_WORDS["fruit"]
    assert (any(top[1:] in f"<{w}>" for w in fruit) if top.startswith("~")
            else any(w in fruit for w in top.split())), top
    p = run("inspect", root / "a", "--data", f)
    assert p.returncode == 0 and "unknown words" in p.stdout and "fruit:" in p.stdout
    q = run("inspect", root / "a", "--word", "apple")
    assert q.returncode != 0 and "embedding model" in q.stderr


def test_nearest_neighbours_in_an_embedding_model(tmp_path):
    write_data(tmp_path, n=30)
    cfg = config.load_text("data: {train: train.tsv, dev: dev.tsv}\nfeatures: {kind: embed_mean, embed_dim: 8}\n"
                           "model: {hidden: []}\ntrain: {epochs: 5, lr: 0.02, batch_size: 8}\n", "e.yaml")
    pipeline.run_train(cfg, tmp_path, tmp_path / "m")
    r = inspection.run_inspect(tmp_path / "m", words=["apple", "nosuchword"], top=3)
    assert len(r["neighbours"]["apple"]) == 3 and r["neighbours"]["nosuchword"] is None
    assert all(-1 <= c <= 1 for _, c in r["neighbours"]["apple"])


TOPIC_WORDS = {"fruit": "apple banana cherry grape mango pear plum".split()}

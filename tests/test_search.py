"""Cross-validation and hyperparameter search: folds, spaces, failing trials, a real Dask cluster."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nlclf import config, search
from nlclf.errors import ConfigError

from conftest import write_data

REPO = Path(__file__).resolve().parent.parent


def small_cfg(tmp_path, **over):
    write_data(tmp_path, n=12)
    text = """
data: {train: train.tsv, dev: dev.tsv}
features: {kind: bow, ngrams: 1, min_count: 1}   # a tiny set: every word counts
model: {hidden: [8]}
train: {epochs: 10, lr: 0.03, batch_size: 8, patience: 0}
"""
    return config.load_text(text, "t.yaml", [f"{k}={v}" for k, v in over.items()])


def test_same_seed_same_folds_and_stratified():
    labels = ["a"] * 30 + ["b"] * 20
    f1, f2, f3 = search.folds(labels, 5, 1), search.folds(labels, 5, 1), search.folds(labels, 5, 2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(f1, f2))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(f1, f3))
    for _, test in f1:
        assert sorted(labels[i] for i in test).count("a") == 6


def test_cv_report(tmp_path):
    cfg = small_cfg(tmp_path)
    r = search.run_cv(cfg, 3, seeds=2, jobs=2, root=tmp_path)
    assert len(r["runs"]) == 6 and r["seeds"] == [13, 14]
    accs = [x["accuracy"] for x in r["runs"]]
    assert r["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert r["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert r["accuracy"]["mean"] > 0.8
    assert sum(x["n_test"] for x in r["runs"]) == 2 * r["n"]
    again = search.run_cv(cfg, 3, seeds=1, jobs=1, root=tmp_path)
    assert [x["accuracy"] for x in again["runs"]] == accs[:3]          # same seed, same result


def test_space_parsing_and_sampling(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("train.lr: {loguniform: [0.001, 0.1]}\nmodel.hidden: [[4], [8]]\n"
                 "train.batch_size: {int: [4, 16]}\nmodel.dropout: {uniform: [0, 0.5]}\n")
    space = search.load_space(p)
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = search.sample(space, rng)
        assert 0.001 <= s["train.lr"] <= 0.1 and s["model.hidden"] in ([4], [8])
        assert 4 <= s["train.batch_size"] <= 16 and isinstance(s["train.batch_size"], int)
    assert search.grid(space) is None
    assert len(search.grid({"a": ("choice", [1, 2]), "b": ("choice", [3, 4, 5])})) == 6
    p.write_text("train.lr: {loguniform: [0, 1]}\n")
    with pytest.raises(ConfigError, match="train.lr"):
        search.load_space(p)


def test_bad_key_in_space_is_a_config_error(tmp_path):
    cfg = small_cfg(tmp_path)
    with pytest.raises(ConfigError, match="train.lrr"):
        search.run_tune(cfg, {"train.lrr": ("choice", [0.1])}, trials=1, jobs=1, root=tmp_path)


def test_grid_search_records_failing_trials_and_goes_on(tmp_path):
    cfg = small_cfg(tmp_path, **{"features.kind": "embed_mean", "features.embed_dim": 4})
    space = {"features.pretrained": ("choice", ["", "missing-vectors.txt"]), "train.lr": ("choice", [0.02])}
    r = search.run_tune(cfg, space, trials=9, jobs=2, root=tmp_path)
    assert len(r["trials"]) == 2
    failed = [t for t in r["trials"] if t["score"] is None]
    assert len(failed) == 1 and "missing-vectors.txt" in failed[0]["error"]
    assert r["best"]["settings"]["features.pretrained"] == "" and r["best"]["score"] > 0.8
    assert config.from_dict(r["best_config"]).seed == r["best"]["seed"]


def test_trials_are_reproducible_from_their_seed(tmp_path):
    cfg = small_cfg(tmp_path)
    space = {"train.lr": ("loguniform", [0.005, 0.05])}
    a = search.run_tune(cfg, space, trials=2, jobs=1, root=tmp_path)
    b = search.run_tune(cfg, space, trials=2, jobs=2, root=tmp_path)
    strip = lambda r: [(t["trial"], t["settings"], t["seed"], t["score"]) for t in r["trials"]]
    assert strip(a) == strip(b)


def test_successive_halving_stops_weak_trials_early(tmp_path):
    cfg = small_cfg(tmp_path, **{"train.epochs": 9})
    r = search.run_tune(cfg, {"train.lr": ("loguniform", [1e-5, 0.05])}, trials=9, jobs=2, halving=True,
                        root=tmp_path)
    assert r["rungs"] == [1, 3, 9]
    epochs = sorted(t["epochs"] for t in r["trials"])
    assert epochs.count(1) == 6 and epochs.count(3) == 2 and epochs.count(9) == 1
    assert r["best"]["epochs"] == 9


def test_tune_on_a_real_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg = small_cfg(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster:
        r = search.run_tune(cfg, {"train.lr": ("choice", [0.01, 0.03])}, scheduler=cluster.scheduler_address,
                            root=tmp_path)
    assert len(r["trials"]) == 2 and all(t["score"] is not None for t in r["trials"])
    local = search.run_tune(cfg, {"train.lr": ("choice", [0.01, 0.03])}, jobs=2, root=tmp_path)
    assert sorted(t["score"] for t in r["trials"]) == sorted(t["score"] for t in local["trials"])


def test_tune_and_cv_commands_write_their_files(tmp_path):
    write_data(tmp_path, n=12)
    (tmp_path / "c.yaml").write_text("data: {train: train.tsv, dev: dev.tsv}\nmodel: {hidden: [8]}\n"
                                     "train: {epochs: 3, lr: 0.02}\n")
    (tmp_path / "s.yaml").write_text("train.lr: [0.01, 0.03]\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "nlclf.cli", *a, "--data-root", str(tmp_path), "-q"],
                                    cwd=REPO, capture_output=True, text=True, timeout=300)
    p = run("tune", str(tmp_path / "c.yaml"), "--space", str(tmp_path / "s.yaml"), "--jobs", "2",
            "--out", str(tmp_path / "tune"))
    assert p.returncode == 0, p.stderr
    assert {"leaderboard.md", "leaderboard.json", "best.yaml"} <= {f.name for f in (tmp_path / "tune").iterdir()}
    assert config.load(tmp_path / "tune" / "best.yaml").train.lr in (0.01, 0.03)
    p = run("cv", str(tmp_path / "c.yaml"), "--folds", "3", "--out", str(tmp_path / "cv"))
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert len(r["runs"]) == 3 and "accuracy 0." in p.stdout

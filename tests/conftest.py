"""What the tests share: tiny data sets written on the fly, the CLI's environment, and the tiers.

Tests are in two tiers. ``make test-fast`` (``pytest -m "not slow"``) runs the math, features,
formats, config and checkpoint tests in seconds; ``make test`` runs everything, including the
tests marked slow below: real CLI subprocesses, Hypothesis searches, forked workers, Dask.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from nlclf import config

SLOW_MODULES = {"test_cli", "test_bad_inputs", "test_promises", "test_conventions", "test_resume",
                "test_reports", "test_search", "test_properties", "test_parallel", "test_ensemble",
                "test_predict_files", "test_serve"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.split(".")[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_csr(rng, n, v, density=0.4, dtype=np.float64, repeat=True):
    """A random (N, V) CSR batch of positive counts, every row non-empty."""
    dense = (rng.random((n, v)) < density) * rng.integers(1, 4 if repeat else 2, size=(n, v))
    dense[np.arange(n), rng.integers(0, v, size=n)] += 1
    return sp.csr_matrix(dense.astype(dtype))


# --- the CLI's environment and small data sets -------------------------------------------

REPO = Path(__file__).resolve().parent.parent
WORKERS = 6
TIMEOUT = 120          # seconds: a hung command fails its test instead of hanging the run

ENV = {k: v for k, v in os.environ.items() if k not in ("NLCLF_DATA_ROOT", "PYTHONUNBUFFERED")}
# One BLAS thread per process: several CLI processes run at once on few cores.
ENV.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

KEYWORDS = {
    "sport": ["goal", "match", "team", "coach", "league", "score", "stadium", "player"],
    "food": ["pasta", "sauce", "oven", "recipe", "garlic", "bread", "cheese", "soup"],
    "tech": ["laptop", "compiler", "server", "python", "kernel", "router", "database", "cpu"],
}
LABELS = sorted(KEYWORDS)
FILLER = ["the", "a", "today", "really", "new", "very", "some", "our"]

# Predict input: one empty line in the middle; None = any known label will do.
PREDICT_LINES = [("goal match team", "sport"), ("", None), ("pasta sauce oven", "food"),
                 ("laptop compiler server", "tech"), ("the stadium player coach", "sport"),
                 ("bread cheese soup", "food"), ("kernel router database", "tech")]
PREDICT_TEXT = "".join(t + "\n" for t, _ in PREDICT_LINES)

BASE_CONFIG = {
    "seed": 7,
    "data": {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
    "features": {"kind": "bow", "min_count": 1},
    "model": {"hidden": [16], "activation": "relu"},
    "train": {"optimizer": "adam", "lr": 0.05, "batch_size": 8, "epochs": 8, "patience": 0},
    "output": {"dir": "runs/test-cli-must-not-be-used"},
}


def show(r: subprocess.CompletedProcess) -> str:
    cmd = " ".join(str(a) for a in r.args[2:])
    return (f"\n$ {cmd}\nexit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}"
            f"\n--- stderr\n{r.stderr[-3000:]}")


def assert_ok(r):
    assert r.returncode == 0, show(r)
    assert "Traceback" not in r.stderr, show(r)


def texts_for(label: str, n: int, rng: random.Random) -> list:
    out = []
    for _ in range(n):
        words = rng.sample(KEYWORDS[label], 3) + rng.sample(FILLER, 2)
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def write_tsv(path: Path, n_per_class: int, seed: int, labels=LABELS) -> Path:
    rng = random.Random(seed)
    rows = [(lab, t) for lab in labels for t in texts_for(lab, n_per_class, rng)]
    rng.shuffle(rows)
    path.write_text("".join(f"{lab}\t{t}\n" for lab, t in rows), encoding="utf-8")
    return path


def cfg_text(**sections) -> str:
    """BASE_CONFIG as YAML with sections updated (dicts merged, anything else replaced)."""
    cfg = json.loads(json.dumps(BASE_CONFIG))
    for name, value in sections.items():
        cfg[name] = dict(cfg[name], **value) if isinstance(value, dict) else value
    return yaml.safe_dump(cfg, sort_keys=False)


TOPICS = {"fruit": "apple banana cherry grape mango pear plum",
          "tools": "hammer saw drill wrench chisel pliers level",
          "birds": "robin eagle sparrow finch owl heron crow"}


def write_data(root: Path, n=30, seed=0):
    rng = np.random.default_rng(seed)
    for split, size in (("train", n), ("dev", n // 3), ("test", n // 3)):
        lines = []
        for i in range(size):
            for label, words in TOPICS.items():
                w = words.split()
                lines.append(f"{label}\t{' '.join(rng.choice(w, size=rng.integers(2, 7)))} and some filler")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def cfg_for(kind, tmp_path, **features):
    write_data(tmp_path)
    text = f"""
data: {{train: train.tsv, dev: dev.tsv, test: test.tsv}}
features: {{kind: {kind}, embed_dim: 8, max_tokens: 6}}
model: {{hidden: [16]}}
train: {{epochs: 8, lr: 0.01, batch_size: 16}}
"""
    over = [f"features.{k}={v}" for k, v in features.items()]
    return config.load_text(text, "t.yaml", over)

"""Accuracy of peer classifiers (TF-IDF + logistic regression, fastText) on the benchmark sets.

Usage::

    python bench/peers_accuracy.py --data-root ../shared/data --seeds 0 1 2 \
        --out bench/out/peers_accuracy.json [--sets sst5 trec] [--solver liblinear]

Splits come from ``splits.protocol_splits`` (the same ones nlclf's rows use).  For each
set and seed the figure is test accuracy (for mr: mean over the 10 folds); the JSON holds
``{set: {peer: {"mean", "std", "per_seed"}}}`` in percent, ``std`` being the sample
standard deviation over seeds.  A Markdown table goes to stdout.

* ``tfidf_lr``: word 1-2-gram TF-IDF, LogisticRegression with C chosen on dev (the model
  fitted on train with the best C is the one scored on test).  Default solver liblinear
  (one-vs-rest for >2 classes); ``--solver lbfgs`` gives multinomial LR.
* ``fasttext``: ``train_supervised(epoch=25, lr=0.5, wordNgrams=2, thread=2, seed=seed)`` on
  train, fixed hyperparameters (dev unused).  Skipped with a note if ``fasttext`` is missing.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from splits import SETS, protocol_splits
from nlclf.report import table

try:
    import fasttext
except ImportError:  # any flavour: fasttext-numpy2, fasttext-wheel, fasttext
    fasttext = None

C_GRID = (0.25, 0.5, 1, 2, 4, 8, 16, 32)


def accuracy(gold, pred):
    """Fraction of positions where ``pred`` equals ``gold``."""
    return float(np.mean(np.asarray(gold) == np.asarray(pred)))


def tfidf_lr(train, dev, test, seed, solver="liblinear"):
    """TF-IDF + LogisticRegression, C picked on dev; return (test accuracy, chosen C)."""
    vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", sublinear_tf=True, min_df=1)
    x_train = vec.fit_transform(train[1])
    x_dev, x_test = vec.transform(dev[1]), vec.transform(test[1])
    best = (-1.0, None, None)  # (dev accuracy, C, model); ties keep the smaller C
    for c in C_GRID:
        model = LogisticRegression(C=c, solver=solver, max_iter=10000, random_state=seed)
        if solver == "liblinear" and len(set(train[0])) > 2:
            model = OneVsRestClassifier(model)  # liblinear itself is binary only
        model.fit(x_train, train[0])
        dev_acc = accuracy(dev[0], model.predict(x_dev))
        if dev_acc > best[0]:
            best = (dev_acc, c, model)
    return accuracy(test[0], best[2].predict(x_test)), best[1]


def fasttext_clf(train, dev, test, seed):
    """fastText supervised with fixed hyperparameters (dev unused); return test accuracy."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.writelines(f"__label__{y} {x}\n" for y, x in zip(*train))
    try:
        model = fasttext.train_supervised(
            f.name, epoch=25, lr=0.5, wordNgrams=2, dim=100, thread=2, seed=seed, verbose=0)
    finally:
        os.unlink(f.name)
    pred = [labels[0][len("__label__"):] for labels in model.predict(test[1], k=1)[0]]
    return accuracy(test[0], pred)


def summarise(per_seed):
    """Mean, sample std and per-seed values, all in percent rounded to 2 decimals."""
    a = 100 * np.asarray(per_seed)
    std = a.std(ddof=1) if len(a) > 1 else 0.0
    return {"mean": round(a.mean(), 2), "std": round(float(std), 2),
            "per_seed": [round(v, 2) for v in a.tolist()]}


def run(sets, data_root, seeds, solver):
    """Score every peer on every set and seed; return the result dict."""
    peers = {"tfidf_lr": lambda tr, dv, te, s: tfidf_lr(tr, dv, te, s, solver)[0]}
    if fasttext is not None:
        peers["fasttext"] = fasttext_clf
    results = {}
    for name in sets:
        scores = {peer: [] for peer in peers}
        for seed in seeds:
            folds = list(protocol_splits(name, data_root, seed))
            for peer, fn in peers.items():
                t0 = time.time()
                scores[peer].append(np.mean([fn(*fold, seed) for fold in folds]))
                print(f"{name} seed={seed} {peer}: {100 * scores[peer][-1]:.2f}% "
                      f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
        results[name] = {peer: summarise(s) for peer, s in scores.items()}
    return results


def markdown(results):
    """Markdown table: one row per set, one column per peer, 'mean ± std'."""
    peers = sorted({p for r in results.values() for p in r})
    rows = [[name, *(f"{r[p]['mean']:.2f} ± {r[p]['std']:.2f}" if p in r else "–" for p in peers)]
            for name, r in results.items()]
    return "\n".join(table(["set", *peers], rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--solver", choices=["liblinear", "lbfgs"], default="liblinear")
    ap.add_argument("--out", default="bench/out/peers_accuracy.json")
    args = ap.parse_args()

    t0 = time.time()
    results = run(args.sets, args.data_root, args.seeds, args.solver)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nTest accuracy %, mean ± std over seeds {args.seeds}; "
          f"LR solver {args.solver}; {time.time() - t0:.0f}s.")
    if fasttext is None:
        print("Note: no `fasttext` module could be imported; fastText rows skipped "
              "(pip install fasttext-numpy2).")


if __name__ == "__main__":
    main()

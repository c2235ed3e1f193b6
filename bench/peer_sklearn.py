"""scikit-learn peer: MLPClassifier(256 ReLU) on sparse word counts, one epoch.

Features: ``CountVectorizer(token_pattern=r"\\S+", lowercase=False)`` fitted on the
training texts (``featurize_seconds``: fit_transform of the training texts only).
``train_seconds`` is ``MLPClassifier(max_iter=1).fit``. Prints one JSON line.

    python bench/peer_sklearn.py --train bench/out/train.tsv --dev bench/out/dev.tsv \\
        --optimizer adam --max-docs 100000
"""
import argparse
import json
import time
import warnings
from itertools import islice

from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.neural_network import MLPClassifier

DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}


def read_tsv(path, max_docs=None):
    """Return ``(labels, texts)`` of the first ``max_docs`` lines of a TSV file."""
    with open(path, encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split("\t", 1) for line in islice(f, max_docs)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def main(argv=None):
    """Train one epoch and print the JSON result line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    p.add_argument("--lr", type=float, help="default: 0.01 for sgd, 1e-3 for adam")
    p.add_argument("--max-docs", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]

    labels, texts = read_tsv(args.train, args.max_docs)
    dev_labels, dev_texts = read_tsv(args.dev)

    t0 = time.perf_counter()
    vec = CountVectorizer(token_pattern=r"\S+", lowercase=False)
    X = vec.fit_transform(texts)
    featurize_seconds = time.perf_counter() - t0

    clf = MLPClassifier(hidden_layer_sizes=(256,), batch_size=args.batch, max_iter=1,
                        solver=args.optimizer, learning_rate_init=lr,
                        shuffle=True, random_state=args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, labels)
    train_seconds = time.perf_counter() - t0

    tokens = int(X.sum())
    dev_acc = clf.score(vec.transform(dev_texts), dev_labels)
    print(json.dumps({
        "peer": "sklearn-mlp", "variant": "sparse-input", "optimizer": args.optimizer,
        "lr": lr, "batch": args.batch, "docs": X.shape[0], "tokens": tokens,
        "vocab": X.shape[1],
        "featurize_seconds": round(featurize_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "docs_per_second": round(X.shape[0] / train_seconds, 1),
        "tokens_per_second": round(tokens / train_seconds, 1),
        "dev_accuracy": round(dev_acc, 4),
    }))


if __name__ == "__main__":
    main()

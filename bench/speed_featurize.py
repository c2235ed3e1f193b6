"""nlclf's featurizer alone: a bag of unigrams over the texts of a TSV file, one JSON line.

Reads the texts of ``--train`` (``label<TAB>text``) into a list (``read_seconds``), then
times ``features.make(FeatureSpec(tokenizer="whitespace", lowercase=False, ngrams=1,
weighting="count", min_count=1, char_ngrams=(), normalize=False)).fit_transform``
on them (vocabulary pass + counts to CSR: ``seconds``). Tokens are ``X.sum()`` (every
token is in the vocabulary, so that is the whitespace token count). Run it under
``bench/measure.py`` for its peak memory, which includes the texts held in the list.

    python bench/speed_featurize.py --train bench/out/train.tsv [--workers 2]
"""
import argparse
import json
import time

from nlclf.config import FeatureSpec
from nlclf.features import make as make_featurizer


def main(argv=None):
    """Featurize and print the JSON result line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--workers", type=int, default=2,
                   help="featurizer worker processes (features.workers; 1: none)")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    with open(args.train, encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in f]
    read_seconds = time.perf_counter() - t0

    spec = FeatureSpec(tokenizer="whitespace", lowercase=False, ngrams=1, weighting="count", min_count=1,
                       char_ngrams=(), normalize=False, workers=args.workers)
    t0 = time.perf_counter()
    X = make_featurizer(spec).fit_transform(texts)
    seconds = time.perf_counter() - t0
    tokens = int(X.sum())
    print(json.dumps({
        "peer": "nlclf-featurizer", "docs": X.shape[0], "tokens": tokens,
        "vocab": X.shape[1], "nnz": int(X.nnz), "workers": args.workers,
        "read_seconds": round(read_seconds, 3), "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1),
        "docs_per_second": round(X.shape[0] / seconds, 1),
    }))


if __name__ == "__main__":
    main()

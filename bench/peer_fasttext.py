"""fastText peer: supervised softmax classifier, dim 256, one epoch, 2 threads.

Train mode converts the TSV to fastText's ``__label__X text`` format in a temporary
file (``featurize_seconds``), trains (``train_seconds``: ``train_supervised`` only),
saves the model to ``--model-out`` and scores the dev set:

    python bench/peer_fasttext.py --train bench/out/train.tsv --dev bench/out/dev.tsv \\
        --model-out bench/out/ft.bin

Predict mode is fastText's prediction reference: it labels every line of a text
file (labels written to /dev/null) and reports docs and seconds (predict only,
model load reported apart):

    python bench/peer_fasttext.py --predict bench/out/predict.txt --model bench/out/ft.bin

Each mode prints one JSON line.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from itertools import islice

import fasttext

PREFIX = "__label__"


def to_fasttext(tsv, out, max_docs=None):
    """Write ``tsv`` lines as ``__label__X text``; return (docs, tokens)."""
    docs = tokens = 0
    with open(tsv, encoding="utf-8") as f:
        for line in islice(f, max_docs):
            label, text = line.rstrip("\n").split("\t", 1)
            out.write(f"{PREFIX}{label} {text}\n")
            docs += 1
            tokens += text.count(" ") + 1
    out.flush()
    return docs, tokens


def train(args):
    """Train, save, score on dev; return the result dict."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8",
                                     dir=args.tmp_dir) as tmp:
        t0 = time.perf_counter()
        docs, tokens = to_fasttext(args.train, tmp, args.max_docs)
        featurize_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = fasttext.train_supervised(
            input=tmp.name, dim=256, epoch=1, thread=args.threads, lr=args.lr,
            wordNgrams=1, minCount=1, loss="softmax", seed=args.seed, verbose=0)
        train_seconds = time.perf_counter() - t0
    model.save_model(args.model_out)
    with open(args.dev, encoding="utf-8") as f:
        gold, texts = zip(*(l.rstrip("\n").split("\t", 1) for l in f))
    pred, _ = model.predict(list(texts))
    dev_acc = sum(p[0] == PREFIX + g for p, g in zip(pred, gold)) / len(gold)
    return {
        "peer": "fasttext", "variant": "softmax", "optimizer": "sgd", "lr": args.lr,
        "batch": 1, "threads": args.threads, "docs": docs, "tokens": tokens,
        "vocab": len(model.words),
        "featurize_seconds": round(featurize_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "docs_per_second": round(docs / train_seconds, 1),
        "tokens_per_second": round(tokens / train_seconds, 1),
        "dev_accuracy": round(dev_acc, 4),
    }


def predict(args):
    """Label every line of ``args.predict``; return the timing dict."""
    t0 = time.perf_counter()
    model = fasttext.load_model(args.model)
    load_seconds = time.perf_counter() - t0
    with open(args.predict, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    t0 = time.perf_counter()
    pred, _ = model.predict(texts)
    with open(os.devnull, "w") as sink:
        sink.write("\n".join(p[0][len(PREFIX):] for p in pred))
    seconds = time.perf_counter() - t0
    return {"peer": "fasttext", "mode": "predict", "docs": len(texts),
            "load_seconds": round(load_seconds, 3), "seconds": round(seconds, 3),
            "docs_per_second": round(len(texts) / seconds, 1)}


def main(argv=None):
    """Dispatch to train or predict mode and print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train")
    p.add_argument("--dev")
    p.add_argument("--model-out", default="bench/out/fasttext.bin")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-docs", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp-dir", help="where the converted training file goes")
    p.add_argument("--predict", help="text file to label (predict mode)")
    p.add_argument("--model", help="model to load (predict mode)")
    args = p.parse_args(argv)
    if args.predict:
        if not args.model:
            sys.exit("--predict needs --model")
        result = predict(args)
    elif args.train and args.dev:
        result = train(args)
    else:
        sys.exit("give --train and --dev, or --predict and --model")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The peers of ``bench/scale.py``, one whole process each (read → train → save), timed by it.

    python bench/scale_peers.py fasttext --train T.tsv --dev D.tsv --model-out M.bin
    python bench/scale_peers.py tfidf --train T.tsv --dev D.tsv --model-out M.pkl
    python bench/scale_peers.py predict-fasttext --model M.bin      # one line from stdin
    python bench/scale_peers.py predict-tfidf --model M.pkl

fastText is the recipe of the fastText paper's text classification runs: ``wordNgrams 2,
epoch 5, lr 0.5, dim 100, thread 2`` (softmax, minCount 1, its default 2M buckets).
TF-IDF + linear is scikit-learn's ``TfidfVectorizer`` (word 1-2-grams, min_df 2, sublinear
tf, float32) and ``SGDClassifier`` (hinge loss, alpha 1e-6, 5 epochs, averaged): a linear
SVM that, unlike LinearSVC or LogisticRegression, finishes on a million documents in
minutes. Training modes print one JSON line: featurize_seconds (fastText: writing its
input format; TF-IDF: fit_transform), train_seconds, dev_accuracy.
"""
import argparse
import json
import pickle
import sys
import tempfile
import time

PREFIX = "__label__"


def read_tsv(path):
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            labels.append(label)
            texts.append(text)
    return labels, texts


def fasttext_train(args):
    import fasttext
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", dir=args.tmp_dir) as tmp:
        with open(args.train, encoding="utf-8") as f:
            for line in f:
                label, text = line.rstrip("\n").split("\t", 1)
                tmp.write(f"{PREFIX}{label} {text}\n")
        tmp.flush()
        featurize = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = fasttext.train_supervised(input=tmp.name, wordNgrams=2, epoch=5, lr=0.5, dim=100, thread=2,
                                          minCount=1, loss="softmax", seed=0, verbose=0)
        train = time.perf_counter() - t0
    model.save_model(args.model_out)
    gold, texts = read_tsv(args.dev)
    pred, _ = model.predict(texts)
    acc = sum(p[0] == PREFIX + g for p, g in zip(pred, gold)) / len(gold)
    return {"featurize_seconds": round(featurize, 2), "train_seconds": round(train, 2), "dev_accuracy": round(acc, 4)}


def tfidf_train(args):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    import numpy as np
    labels, texts = read_tsv(args.train)
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
    X = vec.fit_transform(texts)
    featurize = time.perf_counter() - t0
    del texts
    t0 = time.perf_counter()
    clf = SGDClassifier(loss="hinge", alpha=1e-6, max_iter=5, tol=None, average=True, random_state=0)
    clf.fit(X, labels)
    train = time.perf_counter() - t0
    vec.stop_words_ = None                                  # the pruned terms are not needed to predict
    with open(args.model_out, "wb") as f:
        pickle.dump((vec, clf), f, protocol=pickle.HIGHEST_PROTOCOL)
    gold, dev = read_tsv(args.dev)
    acc = float(np.mean(clf.predict(vec.transform(dev)) == np.array(gold)))
    return {"featurize_seconds": round(featurize, 2), "train_seconds": round(train, 2), "dev_accuracy": round(acc, 4),
            "features": len(vec.vocabulary_)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("fasttext", "tfidf", "predict-fasttext", "predict-tfidf"))
    p.add_argument("--train")
    p.add_argument("--dev")
    p.add_argument("--model-out")
    p.add_argument("--model")
    p.add_argument("--tmp-dir")
    args = p.parse_args(argv)
    if args.mode == "fasttext":
        print(json.dumps(fasttext_train(args)))
    elif args.mode == "tfidf":
        print(json.dumps(tfidf_train(args)))
    elif args.mode == "predict-fasttext":
        import fasttext
        model = fasttext.load_model(args.model)
        for line in sys.stdin:
            print(model.predict(line.rstrip("\n"))[0][0][len(PREFIX):])
    else:
        with open(args.model, "rb") as f:
            vec, clf = pickle.load(f)
        for line in sys.stdin:
            print(clf.predict(vec.transform([line.rstrip("\n")]))[0])


if __name__ == "__main__":
    main()

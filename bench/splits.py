"""Dataset loading and the fixed train/dev/test protocol shared by all benchmark rows.

Each data set is a folder of ``label<TAB>text`` files (see ``<data_root>/README.md``).
``protocol_splits`` yields ``(train, dev, test)`` triples, each a ``(labels, texts)``
pair of lists, so that every classifier is trained, selected and scored on identical data:

* sst5, sst2 -- the given train / dev / test files (one triple);
* trec       -- dev is a stratified 10 % of train (one triple);
* mr         -- 10-fold stratified CV over all.tsv; in each fold dev is a stratified
                10 % of that fold's training part (ten triples).
"""
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

SETS = ("sst5", "sst2", "trec", "mr")


def load_tsv(path):
    """Read a ``label<TAB>text`` file; return ``(labels, texts)`` as lists of str."""
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                label, text = line.split("\t", 1)
                labels.append(label)
                texts.append(text)
    return labels, texts


def _take(data, idx):
    """Subset a ``(labels, texts)`` pair by an index array."""
    return [data[0][i] for i in idx], [data[1][i] for i in idx]


def _hold_out_dev(data, seed):
    """Split ``data`` into (train 90 %, dev 10 %), stratified by label."""
    idx = np.arange(len(data[0]))
    tr, dev = train_test_split(idx, test_size=0.1, stratify=data[0], random_state=seed)
    return _take(data, tr), _take(data, dev)


def protocol_splits(name, data_root, seed):
    """Yield the ``(train, dev, test)`` triples of data set ``name`` for ``seed``."""
    root = Path(data_root) / name
    if name in ("sst5", "sst2"):
        # Fixed files: the seed does not change the split, only the models.
        yield tuple(load_tsv(root / f"{part}.tsv") for part in ("train", "dev", "test"))
    elif name == "trec":
        train, dev = _hold_out_dev(load_tsv(root / "train.tsv"), seed)
        yield train, dev, load_tsv(root / "test.tsv")
    elif name == "mr":
        data = load_tsv(root / "all.tsv")
        folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=seed)
        for rest, test in folds.split(np.zeros(len(data[0])), data[0]):
            train, dev = _hold_out_dev(_take(data, rest), seed)
            yield train, dev, _take(data, test)
    else:
        raise ValueError(f"unknown data set {name!r}; expected one of {SETS}")

"""Dataset loading and the fixed train/dev/test protocol shared by all benchmark rows.

Each data set is a folder of ``label<TAB>text`` files (see ``<data_root>/README.md``).
``protocol_splits`` yields ``(train, dev, test)`` triples, each a ``(labels, texts)``
pair of lists, so that every classifier is trained, selected and scored on identical data:

* sst5, sst2 -- the given train / dev / test files (one triple);
* trec       -- dev is a stratified 10 % of train (one triple);
* mr         -- 10-fold stratified CV over all.tsv; in each fold dev is a stratified
                10 % of that fold's training part (ten triples).

The reading and the splits are nlclf's own (``data.read_labelled``, ``data.stratified_split``,
``search.folds``): what ``nlclf train`` holds out as dev and ``nlclf cv`` folds is exactly
what the benchmark does.
"""
from pathlib import Path

import numpy as np

from nlclf import data, search
from nlclf.config import DataConfig

SETS = ("sst5", "sst2", "trec", "mr")
TSV = DataConfig(format="tsv")
DEV_FRACTION = 0.1


def load_tsv(path):
    """Read a ``label<TAB>text`` file; return ``(labels, texts)`` as lists of str."""
    return data.read_labelled(path, TSV)


def _take(pair, idx):
    """Subset a ``(labels, texts)`` pair by an index array."""
    return [pair[0][i] for i in idx], [pair[1][i] for i in idx]


def _hold_out_dev(pair, seed):
    """Split ``pair`` into (train 90 %, dev 10 %), stratified by label, as nlclf train does."""
    is_dev = data.stratified_split(pair[0], DEV_FRACTION, seed)
    return _take(pair, np.flatnonzero(~is_dev)), _take(pair, np.flatnonzero(is_dev))


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
        pair = load_tsv(root / "all.tsv")
        for rest, test in search.folds(pair[0], 10, seed):
            train, dev = _hold_out_dev(_take(pair, rest), seed)
            yield train, dev, _take(pair, test)
    else:
        raise ValueError(f"unknown data set {name!r}; expected one of {SETS}")

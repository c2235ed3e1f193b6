"""PyTorch peer: bag of words -> 256 ReLU -> softmax, one epoch, CPU.

Model: ``EmbeddingBag(V, 256, mode="sum")`` plus a bias, ReLU, ``Linear(256, C)``,
cross-entropy. The vocabulary is every token of the training documents
(``str.split``); unknown dev tokens are dropped.

Timing: ``featurize_seconds`` covers the training documents only (file reading
excluded): vocabulary, flat token-id array, offsets, and the epoch's one shuffle
(documents are laid out in shuffled order so each batch is a contiguous slice).
``train_seconds`` is the training loop only. Prints one JSON line.

    python bench/peer_torch.py --train bench/out/train.tsv --dev bench/out/dev.tsv \\
        --batch 64 --optimizer sgd --sparse --max-docs 200000
"""
import argparse
import json
import time
from array import array
from itertools import islice

import numpy as np
import torch
from torch import nn

HIDDEN = 256
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}


def read_tsv(path, max_docs=None):
    """Return ``(labels, texts)`` of the first ``max_docs`` lines of a TSV file."""
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in islice(f, max_docs):
            label, text = line.rstrip("\n").split("\t", 1)
            labels.append(label)
            texts.append(text)
    return labels, texts


def featurize(texts, vocab, grow):
    """Map texts to (flat int64 token ids, int64 lengths). Adds new tokens to
    ``vocab`` if ``grow``, otherwise drops them."""
    ids, lens = array("q"), array("q")
    if grow:
        get = vocab.setdefault
        for text in texts:
            toks = text.split()
            lens.append(len(toks))
            ids.extend([get(t, len(vocab)) for t in toks])
    else:
        for text in texts:
            row = [vocab[t] for t in text.split() if t in vocab]
            lens.append(len(row))
            ids.extend(row)
    return np.frombuffer(ids, np.int64), np.frombuffer(lens, np.int64)


def permute_docs(ids, lens, perm):
    """Reorder documents by ``perm``; return (flat ids, offsets of length n+1)."""
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    new_lens = lens[perm]
    new_off = np.concatenate([[0], np.cumsum(new_lens)])
    src = np.repeat(starts[perm] - new_off[:-1], new_lens) + np.arange(new_off[-1])
    return ids[src], new_off


class BagMLP(nn.Module):
    """Sum of word embeddings + bias -> ReLU -> linear scores."""

    def __init__(self, vocab_size, classes, sparse):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, HIDDEN, mode="sum", sparse=sparse)
        # Glorot uniform, as for a dense V x 256 layer (scikit-learn's MLP init);
        # the default N(0, 1) makes a 54-token sum saturate.
        nn.init.xavier_uniform_(self.bag.weight)
        self.bias = nn.Parameter(torch.zeros(HIDDEN))
        self.out = nn.Linear(HIDDEN, classes)

    def forward(self, ids, offsets):
        """Scores for the bags given by flat ``ids`` and start ``offsets``."""
        return self.out(torch.relu(self.bag(ids, offsets) + self.bias))


def make_optimizers(model, name, lr, sparse):
    """One optimizer, or SparseAdam for the bag + Adam for the rest."""
    if name == "sgd":
        return [torch.optim.SGD(model.parameters(), lr=lr)]
    if not sparse:
        return [torch.optim.Adam(model.parameters(), lr=lr)]
    rest = [p for n, p in model.named_parameters() if not n.startswith("bag.")]
    return [torch.optim.SparseAdam(list(model.bag.parameters()), lr=lr),
            torch.optim.Adam(rest, lr=lr)]


@torch.no_grad()
def accuracy(model, ids, lens, y, batch=4096):
    """Fraction of documents whose top score is the gold class."""
    off = np.concatenate([[0], np.cumsum(lens)])
    ids_t, hits = torch.from_numpy(ids), 0
    for s in range(0, len(lens), batch):
        e = min(s + batch, len(lens))
        o = torch.from_numpy(off[s:e] - off[s])
        pred = model(ids_t[off[s]:off[e]], o).argmax(1).numpy()
        hits += int((pred == y[s:e]).sum())
    return hits / len(lens)


def main(argv=None):
    """Train one epoch and print the JSON result line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--sparse", action="store_true")
    p.add_argument("--lr", type=float, help="default: 0.1 for sgd, 1e-3 for adam")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-docs", type=int)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    labels, texts = read_tsv(args.train, args.max_docs)
    dev_labels, dev_texts = read_tsv(args.dev)

    t0 = time.perf_counter()
    vocab = {}
    ids, lens = featurize(texts, vocab, grow=True)
    classes = sorted(set(labels))
    cidx = {c: i for i, c in enumerate(classes)}
    y = np.array([cidx[l] for l in labels], np.int64)
    perm = np.random.default_rng(args.seed).permutation(len(y))
    ids_sh, off_sh = permute_docs(ids, lens, perm)
    ids_t, off_t, y_t = (torch.from_numpy(a) for a in (ids_sh, off_sh, y[perm]))
    featurize_seconds = time.perf_counter() - t0

    model = BagMLP(len(vocab), len(classes), args.sparse)
    opts = make_optimizers(model, args.optimizer, lr, args.sparse)
    loss_fn = nn.CrossEntropyLoss()
    n, b = len(y), args.batch
    t0 = time.perf_counter()
    for s in range(0, n, b):
        e = min(s + b, n)
        lo, hi = int(off_sh[s]), int(off_sh[e])
        loss = loss_fn(model(ids_t[lo:hi], off_t[s:e] - lo), y_t[s:e])
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
    train_seconds = time.perf_counter() - t0

    dev_ids, dev_lens = featurize(dev_texts, vocab, grow=False)
    dev_y = np.array([cidx.get(l, -1) for l in dev_labels], np.int64)
    model.eval()
    print(json.dumps({
        "peer": "torch", "variant": "sparse" if args.sparse else "dense",
        "optimizer": args.optimizer, "lr": lr, "batch": b, "threads": args.threads,
        "docs": n, "tokens": int(lens.sum()), "vocab": len(vocab),
        "featurize_seconds": round(featurize_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "docs_per_second": round(n / train_seconds, 1),
        "tokens_per_second": round(int(lens.sum()) / train_seconds, 1),
        "final_batch_loss": round(loss.item(), 4),
        "dev_accuracy": round(accuracy(model, dev_ids, dev_lens, dev_y), 4),
    }))


if __name__ == "__main__":
    main()

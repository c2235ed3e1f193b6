"""Compact models: `nlclf compress` and train's ``output.compress``, as pure functions.

A bag-of-words model's size is its first layer, one row of H floats a feature. Compressing
projects every row w on the top R right singular vectors B (R, H) of the layer and stores the
coordinates c = w Bᵀ as int8 with a float32 scale a row (s = max|c| / 127, q = round(c / s)):
R + 4 bytes a row. R is the widest that lets the two model files fit ``max_bytes``; below
MIN_RANK, the rows that carry least are dropped instead (their row is zero: the feature still
counts in its text's L2 norm, but adds nothing to k = H f + b). The dense layers after it are
stored as float16 (their values rounded once, then computed in float32), the biases as
float32. The vocabulary is kept whole, so texts are featurized exactly as before.

A feature's importance is what it can add to the first layer's output over the training
texts: ||H_j|| · s_j · n_j, its row norm times its column scale (the idf or nb weight, times
char_weight on character n-grams) times its training count (1 for hash buckets and for a
model saved without counts). ``<unk>`` is always kept (unknown words of new text read it).
Writing the compressed model is pipeline.run_compress's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import checkpoint, data, features
from .config import Config
from .errors import ConfigError, DataError, GateNotMet
from .model import Classifier
from .nn import mlp
from .nn.layers import QuantizedRows, low_rank_basis, quantize_rows
from .vocab import UNK_ID

BITS = (8,)
def _first_layer(model: Classifier) -> str:
    if model.spec.input_kind != "bow":
        raise ConfigError(f"compress reads bag-of-words models (features.kind bow); this one is "
                          f"{model.spec.input_kind}")
    if model.compression is not None:
        raise ConfigError("this model is compressed already; compress the model it came from")
    return mlp.plan(model.spec)[0].W


def importance(model: Classifier) -> np.ndarray:
    """(D,) float64 score of each first-layer row: ||H_j|| · |s_j| · n_j (module docstring)."""
    W = model.params[_first_layer(model)]
    fz = model.featurizer
    norms = np.sqrt(np.einsum("dh,dh->d", W, W, dtype=np.float64))
    scale = fz.column_scale()
    score = norms * (1.0 if scale is None else np.abs(scale.astype(np.float64)))
    counts = fz.vocab.counts
    if counts is not None:
        n = np.ones(len(score))
        n[:len(counts)] = np.maximum(counts, 1)
        score = score * n
    score[UNK_ID] = np.inf
    return score


def _round16(a):
    return a.astype(np.float16).astype(np.float32)


def build(model: Classifier, n_rows: int, rank: int = 0, bits: int = 8, order=None, basis=None) -> Classifier:
    """The model with its first layer cut to the ``n_rows`` most important rows, in a basis of
    ``rank`` dimensions (0: none, the rows as they are), quantized, and the other weights
    rounded to float16 (biases kept in float32). ``order`` (the rows by importance) and
    ``basis`` may be given when they were computed already."""
    if bits not in BITS:
        raise ConfigError(f"--bits: {bits} is not supported (supported: {', '.join(map(str, BITS))})")
    first = _first_layer(model)
    W = model.params[first]
    D, H = W.shape
    order = np.argsort(-importance(model), kind="stable") if order is None else order
    keep = np.zeros(D, dtype=bool)
    keep[order[:max(1, min(n_rows, D))]] = True
    rows = W[np.flatnonzero(keep)]
    if rank and rank < H:
        basis = low_rank_basis(W, rank) if basis is None else basis[:rank]
        rows = rows @ basis.T                                              # (K, R) coordinates in the basis
    else:
        basis, rank = None, 0
    q, scale = quantize_rows(rows, bits)
    biases = {l.b for l in mlp.plan(model.spec) if l.b}
    params, f16 = {}, []
    for name, v in model.params.items():
        if name == first:
            params[name] = QuantizedRows(q, scale, keep, D, basis)
        elif name in biases:
            params[name] = v
        else:
            params[name] = _round16(v)
            f16.append(f"param.{name}")
    fz = model.featurizer
    weights = fz.weights
    if weights is not None:
        weights = _round16(weights)
        f16.append("features.weights")
    featurizer = features.make(fz.spec, fz.vocab, weights)
    info = {"bits": bits, "layer": first, "rows_kept": int(keep.sum()), "rows_total": int(D), "rank": int(rank),
            "width": int(H), "float16": sorted(f16), "selection": "row norm x column scale x training count"}
    return Classifier(featurizer, model.spec, params, list(model.labels), model.temperature, info, model.thresholds)


MIN_RANK = 8           # below this many dimensions rows are dropped instead (sst5: 8 agreed on 99.5 %, 4 on 93.6 %)
SLACK = 1024           # bytes left for what compress adds to model.json afterwards (the agreement)


def fit_size(model: Classifier, config: Config, max_bytes: int, bits: int = 8, rank: int = 0) -> tuple:
    """(compressed model, its size in bytes) within ``max_bytes``: every row at full width if
    they fit; else every row in the widest low-rank basis that fits (``rank``, when given,
    fixes it), down to MIN_RANK; else the most important rows in a basis of MIN_RANK."""
    first = _first_layer(model)
    D, H = model.params[first].shape
    order = np.argsort(-importance(model), kind="stable")
    budget = max_bytes - SLACK
    fixed = checkpoint.encoded_size(build(model, 1, 0, bits, order), config) - (H * bits // 8 + 4)
    if rank:
        r = min(int(rank), H)
    elif fixed + D * (H + 4) <= budget:
        r = H
    else:
        r = max(MIN_RANK, min(H, (budget - fixed - 4 * D) // (D + 4 * H)))
    per_row = r * bits // 8 + 4                                          # int8 coordinates and a float32 scale
    extra = 0 if r >= H else 4 * r * H                                   # the basis
    n = min(D, (budget - fixed - extra) // per_row)
    if n < 1:
        raise ConfigError(f"--max-size: {max_bytes:,} bytes cannot hold this model: the vocabulary, the "
                          f"dense layers and the metadata alone take {fixed:,} bytes")
    basis = low_rank_basis(model.params[first], r) if r < H else None
    while True:
        small = build(model, int(n), 0 if r >= H else r, bits, order, basis)
        size = checkpoint.encoded_size(small, config)
        if size <= budget or n <= 1:
            break
        n -= max(1, -(-(size - budget) // per_row))
    if size > max_bytes:
        raise ConfigError(f"--max-size: {max_bytes:,} bytes cannot hold this model (at least {size:,})")
    return small, size


def agreement(original: Classifier, small: Classifier, texts: list, labels=None, batch: int = 4096) -> dict:
    """How often the compressed model predicts the original's label on ``texts``; with gold
    ``labels``, both accuracies."""
    a, b = [], []
    for s in range(0, len(texts), batch):
        part = texts[s:s + batch]
        a.append(original.logits(part).argmax(axis=1))
        b.append(small.logits(part).argmax(axis=1))
    a = np.concatenate(a) if a else np.zeros(0, np.int64)
    b = np.concatenate(b) if b else np.zeros(0, np.int64)
    r = {"n": int(len(a)), "agreement": float((a == b).mean()) if len(a) else 1.0}
    if labels is not None:
        y = np.asarray([original.labels.index(l) if l in original.labels else -1 for l in labels])
        r["accuracy_original"] = float((a == y).mean()) if len(y) else 0.0
        r["accuracy_compressed"] = float((b == y).mean()) if len(y) else 0.0
    return r


def _check_set(cfg: Config, check, root=None) -> tuple:
    """(path, texts, labels or None) to measure the agreement on: ``check``, else the run's dev
    file, else its test file (under ``root``, else the config's data.root), else (None, [], None)."""
    if check is not None:
        path = Path(check)
    else:
        root = Path(root) if root else Path(cfg.data.root) if cfg.data.root else None
        path = next((root / p for p in (cfg.data.dev, cfg.data.test) if p and root is not None
                     and (root / p).exists()), None)
        if path is None:
            return None, [], None
    if not path.exists():
        raise DataError(f"{path}: no such file (--check)")
    try:
        labels, texts = data.read_labelled(str(path), cfg.data)
    except DataError:
        texts, labels = list(data.iter_texts([str(path)], cfg.data)), None
    return path, list(texts), labels


def compress(model: Classifier, config: Config, max_bytes: int, bits: int = 8, min_agreement: float = 0.99,
             check=None, rank: int = 0, root=None) -> tuple:
    """(compressed model, figures): fit ``max_bytes``, then measure the agreement with the
    original on ``check`` (or the run's dev, else test file, under ``root``). Below ``min_agreement`` it is a
    GateNotMet naming the figures (0 disables the gate, and with it the need for a check set)."""
    path, texts, labels = _check_set(config, check, root)
    small, size = fit_size(model, config, max_bytes, bits, rank)
    figures = {"size_bytes": size, "max_bytes": max_bytes, "original_bytes": checkpoint.encoded_size(model, config),
               **small.compression}
    if path is None and min_agreement > 0:
        raise ConfigError("compress: no text to measure the agreement on (the model's config names no "
                          "readable dev or test file): give --check FILE, or --agreement 0")
    if path is not None:
        figures["check"] = {"file": str(path), **agreement(model, small, texts, labels)}
        small.compression["agreement"] = figures["check"]["agreement"]
        small.compression["check_file"] = Path(path).name
        for k in ("accuracy_original", "accuracy_compressed"):
            if k in figures["check"]:
                small.compression[k] = figures["check"][k]
        figures["size_bytes"] = size = checkpoint.encoded_size(small, config)
        got = figures["check"]["agreement"]
        if got < min_agreement:
            acc = (f"; accuracy {figures['check']['accuracy_original']:.4f} -> "
                   f"{figures['check']['accuracy_compressed']:.4f}" if labels is not None else "")
            raise GateNotMet(f"compress: the compressed model ({size:,} bytes, {small.compression['rows_kept']:,} "
                             f"of {small.compression['rows_total']:,} rows) predicts the original's label on "
                             f"{got:.2%} of {figures['check']['n']:,} texts of {path}, below --agreement "
                             f"{min_agreement:.2%}{acc}; nothing written. Allow a larger --max-size, or a "
                             f"lower --agreement")
    return small, figures

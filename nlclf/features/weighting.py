"""Per-feature weights and row transforms of a bag X (N, D) of counts in CSR, as pure functions.

Shapes: the package's letters (N texts, D features, C classes).

``WEIGHTINGS`` names the weightings a config may ask for; ``weigh`` applies one. ``weigh``
reads only X's ``indptr``, ``indices``, ``data`` and ``shape`` (a SciPy matrix or
features.store.Csr); SciPy is imported by the fitting functions that build sparse matrices.
"""

from __future__ import annotations

import numpy as np

WEIGHTINGS = ("count", "binary", "log", "tfidf", "nb")
FITTED = ("tfidf", "nb")                 # weightings with per-feature weights learnt from train
NB_BLOCK_VALUES = 1 << 22                # (features × classes) made dense at a time by nb_spread: 32 MB
NB_DENSE_COUNTS = 1 << 23                # nb_spread counts (features × classes) in one dense array up to this: 64 MB


def idf(X, n_features: int):
    """(D,) float32 smoothed idf of the training counts X (N, D): ln((1 + N) / (1 + df)) + 1."""
    df = np.zeros(n_features, dtype=np.int64)
    for a, b in row_blocks(X):                  # a block at a time: X.indices may be a store's packed ids
        df += np.bincount(X.indices[X.indptr[a]:X.indptr[b]], minlength=n_features)
    return (np.log((1.0 + X.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def nb_spread(X, y, alpha: float, block: int = 1 << 16):
    """X (N, D) counts, y (N,) label ids -> (D,) float32: max_c L_c - min_c L_c, where
    L_c = log(p_c / Σ p_c) and p_c = alpha + the number of class-c rows holding the feature
    (Wang & Manning's NB log-count ratio, generalised to C classes; with two classes it is
    NBSVM's |r|). The (D, C) counts stay sparse; they are made dense ``block`` features at a
    time, fewer when there are many classes (at most NB_BLOCK_VALUES values); up to
    NB_DENSE_COUNTS (feature, class) pairs they are counted in one dense array instead."""
    import scipy.sparse as sp
    if y is None:
        raise ValueError("nb weighting needs the training labels")
    y = np.asarray(y)
    if y.ndim == 2:
        return _nb_spread_several(X, y, alpha, block)
    N, D = X.shape
    C = int(y.max()) + 1 if len(y) else 1
    dense = D * C <= NB_DENSE_COUNTS
    counts = np.zeros(D * C, dtype=np.int64) if dense else sp.csr_matrix((D, C), dtype=np.float64)   # (D, C)
    for a, b in row_blocks(X):                  # rows holding each feature, by class, a block at a time
        lo, hi = X.indptr[a], X.indptr[b]
        cls = np.repeat(y[a:b], np.diff(X.indptr[a:b + 1]))
        if dense:                               # one bincount over (feature, class) pairs
            counts += np.bincount(X.indices[lo:hi].astype(np.int64) * C + cls, minlength=D * C)
        else:
            counts = counts + sp.csr_matrix((np.ones(hi - lo), (X.indices[lo:hi], cls)), shape=(D, C))
    if dense:
        counts = counts.reshape(D, C)
    log_total = np.log(alpha * D + np.asarray(counts.sum(axis=0), dtype=np.float64).ravel())   # (C,)
    block = max(1, min(block, NB_BLOCK_VALUES // C))
    out = np.empty(D, dtype=np.float32)
    for s in range(0, D, block):
        part = counts[s:s + block]
        L = np.log((part if dense else part.toarray()) + alpha) - log_total                # (b, C)
        out[s:s + block] = L.max(axis=1) - L.min(axis=1)
    return out


def _nb_spread_several(X, Y, alpha: float, block: int):
    """nb_spread for several labels a text, Y (N, C) 0/1: p_c counts the rows holding the feature
    among those with label c (a row counts for each of its labels). The (D, C) counts are one
    sparse product of the binarised X and Y, made dense ``block`` features at a time."""
    import scipy.sparse as sp
    N, D = X.shape
    C = Y.shape[1]
    B = sp.csr_matrix((np.ones(X.nnz, dtype=np.float32), np.asarray(X.indices), X.indptr), shape=(N, D))  # (N, D) 0/1
    counts = (B.T.tocsr() @ sp.csr_matrix(Y.astype(np.float32))).tocsr()                       # (D, C)
    log_total = np.log(alpha * D + np.asarray(counts.sum(axis=0), dtype=np.float64).ravel())   # (C,)
    block = max(1, min(block, NB_BLOCK_VALUES // C))
    out = np.empty(D, dtype=np.float32)
    for s in range(0, D, block):
        L = np.log(counts[s:s + block].toarray().astype(np.float64) + alpha) - log_total       # (b, C)
        out[s:s + block] = L.max(axis=1) - L.min(axis=1)
    return out


def fit(weighting: str, X, y, n_features: int, nb_alpha: float):
    """The (D,) weights of a fitted weighting (tfidf, nb) from the training counts, else None."""
    if weighting == "tfidf":
        return idf(X, n_features)
    if weighting == "nb":
        return nb_spread(X, y, nb_alpha)
    return None


def weigh(X, weighting: str, scale=None, normalize: bool = False, entry_scale=None):
    """X (N, D) counts, in place: binary (also nb) or 1 + log tf, times ``scale`` (D,) per
    feature (the idf or NB weights, times char_weight on character n-grams), or times
    ``entry_scale`` (nnz,), the same factor given for each stored entry, then each row
    L2-normalised when ``normalize``."""
    for a, b in row_blocks(X):                  # a block of rows at a time: temporaries stay small
        lo, hi = X.indptr[a], X.indptr[b]
        data = X.data[lo:hi]                    # a view: changed in place
        if weighting in ("binary", "nb"):
            data[:] = 1.0
        elif weighting == "log":
            np.log(data, out=data)
            data += 1.0
        if entry_scale is not None:
            data *= entry_scale[lo:hi]
        elif scale is not None:
            data *= scale[X.indices[lo:hi]]
        if normalize:
            lengths = np.diff(X.indptr[a:b + 1])
            sq = np.bincount(np.repeat(np.arange(b - a), lengths), weights=data * data, minlength=b - a)
            norms = np.sqrt(sq).astype(np.float32)
            norms[norms == 0] = 1.0
            data /= np.repeat(norms, lengths)
    return X


BLOCK_VALUES = 1 << 22                   # non-zeros handled at a time by weigh and nb_spread


def row_blocks(X, values: int = 0):
    """(start, end) row ranges of CSR X holding about ``values`` (BLOCK_VALUES) non-zeros each,
    at least one row each."""
    values = values or BLOCK_VALUES
    N = X.shape[0]
    a = 0
    while a < N:
        b = int(np.searchsorted(X.indptr, X.indptr[a] + values, side="right")) - 1
        b = min(N, max(b, a + 1))
        yield a, b
        a = b

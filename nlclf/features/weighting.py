"""Per-feature weights and row transforms of a bag X (N, D) of counts in CSR, as pure functions.

Shapes: the package's letters (N texts, D features, C classes).

``WEIGHTINGS`` names the weightings a config may ask for; ``weigh`` applies one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

WEIGHTINGS = ("count", "binary", "log", "tfidf", "nb")
FITTED = ("tfidf", "nb")                 # weightings with per-feature weights learnt from train
NB_BLOCK_VALUES = 1 << 22                # (features × classes) made dense at a time by nb_spread: 32 MB


def idf(X, n_features: int):
    """(D,) float32 smoothed idf of the training counts X (N, D): ln((1 + N) / (1 + df)) + 1."""
    df = np.bincount(X.indices, minlength=n_features)
    return (np.log((1.0 + X.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def nb_spread(X, y, alpha: float, block: int = 1 << 16):
    """X (N, D) counts, y (N,) label ids -> (D,) float32: max_c L_c - min_c L_c, where
    L_c = log(p_c / Σ p_c) and p_c = alpha + the number of class-c rows holding the feature
    (Wang & Manning's NB log-count ratio, generalised to C classes; with two classes it is
    NBSVM's |r|). The (D, C) counts stay sparse; they are made dense ``block`` features at a
    time, fewer when there are many classes (at most NB_BLOCK_VALUES values)."""
    if y is None:
        raise ValueError("nb weighting needs the training labels")
    y = np.asarray(y)
    N, D = X.shape
    C = int(y.max()) + 1 if len(y) else 1
    B = sp.csr_matrix((np.ones(X.nnz, np.float64), X.indices, X.indptr), shape=X.shape)   # binarized
    Y = sp.csr_matrix((np.ones(N), (np.arange(N), y)), shape=(N, C))                     # one-hot
    counts = (B.T @ Y).tocsr()                                                            # (D, C)
    log_total = np.log(alpha * D + np.asarray(counts.sum(axis=0)).ravel())               # (C,)
    block = max(1, min(block, NB_BLOCK_VALUES // C))
    out = np.empty(D, dtype=np.float32)
    for s in range(0, D, block):
        L = np.log(counts[s:s + block].toarray() + alpha) - log_total                    # (b, C)
        out[s:s + block] = L.max(axis=1) - L.min(axis=1)
    return out


def fit(weighting: str, X, y, n_features: int, nb_alpha: float):
    """The (D,) weights of a fitted weighting (tfidf, nb) from the training counts, else None."""
    if weighting == "tfidf":
        return idf(X, n_features)
    if weighting == "nb":
        return nb_spread(X, y, nb_alpha)
    return None


def weigh(X, weighting: str, scale=None, normalize: bool = False):
    """X (N, D) counts, in place: binary (also nb) or 1 + log tf, times ``scale`` (D,) per
    feature (the idf or NB weights, times char_weight on character n-grams), then each row
    L2-normalised when ``normalize``."""
    if weighting in ("binary", "nb"):
        X.data[:] = 1.0
    elif weighting == "log":
        np.log(X.data, out=X.data)
        X.data += 1.0
    if scale is not None:
        X.data *= scale[X.indices]
    if normalize:
        lengths = np.diff(X.indptr)
        sq = np.bincount(np.repeat(np.arange(X.shape[0]), lengths), weights=X.data * X.data, minlength=X.shape[0])
        norms = np.sqrt(sq).astype(np.float32)
        norms[norms == 0] = 1.0
        X.data /= np.repeat(norms, lengths)
    return X

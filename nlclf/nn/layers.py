"""Layers as pure functions: ``forward(...) -> (y, cache)``, ``backward(cache, dy) -> (dx, grads)``.

Letters: N batch, V vocabulary (input columns), D features, H hidden, C classes,
T tokens per text, E embedding width (``e``).

The first layer may read a sparse batch X (N, V) in CSR form. Its weight
gradient touches only the rows of the columns present in the batch and is
returned as ``Rows(index, value)``: never a dense (V, H) array, nor any other
V-sized temporary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class Rows:
    """A row-sparse gradient: rows ``index`` (R,) of a (V, H) parameter hold ``value`` (R, H).

    ``index`` is sorted and unique, so ``W[index] -= lr * value`` is a correct update.
    """

    index: np.ndarray
    value: np.ndarray

    def dense(self, shape):
        """The full gradient; for tests and gradient checks only."""
        out = np.zeros(shape, dtype=self.value.dtype)
        out[self.index] = self.value
        return out


def compact_columns(X):
    """Renumber the columns X (N, V) uses as 0..U-1: returns (u (U,), Xc (N, U) CSR)."""
    u, inv = np.unique(X.indices, return_inverse=True)
    Xc = sp.csr_matrix((X.data, inv.astype(np.int32, copy=False), X.indptr),
                       shape=(X.shape[0], len(u)))
    return u, Xc


# --- dense: y = x W + b ---------------------------------------------------------

def dense_forward(W, b, x):
    """x (N, D), W (D, H), b (H,) or None -> y (N, H)."""
    y = x @ W                                               # (N, H)
    if b is not None:
        y += b
    return y, x


def dense_backward(W, b, x, dy, need_dx=True):
    """Gradients of y = x W + b: dW (D, H) like W, db (H,) like b, dx (N, D) like x."""
    dW = x.T @ dy                                           # (D, H)
    db = dy.sum(axis=0) if b is not None else None          # (H,)
    dx = dy @ W.T if need_dx else None                      # (N, D)
    return dx, dW, db


# --- sparse input: y = X W + b, X a CSR batch ----------------------------------

def sparse_forward(W, b, X):
    """X (N, V) CSR, W (V, H), b (H,) or None -> y (N, H); reads only X's rows of W."""
    y = X @ W                                               # (N, H)
    if b is not None:
        y += b
    return np.asarray(y), X


def sparse_backward(W, b, X, dy):
    """dW as Rows over the columns X uses: (U, H) = Xcᵀ dy; db (H,) like b."""
    u, Xc = compact_columns(X)
    dW = Rows(u, np.asarray(Xc.T @ dy))                     # (U, H)
    db = dy.sum(axis=0) if b is not None else None
    return dW, db


# --- embedding concatenation: f = [E j1; E j2; ...; E jT] ---------------------

def embed_concat_forward(E, J):
    """J (N, T) token ids, E (V, e) -> f (N, T*e): row n is E[J[n, 0]], ..., E[J[n, T-1]]."""
    n, t = J.shape
    return E[J].reshape(n, t * E.shape[1]), J


def embed_concat_backward(E, J, df, pad_id=0):
    """dE as Rows: df (N, T*e) scattered into the rows of the tokens used.

    Repeated tokens accumulate; the padding row gets no gradient and stays as it is.
    """
    e = E.shape[1]
    ids = J.ravel()                                         # (N*T,)
    u, inv = np.unique(ids, return_inverse=True)
    # (U, N*T) 0/1 matrix times (N*T, e): a scatter-add without a Python loop
    S = sp.csr_matrix((np.ones(len(ids), dtype=df.dtype), (inv, np.arange(len(ids)))),
                      shape=(len(u), len(ids)))
    value = np.asarray(S @ df.reshape(-1, e))               # (U, e)
    keep = u != pad_id
    return Rows(u[keep], value[keep])


# --- dropout ----------------------------------------------------------------------

def dropout_mask(shape, p, rng, dtype):
    """Inverted dropout: kept units are scaled by 1/(1-p) so the expectation is unchanged."""
    return (rng.random(shape, dtype=np.float32) >= p).astype(dtype) / dtype.type(1 - p)


def drop_entries(X, p, rng, scale=True):
    """Zero each stored entry of CSR X with probability p (input or word dropout).

    With ``scale`` the survivors are multiplied by 1/(1-p). Returns a new CSR matrix.
    """
    keep = rng.random(X.nnz, dtype=np.float32) >= p
    data = X.data * keep
    if scale:
        data /= data.dtype.type(1 - p)
    out = sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)
    out.eliminate_zeros()
    return out


def row_mean(X):
    """Divide each row of CSR X by its sum (empty rows stay empty): a bag of counts -> a mean."""
    sums = np.asarray(X.sum(axis=1), dtype=X.dtype).ravel()   # (N,)
    sums[sums == 0] = 1
    data = X.data / np.repeat(sums, np.diff(X.indptr))
    return sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)

"""Layers as pure functions with one contract, dispatched by the table KINDS:

    forward(W, b, x, **options) -> (y, cache)
    backward(W, b, cache, dy, need_dx, **options) -> (dx, dW, db)

dW has W's shape (a row-sparse ``Rows`` for layers reading ids or a sparse batch), db b's
(None without a bias), dx x's (None when not needed, or when x is not differentiable: ids, a
sparse batch). ``options`` holds ``pad_id`` (the padding row of an embedding table).
Shapes use the package's letters (N batch, V vocabulary, D features, H hidden, C classes,
T tokens, E embedding width).

The first layer may read a sparse batch X (N, V) in CSR form. Its weight
gradient touches only the rows of the columns present in the batch and is
returned as ``Rows(index, value)``: never a dense (V, H) array. The one V-sized
temporary is the int32 (V+1,) row-pointer array of plain SGD's fused update
(``ProductRows.add_scaled_to``), made only while V is small next to the batch.

SciPy is imported only where it is used (large products, training's fused update, the
embed_concat gradient): predicting a few texts runs on NumPy alone.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np


@dataclass
class Rows:
    """A row-sparse gradient: rows ``index`` (R,) of a (V, H) parameter hold ``value`` (R, H).

    ``index`` is sorted and unique, so ``W[index] -= lr * value`` is a correct update.
    """

    index: np.ndarray
    value: np.ndarray

    def add_scaled_to(self, W, alpha) -> None:
        """W[index] += alpha · value (SGD's update with alpha = -lr)."""
        W[self.index] += W.dtype.type(alpha) * self.value

    def add_row_scaled_to(self, W, coef) -> None:
        """W[index] += coef[:, None] · value: row r of the gradient scaled by coef (R,)."""
        W[self.index] += self.value * coef.astype(W.dtype, copy=False)[:, None]

    def dense(self, shape):
        """The full gradient; for tests and gradient checks only."""
        out = np.zeros(shape, dtype=self.value.dtype)
        out[self.index] = self.value
        return out


def sparsetools():
    """SciPy's compiled CSR kernels (called without the per-call overhead of building
    sparse-matrix objects), imported on first use; None when SciPy lacks them."""
    try:
        from scipy.sparse import _sparsetools
    except ImportError:                  # pragma: no cover - fall back to the public API
        return None
    return _sparsetools


GATHER_ENTRIES = 1 << 14     # products of at most this many stored entries: NumPy, no SciPy import


def gather_matmul(indptr, indices, data, M):
    """csr_matmul in NumPy: out[r] accumulates data[e] · M[indices[e]] over row r's entries in
    their stored order, the e-th entries of all rows at a time, from zero, in M's dtype: the
    same operations in the same order as SciPy's csr_matvecs, so the same bits (tested)."""
    n_rows = len(indptr) - 1
    out = np.zeros((n_rows, M.shape[1]), dtype=M.dtype)                 # (R, H)
    lengths = np.diff(indptr)                                           # (R,)
    for e in range(int(lengths.max(initial=0))):
        rows = np.flatnonzero(lengths > e)
        at = indptr[rows] + e                                           # the e-th entry of each
        out[rows] += M[indices[at]] * data[at, None]
    return out


def csr_matmul(indptr, indices, data, n_cols: int, M):
    """A (R, n_cols) CSR matrix given by its arrays, times dense M (n_cols, H) -> (R, H). SciPy's
    kernel is several times faster, but importing SciPy costs more than a few texts' product:
    so up to GATHER_ENTRIES stored entries, and while SciPy is not loaded yet (training loads
    it), the product is gather_matmul's. Both give the same bits."""
    n_rows = len(indptr) - 1
    data = data.astype(M.dtype, copy=False)
    if len(data) <= GATHER_ENTRIES and "scipy.sparse" not in sys.modules:
        return gather_matmul(indptr, indices, data, M)
    M = np.ascontiguousarray(M)
    kernels = sparsetools()
    if kernels is None:                                                 # pragma: no cover
        import scipy.sparse as sp
        return np.asarray(sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols)) @ M)
    out = np.zeros((n_rows, M.shape[1]), dtype=M.dtype)
    kernels.csr_matvecs(n_rows, n_cols, M.shape[1], indptr, indices, data, M.ravel(), out.ravel())
    return out


class SparseBatch:
    """A CSR batch X (N, V) prepared for the row-sparse first layer.

    u (U,): the sorted columns X uses. Xcᵀ (U, N): X restricted to those columns, transposed,
    as CSR arrays (t_indptr, t_indices) whose values are ``data[perm]``. All of it depends on
    the batch's structure only, so it is built once (off the training thread), and dropout
    or a row mean can change ``data`` without rebuilding it.
    """

    __slots__ = ("indptr", "indices", "data", "shape", "u", "t_indptr", "t_indices", "perm")

    @classmethod
    def of(cls, X, prepare: bool = True) -> "SparseBatch":
        """Wrap CSR X; ``prepare`` also builds u and Xcᵀ (needed by backward only)."""
        b = cls()
        itype = np.int32 if X.nnz < 2**31 else np.int64
        b.indptr = X.indptr.astype(itype, copy=False)
        b.indices = X.indices.astype(itype, copy=False)
        b.data, b.shape = X.data, X.shape
        b.u = b.perm = b.t_indices = b.t_indptr = None
        return b.prepare() if prepare else b

    def prepare(self) -> "SparseBatch":
        if self.u is None:
            itype = self.indptr.dtype
            self.u, inv = np.unique(self.indices, return_inverse=True)        # (U,), (nnz,)
            self.perm = np.argsort(inv, kind="stable")                          # column-major order
            self.t_indices = self.row_ids().astype(itype)[self.perm]
            self.t_indptr = np.zeros(len(self.u) + 1, dtype=itype)
            np.cumsum(np.bincount(inv, minlength=len(self.u)), out=self.t_indptr[1:])
        return self

    def with_data(self, data) -> "SparseBatch":
        b = SparseBatch()
        for name in self.__slots__:
            setattr(b, name, getattr(self, name))
        b.data = data
        return b

    @property
    def nnz(self) -> int:
        return len(self.data)

    def row_ids(self):
        """The row of each stored entry (nnz,)."""
        return np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))


def as_batch(X) -> SparseBatch:
    return X if isinstance(X, SparseBatch) else SparseBatch.of(X, prepare=False)


# --- dense: y = x W + b ---------------------------------------------------------

def dense_forward(W, b, x, **_):
    """x (N, D), W (D, H), b (H,) or None -> y (N, H)."""
    y = x @ W                                               # (N, H)
    if b is not None:
        y += b
    return y, x


def dense_backward(W, b, x, dy, need_dx=True, **_):
    """Gradients of y = x W + b: dW (D, H) like W, db (H,) like b, dx (N, D) like x."""
    dW = x.T @ dy                                           # (D, H)
    db = dy.sum(axis=0) if b is not None else None          # (H,)
    dx = dy @ W.T if need_dx else None                      # (N, D)
    return dx, dW, db


# --- sparse input: y = X W + b, X a CSR batch ----------------------------------

def sparse_forward(W, b, X: SparseBatch, **_):
    """X (N, V) sparse, W (V, H) (or a QuantizedRows), b (H,) or None -> y (N, H); reads only
    X's rows of W."""
    if isinstance(W, QuantizedRows):
        y = W.matmul(X)                                                  # (N, H)
    else:
        y = csr_matmul(X.indptr, X.indices, X.data, X.shape[1], W)      # (N, H)
    if b is not None:
        y += b
    return y, X


def sparse_backward(W, b, X: SparseBatch, dy, need_dx=False, **_):
    """dW as Rows over the columns X uses: (U, H) = Xcᵀ dy, formed only when read; db (H,) like
    b; no dx (X is data)."""
    X.prepare()
    db = dy.sum(axis=0) if b is not None else None          # (H,)
    return None, ProductRows(X, dy), db


FUSE_ROWS_PER_ENTRY = 64     # fuse the update while V <= this × the batch's stored entries


class ProductRows(Rows):
    """The row-sparse gradient Xcᵀ dy (U, H) of a sparse first layer, held as its two factors.

    Reading ``value`` forms it (momentum, Adam, L2 and clipping need it). Plain SGD calls
    ``add_scaled_to`` instead, which adds alpha · Xᵀ dy into W's rows in place with one pass
    of SciPy's CSR kernel: no (U, H) gradient, no gathered copy of W's rows. That pass needs
    row pointers for all V rows of W, an int32 (V+1,) array, so it is used only while V is
    at most FUSE_ROWS_PER_ENTRY times the batch's stored entries (large hashed inputs take
    the gather/scatter path).
    """

    def __init__(self, X: SparseBatch, dy):
        self.index, self._X, self._dy, self._value = X.u, X, dy, None

    @property
    def value(self):
        if self._value is None:
            X = self._X
            self._value = csr_matmul(X.t_indptr, X.t_indices, X.data[X.perm], X.shape[0], self._dy)
        return self._value

    @value.setter
    def value(self, v):
        self._value = v

    def _fusable(self, W) -> bool:
        return (sparsetools() is not None and W.flags.c_contiguous
                and len(W) <= FUSE_ROWS_PER_ENTRY * max(self._X.nnz, 1))

    def _fused_add(self, W, data) -> None:
        """W += Xcᵀ dy with Xcᵀ's stored values replaced by ``data`` (nnz,), in one CSR pass."""
        X = self._X
        dy = np.ascontiguousarray(self._dy, dtype=W.dtype)
        indptr = np.zeros(len(W) + 1, dtype=X.t_indptr.dtype)                   # (V+1,) rows of Xᵀ
        indptr[X.u + 1] = np.diff(X.t_indptr)
        np.cumsum(indptr, out=indptr)
        sparsetools().csr_matvecs(len(W), X.shape[0], W.shape[1], indptr, X.t_indices, data,
                                 dy.ravel(), W.reshape(-1))

    def add_scaled_to(self, W, alpha) -> None:
        if self._value is not None or not self._fusable(W):
            return super().add_scaled_to(W, alpha)
        X = self._X
        self._fused_add(W, X.data[X.perm].astype(W.dtype, copy=False) * W.dtype.type(alpha))  # W += alpha Xᵀ dy

    def add_row_scaled_to(self, W, coef) -> None:
        """W[u] += coef[:, None] · (Xcᵀ dy): scaling row r of Xcᵀ's values by coef[r] in the same
        one pass, even when ``value`` was formed (Adagrad reads it for the row norms): no
        gathered copy of W's rows."""
        if not self._fusable(W):
            return super().add_row_scaled_to(W, coef)
        X = self._X
        per_entry = np.repeat(coef.astype(W.dtype, copy=False), np.diff(X.t_indptr))      # (nnz,)
        self._fused_add(W, X.data[X.perm].astype(W.dtype, copy=False) * per_entry)


# --- a compressed first layer: kept rows in int8, a float32 scale a row -------------------

class QuantizedRows:
    """A (V, H) first layer of which only K rows are kept, each stored as int8 with a float32
    scale, optionally in a low-rank basis: row j of W is ``scale[r] * q[r]`` (q (K, H)), or
    ``scale[r] * q[r] @ basis`` (q (K, R), basis (R, H)), for r = rank[j], and 0 for a dropped
    row (rank[j] = -1). ``q`` may be a read-only memory map: prediction dequantizes only the
    rows a batch uses, never the whole table. For prediction only (no gradient)."""

    def __init__(self, q, scale, keep, n_rows: int, basis=None):
        """q (K, R) int8, scale (K,) float32, keep (V,) bool of the kept rows (K of them),
        basis (R, H) float32 or None (R = H)."""
        keep = np.asarray(keep, dtype=bool)[:n_rows]
        assert q.ndim == 2 and q.dtype == np.int8 and scale.shape == (q.shape[0],) and keep.sum() == q.shape[0]
        assert basis is None or (basis.ndim == 2 and basis.shape[0] == q.shape[1])
        self.q, self.scale, self.keep = q, np.asarray(scale, dtype=np.float32), keep
        self.basis = None if basis is None else np.asarray(basis, dtype=np.float32)
        self.rank = np.where(keep, np.cumsum(keep) - 1, -1).astype(np.int64)      # (V,) row of q, or -1
        self.shape = (int(n_rows), int(q.shape[1] if basis is None else basis.shape[1]))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    @property
    def size(self) -> int:
        """Stored weights (K·R, plus R·H for a basis)."""
        return int(self.q.size + (0 if self.basis is None else self.basis.size))

    def _rows(self, r):
        """(len(r), R) float32: kept rows r dequantized (still in the basis)."""
        return self.q[r].astype(np.float32) * self.scale[r, None]

    def take(self, ids):
        """W[ids] as float32 (ids any shape): dequantized kept rows, zeros for dropped ones."""
        ids = np.asarray(ids)
        r = self.rank[ids.ravel()]
        kept = r >= 0
        out = np.zeros((len(r), self.q.shape[1]), dtype=np.float32)
        out[kept] = self._rows(r[kept])
        if self.basis is not None:
            out = out @ self.basis
        return out.reshape(ids.shape + (self.shape[1],))

    __getitem__ = take

    def matmul(self, X: SparseBatch):
        """X (N, V) @ W -> (N, H) float32, reading only the kept rows X uses: their int8 rows
        gathered once and scaled, the entries of dropped rows left out; (X Q) basis with a basis."""
        r = self.rank[X.indices]                                          # (nnz,)
        kept = r >= 0
        u, inv = np.unique(r[kept], return_inverse=True)                  # (U,), (nnz',)
        c = np.zeros(len(kept) + 1, dtype=np.int64)
        np.cumsum(kept, out=c[1:])
        itype = np.int32 if len(u) < 2**31 else np.int64
        y = csr_matmul(c[X.indptr].astype(itype), inv.astype(itype), X.data[kept], len(u), self._rows(u))
        return y if self.basis is None else y @ self.basis                # (N, R) (R, H)


def quantize_rows(W, bits: int = 8):
    """(q (R, H) int8, scale (R,) float32): each row of W scaled by s = max|w| / (2^(bits-1) - 1)
    and rounded to the nearest integer (half to even), q = round(w / s); an all-zero row has
    scale 0 (and q 0)."""
    levels = (1 << (bits - 1)) - 1
    W = np.asarray(W, dtype=np.float32)
    scale = (np.abs(W).max(axis=1, initial=0.0) / np.float32(levels)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(W / safe[:, None]), -levels, levels).astype(np.int8)
    return q, scale


def low_rank_basis(W, rank: int):
    """(R, H) float32: the top ``rank`` right singular vectors of W (V, H), as rows (the
    eigenvectors of WᵀW, in float64): W ≈ (W Bᵀ) B, the best rank-R approximation."""
    W = np.asarray(W)
    G = np.zeros((W.shape[1], W.shape[1]))
    for s in range(0, len(W), 1 << 16):                                  # WᵀW a block of rows at a time
        part = W[s:s + (1 << 16)].astype(np.float64)
        G += part.T @ part
    vals, vecs = np.linalg.eigh(G)                                       # ascending
    return np.ascontiguousarray(vecs[:, ::-1][:, :rank].T).astype(np.float32)


# --- embedding concatenation: f = [E j1; E j2; ...; E jT] ---------------------

def embed_concat_forward(E, b, J, **_):
    """J (N, T) token ids, E (V, E) -> f (N, T·E): row n is E[J[n, 0]], ..., E[J[n, T-1]]; no bias."""
    n, t = J.shape
    return E[J].reshape(n, t * E.shape[1]), J


def embed_concat_backward(E, b, J, df, need_dx=False, pad_id=0, **_):
    """(None, dE, None): dE as Rows, df (N, T·E) scattered into the rows of the tokens used.

    Repeated tokens accumulate; the padding row gets no gradient and stays as it is.
    """
    import scipy.sparse as sp
    e = E.shape[1]
    ids = J.ravel()                                         # (N*T,)
    u, inv = np.unique(ids, return_inverse=True)
    # (U, N·T) 0/1 matrix times (N·T, E): a scatter-add without a Python loop
    S = sp.csr_matrix((np.ones(len(ids), dtype=df.dtype), (inv, np.arange(len(ids)))),
                      shape=(len(u), len(ids)))
    value = np.asarray(S @ df.reshape(-1, e))               # (U, E)
    keep = u != pad_id
    return None, Rows(u[keep], value[keep]), None


KINDS = {                 # layer kind -> (forward, backward): how mlp runs every layer
    "dense": (dense_forward, dense_backward),
    "sparse": (sparse_forward, sparse_backward),
    "embed_concat": (embed_concat_forward, embed_concat_backward),
}


# --- dropout ----------------------------------------------------------------------

def dropout_mask(shape, p, rng, dtype):
    """Inverted dropout: kept units are scaled by 1/(1-p) so the expectation is unchanged."""
    return (rng.random(shape, dtype=np.float32) >= p).astype(dtype) / dtype.type(1 - p)


def drop_entries(X: SparseBatch, p, rng, scale=True):
    """X's values with each stored entry zeroed with probability p (input or word dropout).

    With ``scale`` the survivors are multiplied by 1/(1-p). The structure is kept (dropped
    entries stay as explicit zeros), so the batch's prepared transpose stays valid.
    """
    keep = rng.random(X.nnz, dtype=np.float32) >= p
    data = X.data * keep
    if scale:
        data /= data.dtype.type(1 - p)
    return data


def row_mean(X: SparseBatch, data=None):
    """X's values divided by their row's sum (empty rows stay empty): a bag of counts -> a mean."""
    data = X.data if data is None else data
    sums = np.bincount(X.row_ids(), weights=data, minlength=X.shape[0])  # (N,)
    sums[sums == 0] = 1
    return data / np.repeat(sums, np.diff(X.indptr)).astype(data.dtype)

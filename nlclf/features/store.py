"""The training matrix in fewer bytes.

A bag's X (N, D) as CSR costs 8 bytes a stored entry (a float32 value, an int32 column), and
a million documents of 80 entries hold 80 million. ``RowStore`` keeps the same structure in
2 or 3 bytes an entry: the columns as uint16 while D fits (the default feature budget, 50,002
columns, does), and the counts as uint8 (wider only when a count needs it) or not at all
where the weighting ignores them (``binary`` and ``nb`` set every value to 1 before scaling).
The weighting is applied when rows are read: ``store[rows]`` is the float32 CSR of those rows,
weighed by the featurizer exactly as the whole matrix would have been (weighting.weigh works
row by row), so a training batch costs what it reads and the numbers do not change.
"""

from __future__ import annotations

import numpy as np

VALUELESS = ("binary", "nb")          # weightings that replace every count by 1 before scaling


def _column_dtype(n_cols: int):
    return np.uint16 if n_cols <= np.iinfo(np.uint16).max + 1 else np.int32


def _count_dtype(max_count: float):
    for dt in (np.uint8, np.uint16):
        if max_count <= np.iinfo(dt).max:
            return dt
    return np.float32


def stack_structure(parts: list, fields: dict) -> tuple:
    """Row-wise stacking of CSR-shaped parts (``indptr``, ``shape``, ``nnz`` and the per-entry
    arrays named in ``fields``, name -> dtype of the result), emptying ``parts`` as it goes so
    that peak memory is the result plus one part: (indptr (N+1,) int64, name -> (nnz,) array)."""
    nnz = sum(p.nnz for p in parts)
    indptr = np.zeros(sum(p.shape[0] for p in parts) + 1, dtype=np.int64)
    out = {name: np.empty(nnz, dtype=dt) for name, dt in fields.items()}
    r = k = 0
    parts.reverse()
    while parts:
        p = parts.pop()
        m = p.shape[0]
        indptr[r + 1:r + m + 1] = p.indptr[1:] + k
        for name, a in out.items():
            a[k:k + p.nnz] = getattr(p, name)
        r, k = r + m, k + p.nnz
    return indptr, out


class Csr:
    """The arrays of a CSR matrix X (N, D) and nothing more: data (nnz,) float32, indices
    (nnz,) int32, indptr (N+1,) int32. What a batch to predict is featurized into, so that
    predicting a few texts never imports SciPy; the network (nn.layers.as_batch) and
    weighting.weigh read it as they read a SciPy CSR matrix."""

    __slots__ = ("data", "indices", "indptr", "shape")

    def __init__(self, data, indices, indptr, shape):
        self.data, self.indices, self.indptr, self.shape = data, indices, indptr, tuple(shape)

    @property
    def nnz(self) -> int:
        return len(self.data)


class RowStore:
    """CSR structure of counts X (N, D): indptr (N+1,) int64, indices (nnz,) uint16 or int32,
    counts (nnz,) uint8/uint16/float32 or None (every count read as 1). ``weigh``: the
    function applied in place to the float32 CSR of the rows read (None: the raw counts)."""

    __slots__ = ("indptr", "indices", "counts", "shape", "weigh")

    def __init__(self, indptr, indices, counts, shape, weigh=None):
        self.indptr, self.indices, self.counts = indptr, indices, counts
        self.shape, self.weigh = tuple(shape), weigh

    @classmethod
    def of(cls, X, keep_counts: bool) -> "RowStore":
        """A compact copy of CSR counts X; the counts are kept only with ``keep_counts``."""
        counts = None
        if keep_counts:
            counts = X.data.astype(_count_dtype(float(X.data.max()) if X.nnz else 0.0))
            if not np.array_equal(counts, X.data):             # fractional counts: keep them as they are
                counts = X.data.astype(np.float32)
        return cls(X.indptr.astype(np.int64), X.indices.astype(_column_dtype(X.shape[1])), counts, X.shape)

    @classmethod
    def stack(cls, parts: list, n_cols: int) -> "RowStore":
        """Stack RowStores row-wise, emptying ``parts`` as it goes (peak: the result plus one part)."""
        fields = {"indices": _column_dtype(n_cols)}
        if parts and parts[0].counts is not None:
            fields["counts"] = np.result_type(*[p.counts.dtype for p in parts])
        indptr, out = stack_structure(parts, fields)
        return cls(indptr, out["indices"], out.get("counts"), (len(indptr) - 1, n_cols))

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + (0 if self.counts is None else self.counts.nbytes)

    def weighed(self, weigh) -> "RowStore":
        """The same arrays, read through ``weigh``."""
        return RowStore(self.indptr, self.indices, self.counts, self.shape, weigh)

    def __getitem__(self, rows):
        """The float32 CSR (R, D) of ``rows`` (an int array or a slice), weighed."""
        import scipy.sparse as sp
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(self.shape[0]))
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts                           # (R,)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        pos = np.arange(indptr[-1]) - np.repeat(indptr[:-1] - starts, lengths)   # (nnz_R,) into the store
        data = (np.ones(len(pos), dtype=np.float32) if self.counts is None
                else self.counts[pos].astype(np.float32))
        itype = np.int32 if indptr[-1] < 2**31 else np.int64
        X = sp.csr_matrix((data, self.indices[pos].astype(itype), indptr.astype(itype)),
                          shape=(len(rows), self.shape[1]))
        return X if self.weigh is None else self.weigh(X)

    def csr(self):
        """The whole matrix as weighed float32 CSR (for tests and small sets)."""
        return self[np.arange(self.shape[0])]

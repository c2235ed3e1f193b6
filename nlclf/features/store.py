"""The training matrix in fewer bytes.

A bag's X (N, D) as CSR costs 8 bytes a stored entry (a float32 value, an int32 column), and
a million documents of 100 entries hold 100 million. ``RowStore`` keeps the same structure in
2 to 4 bytes an entry: the columns as uint16 while D fits, as 3 bytes (``PackedColumns``: a
uint16 and a uint8 array) up to 2^24 columns (the default feature budget of large sets,
200,002, does), and the counts as uint8 (wider only when a count needs it) or not at all
where the weighting ignores them (``binary`` and ``nb`` set every value to 1 before scaling).
The weighting is applied when rows are read: ``store[rows]`` is the float32 CSR of those rows,
weighed by the featurizer exactly as the whole matrix would have been (weighting.weigh works
row by row), so a training batch costs what it reads and the numbers do not change.
"""

from __future__ import annotations

import numpy as np

from ..runtime import trim_heap

TRIM_BYTES = 64 << 20                 # parts stacked between two trims of the heap
VALUELESS = ("binary", "nb")          # weightings that replace every count by 1 before scaling


LOW_COLUMNS = 1 << 16                 # columns a uint16 holds
PACKED_COLUMNS = 1 << 24              # columns a uint16 and a uint8 hold


def _column_dtype(n_cols: int):
    """The dtype of the columns a store keeps (of their low 16 bits when packed)."""
    return np.uint16 if n_cols <= PACKED_COLUMNS else np.int32


def _packed(n_cols: int) -> bool:
    return LOW_COLUMNS < n_cols <= PACKED_COLUMNS


class PackedColumns:
    """(nnz,) column ids below 2^24 in 3 bytes each: ``low`` (nnz,) uint16 and ``high`` (nnz,)
    uint8, id = high · 2^16 + low. Read as int32 by indexing (a slice or an index array) or
    whole by np.asarray, as the weighting functions read CSR indices."""

    __slots__ = ("low", "high")
    dtype = np.dtype(np.int32)

    def __init__(self, low, high):
        self.low, self.high = low, high

    @classmethod
    def of(cls, ids) -> "PackedColumns":
        ids = np.asarray(ids)
        return cls((ids & 0xFFFF).astype(np.uint16), (ids >> 16).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.low)

    @property
    def nbytes(self) -> int:
        return self.low.nbytes + self.high.nbytes

    def __getitem__(self, key):
        out = self.high[key].astype(np.int32)
        out <<= 16
        out |= self.low[key]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


def _count_dtype(max_count: float):
    for dt in (np.uint8, np.uint16):
        if max_count <= np.iinfo(dt).max:
            return dt
    return np.float32


def stack_structure(parts: list, fields: dict) -> tuple:
    """Row-wise stacking of CSR-shaped parts (``indptr``, ``shape``, ``nnz`` and the per-entry
    arrays named in ``fields``, name -> dtype of the result), emptying ``parts`` as it goes so
    that peak memory is the result plus one part: (indptr (N+1,) int64, name -> (nnz,) array).
    The parts' arrays (received from the featurizing workers) lie on the heap, which keeps what
    is freed: it is trimmed every TRIM_BYTES of parts, else the result's pages would come on
    top of all of them (1,000,000 corpus documents: 762 MB after stacking, 555 MB before)."""
    nnz = sum(p.nnz for p in parts)
    indptr = np.zeros(sum(p.shape[0] for p in parts) + 1, dtype=np.int64)
    out = {name: np.empty(nnz, dtype=dt) for name, dt in fields.items()}
    r = k = freed = 0
    parts.reverse()
    while parts:
        p = parts.pop()
        m = p.shape[0]
        indptr[r + 1:r + m + 1] = p.indptr[1:] + k
        for name, a in out.items():
            a[k:k + p.nnz] = getattr(p, name)
            freed += a.itemsize * p.nnz
        r, k = r + m, k + p.nnz
        del p
        if freed >= TRIM_BYTES or not parts:
            trim_heap()
            freed = 0
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
    """CSR structure of counts X (N, D): indptr (N+1,) int64, indices (nnz,) uint16, int32 or
    PackedColumns (``columns`` and ``high``: its arrays), counts (nnz,) uint8/uint16/float32
    or None (every count read as 1). ``weigh``: the function applied in place to the float32
    CSR of the rows read (None: the raw counts)."""

    __slots__ = ("indptr", "columns", "high", "counts", "shape", "weigh")

    def __init__(self, indptr, columns, counts, shape, weigh=None, high=None):
        self.indptr, self.columns, self.high, self.counts = indptr, columns, high, counts
        self.shape, self.weigh = tuple(shape), weigh

    @property
    def indices(self):
        """The column of each entry: an array, or PackedColumns read as one."""
        return self.columns if self.high is None else PackedColumns(self.columns, self.high)

    @classmethod
    def of(cls, X, keep_counts: bool) -> "RowStore":
        """A compact copy of CSR counts X; the counts are kept only with ``keep_counts``."""
        counts = None
        if keep_counts:
            counts = X.data.astype(_count_dtype(float(X.data.max()) if X.nnz else 0.0))
            if not np.array_equal(counts, X.data):             # fractional counts: keep them as they are
                counts = X.data.astype(np.float32)
        if _packed(X.shape[1]):
            packed = PackedColumns.of(X.indices)
            return cls(X.indptr.astype(np.int64), packed.low, counts, X.shape, high=packed.high)
        return cls(X.indptr.astype(np.int64), X.indices.astype(_column_dtype(X.shape[1])), counts, X.shape)

    @classmethod
    def stack(cls, parts: list, n_cols: int) -> "RowStore":
        """Stack RowStores row-wise, emptying ``parts`` as it goes (peak: the result plus one part)."""
        fields = {"columns": _column_dtype(n_cols)}
        if _packed(n_cols):
            fields["high"] = np.uint8
        if parts and parts[0].counts is not None:
            fields["counts"] = np.result_type(*[p.counts.dtype for p in parts])
        indptr, out = stack_structure(parts, fields)
        return cls(indptr, out["columns"], out.get("counts"), (len(indptr) - 1, n_cols), high=out.get("high"))

    @property
    def nnz(self) -> int:
        return len(self.columns)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.columns, self.high, self.counts) if a is not None)

    def weighed(self, weigh) -> "RowStore":
        """The same arrays, read through ``weigh``."""
        return RowStore(self.indptr, self.columns, self.counts, self.shape, weigh, self.high)

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

import numpy as np
import pytest
import scipy.sparse as sp


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_csr(rng, n, v, density=0.4, dtype=np.float64, repeat=True):
    """A random (N, V) CSR batch of positive counts, every row non-empty."""
    dense = (rng.random((n, v)) < density) * rng.integers(1, 4 if repeat else 2, size=(n, v))
    dense[np.arange(n), rng.integers(0, v, size=n)] += 1
    return sp.csr_matrix(dense.astype(dtype))

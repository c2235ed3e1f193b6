"""Softmax fused with cross-entropy, the output end of the network.

The batch mean is taken here and only here: ``dz`` is already divided by N.
"""

from __future__ import annotations

import numpy as np


def log_softmax(z):
    """Row-wise log softmax of logits z (N, C), stable: shift by the row max."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(z):
    """Row-wise softmax of logits z (N, C), stable."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(z, y, smoothing: float = 0.0):
    """Mean cross-entropy of logits z (N, C) against integer labels y (N,).

    The target is (1 - eps) * onehot(y) + eps / C (label smoothing eps).
    Returns (loss, dz) with dz (N, C) = (softmax(z) - target) / N: the
    simple form o - target holds only because softmax and cross-entropy are
    taken together.
    """
    n, c = z.shape
    logp = log_softmax(z)                                   # (N, C)
    target = np.full_like(z, smoothing / c)                 # (N, C)
    target[np.arange(n), y] += 1.0 - smoothing
    loss = -(target * logp).sum() / n
    dz = (np.exp(logp) - target) / n                        # (N, C)
    return float(loss), dz

"""The output end of the network: softmax fused with cross-entropy (one label a text), and
elementwise sigmoids fused with binary cross-entropy (any number of labels a text).

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


def softplus(z):
    """log(1 + e^z) elementwise, stable for any z: max(z, 0) + log1p(e^-|z|)."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def sigmoid(z):
    """σ(z) = 1 / (1 + e^-z) elementwise, stable: exp(-softplus(-z)) never overflows."""
    return np.exp(-softplus(-z))


def binary_cross_entropy(z, Y, smoothing: float = 0.0, pos_weight=None):
    """Mean over texts of the binary cross-entropy summed over labels, for logits z (N, C) and
    0/1 targets Y (N, C): with o = σ(z) and t the (smoothed) target,

        ℓ = −Σ_c [w_c t_c log o_c + (1 − t_c) log(1 − o_c)]
          =  Σ_c [w_c t_c softplus(−z_c) + (1 − t_c) softplus(z_c)],

    written with log σ(z) = −softplus(−z) and log(1 − σ(z)) = −softplus(z), never the log of
    a rounded probability. Label smoothing eps pulls each target toward 1/2: t = (1 − eps)·Y +
    eps/2. ``pos_weight`` w (C,) weighs each label's positives (rare labels; None: 1).

    Its derivative is, per element, dℓ/dz = −w t (1 − o) + (1 − t) o, which for w = 1 is
    o − t: the softmax loss's o − onehot(y), now with a 0/1 vector for the target.
    Returns (loss, dz) with dz (N, C), divided by N.
    """
    n = z.shape[0]
    t = np.asarray(Y, dtype=z.dtype)                        # (N, C)
    if smoothing:
        t = (1.0 - smoothing) * t + 0.5 * smoothing
    w = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=z.dtype)   # (C,) or scalar
    loss = float((w * t * softplus(-z) + (1.0 - t) * softplus(z)).sum()) / n
    o = sigmoid(z)                                          # (N, C)
    dz = (-w * t * (1.0 - o) + (1.0 - t) * o) / n           # (N, C)
    return loss, dz

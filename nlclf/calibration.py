"""Calibration: reliability bins, expected calibration error, temperature scaling.

Shapes: the package's letters (N examples, C classes), M bins.

A classifier is calibrated when, among the examples it gives confidence q = max_c o_c,
a fraction q is right. Temperature scaling (Guo et al., 2017) divides the logits by one
T > 0 fitted on held-out data: it changes the confidence, never the predicted class.
"""

from __future__ import annotations

import numpy as np

from .nn.losses import log_softmax

LOG_T_RANGE = (-3.0, 3.0)          # T is searched in [e^-3, e^3] ≈ [0.05, 20]


def reliability(proba, y, bins: int = 15) -> dict:
    """Per-bin confidence, accuracy and count for the max probability, in ``bins`` equal-width bins.

    proba (N, C), y (N,). Bin m holds the examples with confidence q in [m/M, (m+1)/M)
    (the last bin also holds q = 1). An empty bin has count 0 and confidence and
    accuracy None. Returns {"bins", "edges" (M+1,), "confidence" (M,), "accuracy" (M,),
    "count" (M,), "n", "ece"}: plain Python numbers, ready for JSON.
    """
    proba, y = np.asarray(proba), np.asarray(y)
    q = proba.max(axis=1).astype(np.float64)                            # (N,) confidence
    right = (proba.argmax(axis=1) == y).astype(np.float64)              # (N,)
    m = np.minimum((q * bins).astype(np.int64), bins - 1)               # (N,) bin of each example
    count = np.bincount(m, minlength=bins)                              # (M,)
    conf_sum = np.bincount(m, weights=q, minlength=bins)                # (M,)
    acc_sum = np.bincount(m, weights=right, minlength=bins)             # (M,)
    seen = count > 0
    conf = np.divide(conf_sum, count, out=np.zeros(bins), where=seen)   # (M,)
    acc = np.divide(acc_sum, count, out=np.zeros(bins), where=seen)     # (M,)
    n = len(y)
    ece_value = float(np.abs(acc - conf) @ count / n) if n else 0.0
    return {"bins": bins,
            "edges": np.linspace(0.0, 1.0, bins + 1).tolist(),
            "confidence": [float(c) if s else None for c, s in zip(conf, seen)],
            "accuracy": [float(a) if s else None for a, s in zip(acc, seen)],
            "count": count.tolist(),
            "n": int(n),
            "ece": ece_value}


def ece(proba, y, bins: int = 15) -> float:
    """Expected calibration error: Σ_m (count_m / N) · |acc_m − conf_m| over the bins of ``reliability``."""
    return reliability(proba, y, bins)["ece"]


def nll(logits, y, T: float = 1.0) -> float:
    """Mean negative log-likelihood of y (N,) under softmax(z / T), z (N, C) logits."""
    z = np.asarray(logits, dtype=np.float64) / T
    return float(-log_softmax(z)[np.arange(len(y)), y].mean())


def fit_temperature(logits, y, tol: float = 1e-10, max_iter: int = 100) -> float:
    """The T > 0 minimising nll(logits, y, T), searched in T ∈ [e^-3, e^3]; deterministic.

    With β = 1/T, L(β) = mean_n [logsumexp(β z_n) − β z_{n,y_n}] is convex in β:
        L'(β)  = mean_n [E_{p_n}[z_n] − z_{n,y_n}],     p_n = softmax(β z_n)
        L''(β) = mean_n Var_{p_n}[z_n] ≥ 0,
    so L' increases with β and its root, if inside the range, is the minimum. It is found
    by Newton's method on L', kept inside a bisection bracket [lo, hi] (a Newton step that
    leaves the bracket, or L'' = 0, falls back to the midpoint). When L' has no root in the
    range the nearer end is the minimum: T = e^3 if even β = e^-3 gives L' ≥ 0, and
    T = e^-3 when the data are separable and L falls forever with β. No data: T = 1.
    """
    if len(y) == 0:
        return 1.0
    z = np.asarray(logits, dtype=np.float64)                            # (N, C)
    y = np.asarray(y)
    zy = z[np.arange(len(y)), y]                                        # (N,)

    def derivatives(beta):
        p = np.exp(log_softmax(beta * z))                               # (N, C)
        mean = (p * z).sum(axis=1)                                      # (N,) E_p[z]
        var = (p * z * z).sum(axis=1) - mean * mean                     # (N,) Var_p[z]
        return float((mean - zy).mean()), float(np.maximum(var, 0).mean())

    lo, hi = np.exp(-LOG_T_RANGE[1]), np.exp(-LOG_T_RANGE[0])           # β range
    if derivatives(lo)[0] >= 0:
        return float(1 / lo)
    if derivatives(hi)[0] <= 0:
        return float(1 / hi)
    beta = 1.0 if lo < 1.0 < hi else 0.5 * (lo + hi)
    for _ in range(max_iter):
        d1, d2 = derivatives(beta)
        if d1 > 0:
            hi = beta
        else:
            lo = beta
        step = beta - d1 / d2 if d2 > 0 else np.nan
        beta_new = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(beta_new - beta) <= tol * beta or hi - lo <= tol * beta:
            beta = beta_new
            break
        beta = beta_new
    return float(1 / beta)

"""Is model A better than model B on the same test set? Paired tests on per-example correctness.

Shapes: the package's letters (N examples), R bootstrap resamples.

Both tests compare r_A, r_B ∈ {0, 1}^N (example n right or wrong) on the same examples,
so what varies between the models is measured on identical inputs.
"""

from __future__ import annotations

import numpy as np

CHUNK_ELEMENTS = 1 << 22        # resampled indices held at once (32 MB of int64)


def _correct(y, pred_a, pred_b):
    y, pred_a, pred_b = np.asarray(y), np.asarray(pred_a), np.asarray(pred_b)
    assert y.shape == pred_a.shape == pred_b.shape and y.ndim == 1, "y and predictions must be (N,)"
    return pred_a == y, pred_b == y                                     # (N,), (N,)


def mcnemar(y, pred_a, pred_b) -> dict:
    """McNemar's test on the discordant pairs.

    b = #(A right, B wrong), c = #(A wrong, B right). Under H0 (equal accuracy) each of the
    b + c discordant examples is A's win with probability 1/2, so
        p_exact = P(|K − (b+c)/2| ≥ |b − (b+c)/2|),  K ~ Binomial(b + c, 1/2)
                = min(1, 2 · P(K ≤ min(b, c)))                     (two-sided, exact)
        chi2    = max(|b − c| − 1, 0)² / (b + c)                   (Edwards' continuity correction)
        p_chi2  = P(χ²₁ ≥ chi2).
    With no discordant pair (b = c = 0) both p-values are 1.
    Returns {"n", "b", "c", "accuracy_a", "accuracy_b", "p_exact", "chi2", "p_chi2"}.
    """
    return mcnemar_of(*_correct(y, pred_a, pred_b))


def mcnemar_of(ra, rb) -> dict:
    """mcnemar of per-example correctness ra, rb (N,) bool: A right, B right (an exact match
    for several labels a text)."""
    from scipy import stats                 # imported here: seconds at start-up, needed rarely
    ra, rb = np.asarray(ra, dtype=bool), np.asarray(rb, dtype=bool)
    b, c = int((ra & ~rb).sum()), int((~ra & rb).sum())
    n = b + c
    if n == 0:
        p_exact, chi2, p_chi2 = 1.0, 0.0, 1.0
    else:
        p_exact = float(stats.binomtest(min(b, c), n, 0.5).pvalue)
        chi2 = max(abs(b - c) - 1, 0) ** 2 / n
        p_chi2 = float(stats.chi2.sf(chi2, df=1))
    return {"n": int(len(ra)), "b": b, "c": c,
            "accuracy_a": float(ra.mean()) if len(ra) else 0.0,
            "accuracy_b": float(rb.mean()) if len(rb) else 0.0,
            "p_exact": p_exact, "chi2": float(chi2), "p_chi2": p_chi2}


def _resampled(N: int, n: int, seed: int, difference) -> tuple:
    """(diffs (R,), 2.5th and 97.5th percentiles) of ``difference(idx)``, idx (m, N) a chunk of
    m resamples of N indices drawn with replacement, at most CHUNK_ELEMENTS at a time, from
    np.random.default_rng(seed), R = n resamples in all."""
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK_ELEMENTS // N)
    diffs = np.empty(n)                                                 # (R,)
    for start in range(0, n, rows):
        m = min(rows, n - start)
        diffs[start:start + m] = difference(rng.integers(0, N, size=(m, N)))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return diffs, float(lo), float(hi)


def paired_bootstrap(y, pred_a, pred_b, n: int = 10000, seed: int = 0) -> dict:
    """Paired bootstrap of the accuracy difference acc_B − acc_A: is B better than A?

    d_i = r_B,i − r_A,i ∈ {−1, 0, 1} (N,), so ``difference`` = mean(d) = acc_B − acc_A. Each
    resample draws N indices with replacement and takes the mean of d over them; the R = ``n``
    means form the bootstrap distribution. The 95% interval is its 2.5th and 97.5th
    percentiles; ``p_value`` = P*(B − A ≤ 0), the fraction of resamples where B is not better
    (one-sided, for H1: B better than A): small when B is clearly better.
    Indices are drawn as (R_chunk, N) int arrays, a chunk of at most CHUNK_ELEMENTS at a
    time, from ``np.random.default_rng(seed)``: the same inputs and seed give the same result.
    Returns {"n", "difference", "ci_low", "ci_high", "p_value", "resamples", "seed",
    "accuracy_a", "accuracy_b"}.
    """
    ra, rb = _correct(y, pred_a, pred_b)
    N = len(ra)
    assert N > 0 and n > 0, "the bootstrap needs examples and resamples"
    d = rb.astype(np.int8) - ra.astype(np.int8)                         # (N,) B − A
    diffs, lo, hi = _resampled(N, n, seed, lambda idx: d[idx].sum(axis=1, dtype=np.int64) / N)
    return {"n": int(N), "difference": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "p_value": float((diffs <= 0).mean()), "resamples": int(n), "seed": int(seed),
            "accuracy_a": float(ra.mean()), "accuracy_b": float(rb.mean())}


def _micro_f1(tp, fp, fn):
    """2 TP / (2 TP + FP + FN), 0 where there is nothing to count; elementwise."""
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def paired_bootstrap_micro_f1(Y, P_a, P_b, n: int = 10000, seed: int = 0) -> dict:
    """Paired bootstrap of the micro-F1 difference F_B − F_A of two predictions of several
    labels a text, P_a and P_b (N, C) bool against Y (N, C).

    Texts are what is resampled (the unit drawn): each text's true positives, false positives
    and false negatives, (3, N) per model, are summed over the N indices of a resample and give
    its micro-F1 = 2 TP / (2 TP + FP + FN); the R = ``n`` differences form the distribution.
    Interval, ``p_value`` = P*(F_B − F_A ≤ 0) and the chunked, seeded draws are as in
    paired_bootstrap. Returns {"n", "difference", "ci_low", "ci_high", "p_value", "resamples",
    "seed", "micro_f1_a", "micro_f1_b"}."""
    Y = np.asarray(Y, dtype=bool)
    N = len(Y)
    assert N > 0 and n > 0, "the bootstrap needs examples and resamples"
    assert np.shape(P_a) == np.shape(P_b) == Y.shape, "Y and predictions must be (N, C)"

    def counts(P):                                                     # (3, N): TP, FP, FN of each text
        P = np.asarray(P, dtype=bool)
        return np.stack([(Y & P).sum(1), (~Y & P).sum(1), (Y & ~P).sum(1)]).astype(np.int32)

    ca, cb = counts(P_a), counts(P_b)
    f_a, f_b = float(_micro_f1(*ca.sum(1))), float(_micro_f1(*cb.sum(1)))
    diffs, lo, hi = _resampled(N, n, seed, lambda idx: _micro_f1(*cb[:, idx].sum(axis=2, dtype=np.int64))
                               - _micro_f1(*ca[:, idx].sum(axis=2, dtype=np.int64)))      # sums (3, m)
    return {"n": int(N), "difference": f_b - f_a, "ci_low": float(lo), "ci_high": float(hi),
            "p_value": float((diffs <= 0).mean()), "resamples": int(n), "seed": int(seed),
            "micro_f1_a": f_a, "micro_f1_b": f_b}

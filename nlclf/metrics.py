"""Classification metrics (scikit-learn) gathered into one plain report dict."""

from __future__ import annotations

import numpy as np

# scikit-learn is imported inside the functions: it costs seconds at start-up, and
# `nlclf predict` never needs it.


def quick(y_true, y_pred, n_classes: int) -> dict:
    """Accuracy and macro-F1 only, in NumPy: what the training loop needs each epoch.

    Matches scikit-learn's accuracy_score and f1_score(average="macro", zero_division=0)
    over all n_classes labels.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(float)
    support = np.bincount(y_true, minlength=n_classes)
    predicted = np.bincount(y_pred, minlength=n_classes)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return {"accuracy": float(tp.sum() / len(y_true)), "macro_f1": float(f1.mean())}


CONFUSION_MAX = 100        # classes up to which the full (C, C) confusion matrix is kept
TOP_CONFUSIONS = 20


def confusions(y_true, y_pred, n_classes: int) -> tuple:
    """(the (C, C) int32 confusion matrix as lists, rows true, or None beyond CONFUSION_MAX
    classes; the TOP_CONFUSIONS most frequent (true, predicted, count) mistakes). Counted in
    O(N + C) memory from the pairs that occur, never a (C, C) array for many classes."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    valid = (y_true >= 0) & (y_pred >= 0)
    pairs, counts = np.unique(y_true[valid] * n_classes + y_pred[valid], return_counts=True)
    t, p = pairs // n_classes, pairs % n_classes
    wrong = np.flatnonzero(t != p)
    top = wrong[np.lexsort((pairs[wrong], -counts[wrong]))][:TOP_CONFUSIONS]
    top_list = [(int(t[i]), int(p[i]), int(counts[i])) for i in top]
    if n_classes > CONFUSION_MAX:
        return None, top_list
    cm = np.zeros((n_classes, n_classes), dtype=np.int32)
    cm[t, p] = counts
    return cm.tolist(), top_list


def report(y_true, y_pred, labels: list) -> dict:
    """accuracy, macro_f1, per-class precision/recall/F1/support, confusion matrix (rows: true;
    None beyond CONFUSION_MAX classes) and the most frequent confusions."""
    from sklearn.metrics import precision_recall_fscore_support
    ids = np.arange(len(labels))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    out = quick(y_true, y_pred, len(labels))
    out["n"] = int(len(y_true))
    for avg in ("micro", "macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=avg,
                                                        zero_division=0)
        out[f"{avg}_avg"] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    out["labels"] = list(labels)
    out["per_class"] = {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, lab in enumerate(labels)}
    out["confusion_matrix"], top = confusions(y_true, y_pred, len(labels))
    out["top_confusions"] = [{"true": labels[a], "predicted": labels[b], "count": n} for a, b, n in top]
    return out


# --- several labels a text: Y and P are (N, C) 0/1 matrices, S (N, C) scores ---------------------

def _f1(tp, fp, fn):
    """(precision, recall, F1) from counts (scalars or arrays), 0 where a denominator is 0."""
    tp, fp, fn = (np.asarray(a, dtype=float) for a in (tp, fp, fn))
    p = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    r = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    f = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0)
    return p, r, f


def at_k(Y, S, k: int) -> tuple:
    """(P@k, R@k) as fastText's ``test`` gives them: of the k highest scores of each text, the
    share that are true labels (over N·k), and the share of true labels found (over all)."""
    Y = np.asarray(Y, dtype=bool)
    k = min(k, S.shape[1])
    top = np.argpartition(-S, k - 1, axis=1)[:, :k]                  # (N, k)
    hits = np.take_along_axis(Y, top, axis=1).sum()
    return float(hits / (k * len(Y))) if len(Y) else 0.0, float(hits / max(int(Y.sum()), 1))


def multilabel_quick(Y, P) -> dict:
    """Micro-F1 and macro-F1 of predictions P against Y, in NumPy: the training loop's dev metric."""
    Y, P = np.asarray(Y, dtype=bool), np.asarray(P, dtype=bool)
    tp, fp, fn = (Y & P).sum(0), (~Y & P).sum(0), (Y & ~P).sum(0)    # (C,)
    return {"micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())[2]), "macro_f1": float(_f1(tp, fp, fn)[2].mean())}


def multilabel_report(Y, P, S, labels: list) -> dict:
    """Every multi-label figure of predictions P (scores S) against Y: micro, macro and samples
    averaged precision, recall and F1; P@1, P@5, R@5; Hamming loss; subset accuracy; and the
    per-label precision, recall, F1 and support."""
    Y, P = np.asarray(Y, dtype=bool), np.asarray(P, dtype=bool)
    tp, fp, fn = (Y & P).sum(0), (~Y & P).sum(0), (Y & ~P).sum(0)    # (C,)
    out = {}
    for name, (p, r, f) in (("micro", _f1(tp.sum(), fp.sum(), fn.sum())),
                            ("macro", tuple(a.mean() for a in _f1(tp, fp, fn))),
                            ("samples", tuple(a.mean() for a in _f1((Y & P).sum(1), (~Y & P).sum(1),
                                                                      (Y & ~P).sum(1))))):
        out.update({f"{name}_precision": float(p), f"{name}_recall": float(r), f"{name}_f1": float(f)})
    out["p_at_1"] = at_k(Y, S, 1)[0]
    out["p_at_5"], out["r_at_5"] = at_k(Y, S, 5)
    out["hamming_loss"] = float((Y != P).mean())
    out["subset_accuracy"] = float((Y == P).all(1).mean())
    p, r, f = _f1(tp, fp, fn)
    out["per_label"] = [{"label": l, "precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]),
                         "support": int(Y[:, c].sum())} for c, l in enumerate(labels)]
    return out


def decide(S, threshold, allow_empty: bool = False):
    """The (N, C) bool predictions: every label whose score is at or above its threshold (a
    number, or (C,) one per label), and the top label of a text that has none unless allow_empty."""
    P = S >= threshold                                               # (N, C)
    if not allow_empty:
        P[np.arange(len(S)), S.argmax(1)] = True
    return P


THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)        # the candidates tried on dev


def choose_thresholds(Y, S, per_label: bool = False, grid=THRESHOLD_GRID):
    """The threshold(s) that maximise dev micro-F1 of decide(S, t) against Y: one global number,
    or with per_label a (C,) array, each label's threshold chosen in turn (from the best global
    one) to maximise the micro-F1 with the others held. Vectorised over the grid."""
    Y = np.asarray(Y, dtype=bool)
    top = np.zeros_like(Y)
    top[np.arange(len(S)), S.argmax(1)] = True                       # the label always predicted
    best, best_f = float(grid[0]), -1.0
    for t in grid:
        f = multilabel_quick(Y, (S >= t) | top)["micro_f1"]
        if f > best_f:
            best, best_f = float(t), f
    if not per_label:
        return best
    th = np.full(S.shape[1], best)                                   # (C,)
    P = (S >= th) | top
    tp, fp, fn = int((Y & P).sum()), int((~Y & P).sum()), int((Y & ~P).sum())
    for c in range(S.shape[1]):                                      # a loop over labels, not texts
        y, keep = Y[:, c], top[:, c]
        old = P[:, c]
        base = (tp - (y & old).sum(), fp - (~y & old).sum(), fn - (y & ~old).sum())
        cand = (S[:, c][None, :] >= grid[:, None]) | keep            # (G, N)
        ctp, cfp, cfn = (base[0] + (cand & y).sum(1), base[1] + (cand & ~y).sum(1),
                         base[2] + (~cand & y).sum(1))               # (G,)
        g = int(np.argmax(2 * ctp / np.maximum(2 * ctp + cfp + cfn, 1)))
        th[c], P[:, c] = grid[g], cand[g]
        tp, fp, fn = int(ctp[g]), int(cfp[g]), int(cfn[g])
    return th


def several_report(Y, S, thresholds, labels: list, allow_empty: bool = False) -> dict:
    """multilabel_report of scores S (N, C) decided at ``thresholds`` (decide), with n, the
    labels, the thresholds, the support-weighted F1 of the labels, and ``multi_label``: the
    metrics of eval, report.json and report.md for a model with several labels a text."""
    m = multilabel_report(Y, decide(S, thresholds, allow_empty), S, labels)
    support = np.array([d["support"] for d in m["per_label"]], dtype=float)
    f1 = np.array([d["f1"] for d in m["per_label"]])
    m.update(n=int(len(Y)), labels=list(labels), multi_label=True,
             weighted_f1=float((f1 * support).sum() / max(support.sum(), 1.0)),
             thresholds=float(thresholds) if np.ndim(thresholds) == 0 else [float(t) for t in thresholds])
    return m

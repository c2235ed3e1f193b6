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

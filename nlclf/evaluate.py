"""A saved model against labelled data: `nlclf eval` and `nlclf compare`, and the scoring
cross-validation and search use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import calibration, checkpoint, data, metrics, plots, rundir, significance
from .errors import ConfigError, DataError, OutputError
from .model import Classifier
from .vocab import LabelSet


def score(model: Classifier, labels: list, texts: list) -> dict:
    """metrics.report of a model on labelled texts (labels unseen in training count as errors);
    for a model with several labels a text (``labels`` tuples), multilabel_report over every
    label the model or the texts know, decided at the model's thresholds (a label the model
    never saw is one it never predicts)."""
    if model.several:
        return _score_several(model, labels, texts)
    y = LabelSet(model.labels, model.labels).ids(labels, "", unknown=-1)
    pred = model.proba(list(texts)).argmax(1)
    return metrics.report(y, pred, model.labels)


def _decided(model: Classifier, names: list, texts: list) -> tuple:
    """(S, P), both (N, C) over the labels ``names`` (every one of the model's among them): the
    model's scores of the texts, 0 for a label it never saw, and its decisions at its thresholds."""
    cols = np.array([names.index(l) for l in model.labels])
    S = np.zeros((len(texts), len(names)))
    S[:, cols] = model.proba(list(texts))
    P = np.zeros(S.shape, dtype=bool)
    P[:, cols] = metrics.decide(S[:, cols], 0.5 if model.thresholds is None else model.thresholds)
    return S, P


def _score_several(model: Classifier, sets: list, texts: list) -> dict:
    names = sorted(set(model.labels) | {l for these in sets for l in these})
    S, P = _decided(model, names, texts)
    return dict(metrics.multilabel_report(data.label_matrix(sets, names), P, S, names), n=len(sets))


def _read_eval(model: Classifier, data_path, opts=None):
    rows = list(data.iter_labelled(data_path, opts, known=set(model.labels)))
    if not rows:
        raise DataError(f"{data_path}: no examples (expected lines of 'label<TAB>text')")
    y = LabelSet(model.labels, model.labels).ids([r[1] for r in rows], data_path)
    return rows, y


def run_eval(model_dir, data_path, errors: int = 0, bins: int = 15, plot_dir=None, top_k: int = 1) -> dict:
    """Metrics of a saved model on a labelled file, its calibration (ECE, reliability bins),
    with ``top_k`` > 1 the top-k accuracy and fastText's P@k and R@k (one true label a text:
    P@k = hits / (N k), R@k = hits / N), and with ``errors`` the most confident mistakes."""
    if plot_dir is not None and Path(plot_dir).exists() and not Path(plot_dir).is_dir():
        raise OutputError(f"{plot_dir}: --plots names a folder for the pictures; this is an existing file")
    model, cfg, _ = checkpoint.load(model_dir)
    if model.several:
        return eval_several(model, cfg, data_path, top_k)
    rows, y = _read_eval(model, data_path, cfg.data)
    probs = model.proba([r[2] for r in rows])
    pred = probs.argmax(1)
    m = metrics.report(y, pred, model.labels)
    m["ece"] = calibration.ece(probs, y, bins)
    if top_k > 1:
        k = min(top_k, len(model.labels))
        top = np.argpartition(-probs, k - 1, axis=1)[:, :k]                  # (N, k), any order
        hits = int((top == y[:, None]).any(axis=1).sum())
        m.update(top_k=k, top_k_accuracy=hits / len(y), precision_at_k=hits / (len(y) * k), recall_at_k=hits / len(y))
    m["reliability"] = calibration.reliability(probs, y, bins)
    if errors:
        wrong = np.flatnonzero(pred != y)
        wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:errors]
        m["errors"] = [{"line": rows[i][0], "label": rows[i][1], "predicted": model.labels[pred[i]],
                        "proba": float(probs[i, pred[i]]), "text": rows[i][2]} for i in wrong.tolist()]
    if plot_dir is not None:
        m["pictures"] = []
        if plots.available():
            d = Path(plot_dir)
            for name in ("reliability.png", "confusion_matrix.png"):
                rundir.refuse_if_owned(d / name, "--plots")
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"{d}: cannot create the folder for the pictures: {e.strerror or e}") from None
            m["pictures"] = [str(plots.reliability_diagram(m["reliability"], d / "reliability.png"))]
            if m["confusion_matrix"] is not None:
                m["pictures"].append(str(plots.confusion_heatmap(m["confusion_matrix"], m["labels"],
                                                                 d / "confusion_matrix.png")))
    return m


def eval_several(model: Classifier, cfg, data_path, top_k: int = 1) -> dict:
    """run_eval of a model with several labels a text: metrics.several_report at the model's
    thresholds (micro/macro/samples precision, recall, F1, P@1, P@5, R@5, Hamming loss, subset
    accuracy, the per-label table), with ``top_k`` > 1 also P@k and R@k."""
    sets, texts = data.read_multilabelled(data_path, cfg.data, known=set(model.labels))
    Y = data.label_matrix(sets, model.labels)                       # (N, C)
    S = model.proba(texts)                                          # (N, C)
    m = metrics.several_report(Y, S, model.thresholds, model.labels)
    if top_k > 1:
        k = min(top_k, len(model.labels))
        m["top_k"] = k
        m["precision_at_k"], m["recall_at_k"] = metrics.at_k(Y, S, k)
    return m


def run_compare(model_a, model_b, data_path, resamples: int = 10000, seed: int = 0) -> dict:
    """Both models on the same labelled file, and whether the difference is more than noise:
    McNemar's test on the examples where they disagree, and a paired bootstrap of the
    accuracy difference (B minus A). The data is read once (with model A's data settings);
    the tables are over every label either model or the data knows, and an example whose label
    a model never saw counts as that model's error (``notes`` says which)."""
    (ma, cfg, _), (mb, _, _) = checkpoint.load(model_a), checkpoint.load(model_b)
    if ma.several != mb.several:
        one, other = (model_a, model_b) if ma.several else (model_b, model_a)
        raise ConfigError(f"{one} gives several labels a text and {other} one: compare needs two models of a kind")
    if ma.several:
        return compare_several((model_a, ma), (model_b, mb), cfg, data_path, resamples, seed)
    rows = list(data.iter_labelled(data_path, cfg.data))
    if not rows:
        raise DataError(f"{data_path}: no examples")
    truth = [r[1] for r in rows]
    texts = [r[2] for r in rows]
    names = sorted(set(ma.labels) | set(mb.labels) | set(truth))
    union = LabelSet(names, names)
    y = union.ids(truth, data_path)
    out, preds, notes = {}, [], []
    for key, path, model in (("a", model_a, ma), ("b", model_b, mb)):
        ids = union.ids(model.labels, path)[model.proba(texts).argmax(1)]                   # (N,)
        preds.append(ids)
        unseen = sorted(set(truth) - set(model.labels))
        if unseen:
            n = sum(1 for l in truth if l not in set(model.labels))
            notes.append(f"model {key.upper()} ({path}) never saw the label(s) {', '.join(unseen[:5])}"
                         f"{' ...' if len(unseen) > 5 else ''}: its {n} example(s) count as its errors")
        out[key] = dict(metrics.report(y, ids, names), model=str(path))
    out["notes"] = notes
    out["b_minus_a"] = {k: out["b"][k] - out["a"][k] for k in ("accuracy", "macro_f1")}
    out["mcnemar"] = significance.mcnemar(y, preds[0], preds[1])
    out["bootstrap"] = significance.paired_bootstrap(y, preds[0], preds[1], resamples, seed)
    return out


def compare_several(a: tuple, b: tuple, cfg, data_path, resamples: int = 10000, seed: int = 0) -> dict:
    """run_compare of two models with several labels a text, (path, Classifier) each: both
    decide at their own thresholds; the metrics of each (metrics.multilabel_report over every
    label either model or the data knows; a label a model never saw is one it never predicts),
    B − A of micro-F1, macro-F1, P@1 and subset accuracy, McNemar's test on the texts whose
    labels each model got exactly, and a paired bootstrap of the micro-F1 difference."""
    sets, texts = data.read_multilabelled(data_path, cfg.data)
    names = sorted(set(a[1].labels) | set(b[1].labels) | {l for these in sets for l in these})
    Y = data.label_matrix(sets, names).astype(bool)                      # (N, C) over the union
    out, decided, notes = {}, [], []
    for key, (path, model) in (("a", a), ("b", b)):
        S, P = _decided(model, names, texts)
        decided.append(P)
        unseen = sorted(set(names) - set(model.labels))
        if unseen and Y[:, [names.index(l) for l in unseen]].any():
            notes.append(f"model {key.upper()} ({path}) never saw the label(s) {', '.join(unseen[:5])}"
                         f"{' ...' if len(unseen) > 5 else ''}: it never predicts them")
        out[key] = dict(metrics.multilabel_report(Y, P, S, names), model=str(path), n=int(len(Y)))
    out["multi_label"] = True
    out["notes"] = notes
    out["b_minus_a"] = {k: out["b"][k] - out["a"][k] for k in ("micro_f1", "macro_f1", "p_at_1", "subset_accuracy")}
    exact = [(P == Y).all(axis=1) for P in decided]                      # (N,) every label right
    out["mcnemar"] = significance.mcnemar_of(*exact)
    out["bootstrap"] = significance.paired_bootstrap_micro_f1(Y, decided[0], decided[1], resamples, seed)
    return out

"""PNG figures of a run: learning curves, confusion matrix, reliability diagram.

matplotlib is optional: it is imported inside the functions, through its object-oriented
API on the Agg canvas (no pyplot, no global backend switch, no display). Without it every
plotting function raises ``PlotsUnavailable``, an ``ImportError`` that is also an
``NlclfError``, so the CLI reports it like any of our errors; ``available()`` asks first.
Each figure is rendered in memory and written with ``rundir.atomic_write`` (a temporary
file beside the target, then ``os.replace``): a reader never sees half a PNG.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np

from .rundir import atomic_write
from .errors import NlclfError

DPI = 110
ANNOTATE_MAX = 30          # classes up to which the confusion matrix shows its counts


class PlotsUnavailable(NlclfError, ImportError):
    """matplotlib is not installed."""


def available() -> bool:
    """True if matplotlib can be imported."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib, which is not installed: pip install matplotlib") from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write(path, buf.getvalue())
    return path


def learning_curves(history: list, path) -> Path:
    """Train and dev loss per epoch (left), dev accuracy and macro-F1 per epoch (right).

    history: the training loop's records, dicts with keys epoch, train_loss, dev_loss,
    dev_accuracy (dev_micro_f1 for several labels a text), dev_macro_f1 (a missing or None
    value leaves a gap).
    """
    fig = _figure(10, 4)
    loss_ax, score_ax = fig.subplots(1, 2)
    runs = {}                                       # an ensemble's records carry their member
    for h in history:
        runs.setdefault(h.get("member", 1), []).append(h)

    def series(hs, key):
        return [np.nan if h.get(key) is None else float(h[key]) for h in hs]

    for member, hs in runs.items():
        epochs = [h["epoch"] for h in hs]
        alpha = 1.0 if len(runs) == 1 else 0.55
        tag = "" if member == min(runs) else "_"   # one legend entry per curve kind
        loss_ax.plot(epochs, series(hs, "train_loss"), "o-", color="tab:blue", alpha=alpha, label=tag + "train loss")
        loss_ax.plot(epochs, series(hs, "dev_loss"), "s-", color="tab:orange", alpha=alpha, label=tag + "dev loss")
        first = "dev_micro_f1" if "dev_micro_f1" in hs[0] else "dev_accuracy"     # several labels a text: micro-F1
        score_ax.plot(epochs, series(hs, first), "o-", color="tab:green", alpha=alpha,
                      label=tag + ("dev micro-F1" if first == "dev_micro_f1" else "dev accuracy"))
        score_ax.plot(epochs, series(hs, "dev_macro_f1"), "s--", color="tab:purple", alpha=alpha,
                      label=tag + "dev macro-F1")
    members = f" ({len(runs)} ensemble members)" if len(runs) > 1 else ""
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss" + members)
    score_ax.set(xlabel="epoch", ylabel="score", title="Dev scores" + members)
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def confusion_heatmap(matrix, labels: list, path) -> Path:
    """The confusion matrix (rows: true class, columns: predicted) as a heat map of counts (C, C).

    Cells are annotated with their counts up to ANNOTATE_MAX classes.
    """
    m = np.asarray(matrix)                                              # (C, C)
    c = len(labels)
    side = min(max(4.5, 0.45 * c + 2.5), 30)
    fig = _figure(side + 1, side)
    ax = fig.subplots()
    image = ax.imshow(m, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="count")
    ax.set(xticks=range(c), yticks=range(c), xlabel="predicted", ylabel="true", title="Confusion matrix")
    ax.set_xticklabels([str(l) for l in labels], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticklabels([str(l) for l in labels])
    if c <= ANNOTATE_MAX:
        half = m.max() / 2 if m.size else 0
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=9,
                    color="white" if v > half else "black")
    return _save(fig, path)


def reliability_diagram(rel: dict, path) -> Path:
    """Accuracy against confidence per bin, the diagonal of perfect calibration, the gap
    between them, and the number of examples per bin below; ``rel`` from
    ``calibration.reliability``."""
    edges = np.asarray(rel["edges"], dtype=float)                       # (M+1,)
    width = np.diff(edges)                                              # (M,)
    seen = np.array([a is not None for a in rel["accuracy"]])
    acc = np.array([a if a is not None else 0.0 for a in rel["accuracy"]])
    conf = np.array([q if q is not None else 0.0 for q in rel["confidence"]])
    fig = _figure(5.5, 6.5)
    ax, count_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    left = edges[:-1][seen]
    ax.bar(left, acc[seen], width[seen], align="edge", color="tab:blue", edgecolor="black",
           label="accuracy")
    ax.bar(left, conf[seen] - acc[seen], width[seen], bottom=acc[seen], align="edge",
           color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    title = "Reliability"
    if rel.get("ece") is not None:
        title += f" (ECE = {rel['ece']:.4f})"
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    count_ax.bar(edges[:-1], rel["count"], width, align="edge", color="gray", edgecolor="black")
    count_ax.set(xlabel="confidence (max probability)", ylabel="examples")
    return _save(fig, path)

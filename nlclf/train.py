"""The training loop: minibatches, epochs, dev evaluation, early stopping.

Progress is reported through a callback, never printed. The loop owns no I/O.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import metrics
from .config import TrainConfig
from .errors import TrainingDiverged
from .nn import mlp, optim
from .nn.losses import cross_entropy, log_softmax

EVAL_BATCH = 2048


@dataclass
class Result:
    params: dict                      # the best epoch's weights (copies)
    best_epoch: int
    best_score: float
    history: list = field(default_factory=list)
    train_seconds: float = 0.0        # the minibatch loop alone, dev evaluation excluded
    steps: int = 0


def n_rows(X) -> int:
    return X.shape[0]


def predict_logits(params, spec, X, batch: int = EVAL_BATCH):
    """Logits z (N, C), computed in slices so memory stays bounded."""
    out = [mlp.forward(params, spec, X[i:i + batch])[0] for i in range(0, n_rows(X), batch)]
    return np.concatenate(out) if out else np.zeros((0, spec.n_classes), dtype=np.float32)


def evaluate(params, spec, X, y) -> dict:
    """Mean loss, accuracy and macro-F1 on (X, y)."""
    z = predict_logits(params, spec, X)
    loss = float(-log_softmax(z.astype(np.float64))[np.arange(len(y)), y].mean())
    out = metrics.quick(y, z.argmax(axis=1), spec.n_classes)
    out["loss"] = loss
    return out


def _check_finite(loss: float, params: dict, epoch: int, batch: int) -> None:
    bad = None
    if not math.isfinite(loss):
        bad = f"the loss became {loss}"
    else:
        for name, p in params.items():
            if not np.isfinite(p).all():
                bad = f"parameter {name} has non-finite values"
                break
    if bad:
        raise TrainingDiverged(f"training diverged at epoch {epoch}, batch {batch}: {bad}. "
                               f"Try a lower train.lr, or set train.clip_norm (e.g. 5.0)")


def fit(params: dict, spec: mlp.NetSpec, X, y, X_dev, y_dev, cfg: TrainConfig,
        rng: np.random.Generator, decay: dict | None = None, lr_mult: dict | None = None,
        on_progress=None) -> Result:
    """Minibatch training of ``params`` in place; returns the best dev epoch's weights.

    decay: parameter name -> L2 coefficient; lr_mult: parameter name -> learning-rate factor.
    on_progress(event: str, info: dict) receives "epoch_start", "batch" and "epoch_end".
    """
    decay = decay or {}
    report = on_progress or (lambda event, info: None)
    opt = optim.make(cfg.optimizer, params, cfg.momentum, cfg.beta1, cfg.beta2, cfg.eps, lr_mult)
    n = n_rows(X)
    bs = cfg.batch_size
    n_batches = max(1, math.ceil(n / bs))
    total = cfg.epochs * n_batches
    best = Result(params={k: v.copy() for k, v in params.items()}, best_epoch=0, best_score=-math.inf)
    since_best = 0
    step = 0
    loop_seconds = 0.0
    for epoch in range(1, cfg.epochs + 1):
        report("epoch_start", {"epoch": epoch, "batches": n_batches})
        t0 = time.perf_counter()
        order = rng.permutation(n)
        loss_sum = 0.0
        for b in range(n_batches):
            idx = np.sort(order[b * bs:(b + 1) * bs])
            z, caches = mlp.forward(params, spec, X[idx], train=True, rng=rng)
            loss, dz = cross_entropy(z, y[idx], cfg.label_smoothing)
            grads = mlp.backward(params, spec, caches, dz)
            loss += mlp.add_l2(params, grads, decay)
            if cfg.clip_norm > 0:
                optim.clip_by_global_norm(grads, cfg.clip_norm)
            lr = optim.lr_at(step, total, cfg.lr, cfg.schedule, cfg.warmup)
            opt.step(params, grads, lr)
            step += 1
            loss_sum += loss
            if not math.isfinite(loss):
                _check_finite(loss, params, epoch, b + 1)
            report("batch", {"loss": loss})
        _check_finite(loss_sum, params, epoch, n_batches)
        seconds = time.perf_counter() - t0
        loop_seconds += seconds
        record = {"epoch": epoch, "train_loss": loss_sum / n_batches, "lr": lr, "seconds": seconds}
        dev = evaluate(params, spec, X_dev, y_dev)
        record.update({"dev_loss": dev["loss"], "dev_accuracy": dev["accuracy"],
                       "dev_macro_f1": dev["macro_f1"]})
        best.history.append(record)
        score = dev[cfg.metric]
        if score > best.best_score:
            best.best_score, best.best_epoch, since_best = score, epoch, 0
            best.params = {k: v.copy() for k, v in params.items()}
        else:
            since_best += 1
        report("epoch_end", dict(record, best_epoch=best.best_epoch))
        if cfg.patience and since_best >= cfg.patience:
            break
    best.train_seconds = loop_seconds
    best.steps = step
    return best

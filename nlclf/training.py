"""The training loop: minibatches, epochs, dev evaluation, early stopping, resumable state.

``fit`` trains one network, ``fit_ensemble`` K of them merged into one. Progress, checkpoints
and stopping go through one Hooks object; the loop owns no I/O. Batches are
cut and prepared (sparse structure, transposes) by a helper thread a few batches ahead of
the one being trained on; that work depends only on the epoch's permutation, so the results
are the same as without it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from . import metrics, parallel
from .config import AUTO, TrainConfig
from .errors import CheckpointError, Interrupted, TrainingDiverged
from .features.base import AUTO_TOKENS
from .runtime import BATCHES_MALLOC, blas_threads, malloc_thresholds
from .nn import mlp, optim
from .nn.layers import SparseBatch
from .nn.losses import binary_cross_entropy, cross_entropy, log_softmax, sigmoid

EVAL_BATCH = 2048
PREFETCH = 8


@dataclass
class State:
    """Everything needed to continue training exactly where it stopped."""

    params: dict
    opt_arrays: dict
    opt_t: int
    rng_state: dict
    epoch: int = 1                    # the epoch in progress (1-based)
    batch: int = 0                    # batches of it already done
    order: np.ndarray | None = None   # its permutation of the training rows
    loss_sum: float = 0.0
    step: int = 0
    best_params: dict = field(default_factory=dict)
    best_epoch: int = 0
    best_score: float = -math.inf
    since_best: int = 0
    history: list = field(default_factory=list)
    done: bool = False
    member: int = 0                   # ensembles: the member in training (0-based) ...
    members: list = field(default_factory=list)        # ... the finished members' best weights
    members_info: list = field(default_factory=list)   # ... and their summaries (Result.summary)


class StopRequest:
    """Set from a signal handler (the CLI's): the training loop polls it after every batch and,
    once set, saves its state and raises Interrupted with exit code 128 + ``signum``.
    ``in_loop`` tells the handler whether a loop is there to poll it; outside one a signal
    should stop the command at once."""

    def __init__(self):
        self.signum = 0
        self.in_loop = False

    def __call__(self) -> bool:
        return bool(self.signum)


@dataclass
class Result:
    params: dict                      # the best epoch's weights (copies)
    best_epoch: int
    best_score: float
    history: list = field(default_factory=list)
    train_seconds: float = 0.0        # the minibatch loop alone, dev evaluation excluded
    steps: int = 0
    members: list = field(default_factory=list)   # ensembles: each member's summary()

    def summary(self) -> dict:
        """What a report keeps of one member's training."""
        return {"best_epoch": self.best_epoch, "best_score": self.best_score, "epochs": len(self.history),
                "train_seconds": self.train_seconds, "steps": self.steps, "history": self.history}


def n_rows(X) -> int:
    return X.shape[0]


def predict_logits(params, spec, X, batch: int = EVAL_BATCH):
    """Logits z (N, C), computed in slices so memory stays bounded."""
    out = [mlp.forward(params, spec, X[i:i + batch])[0] for i in range(0, n_rows(X), batch)]
    return np.concatenate(out) if out else np.zeros((0, spec.n_classes), dtype=np.float32)


def evaluate(params, spec, X, y) -> dict:
    """Mean loss, accuracy and macro-F1 on (X, y) (micro-F1: the accuracy, one label a text);
    for a sigmoid output see evaluate_several."""
    z = predict_logits(params, spec, X)
    if spec.output == "sigmoid":
        return evaluate_several(z, y)
    loss = float(-log_softmax(z.astype(np.float64))[np.arange(len(y)), y].mean()) if len(y) else 0.0
    out = metrics.quick(y, z.argmax(axis=1), spec.n_classes)
    out["micro_f1"] = out["accuracy"]
    out["loss"] = loss
    return out


def evaluate_several(z, Y) -> dict:
    """Several labels a text, logits z (N, C) against Y (N, C) 0/1: the mean binary cross-entropy
    (no smoothing, no weights), and micro- and macro-F1 at the global threshold that maximises
    the micro-F1 (metrics.choose_thresholds: the decision the saved model will make)."""
    if not len(Y):
        return {"loss": 0.0, "micro_f1": 0.0, "macro_f1": 0.0, "threshold": 0.5}
    z = z.astype(np.float64)
    loss = binary_cross_entropy(z, Y)[0]
    S = sigmoid(z)                                                   # (N, C)
    t = metrics.choose_thresholds(Y, S)
    out = metrics.multilabel_quick(Y, metrics.decide(S, t))
    out.update(loss=loss, threshold=t)
    return out


POS_WEIGHT_RANGE = (1.0, 10.0)          # train.pos_weight auto: sqrt(negatives / positives), clipped to this


def pos_weights(Y, pos_weight) -> np.ndarray:
    """(C,) float32 weights of each label's positives in the binary cross-entropy, from the
    training labels Y (N, C): a number for every label, or for ``auto`` sqrt((N − n_c) / n_c)
    clipped to POS_WEIGHT_RANGE (n_c texts with label c): a label on 1 % of the texts gets
    about 10, one on a quarter of them 1.7, one on half or more 1 (no weight)."""
    n_c = np.asarray(Y.sum(axis=0, dtype=np.int64), dtype=np.float64)          # (C,)
    if pos_weight != AUTO:
        return np.full(len(n_c), float(pos_weight), dtype=np.float32)
    w = np.sqrt((Y.shape[0] - n_c) / np.maximum(n_c, 1.0))
    return np.clip(w, *POS_WEIGHT_RANGE).astype(np.float32)


def _diverged(loss: float, params: dict, epoch: int, batch: int):
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


def _cut(X, order, b: int, bs: int, sparse: bool):
    """Batch b: (its row indices, sorted; those rows of X, prepared for the first layer)."""
    idx = np.sort(order[b * bs:(b + 1) * bs])
    Xb = X[idx]
    return idx, (SparseBatch.of(Xb) if sparse else Xb)


def batches(X, order, bs: int, start: int, sparse: bool):
    """The epoch's (indices, batch) pairs from number ``start`` on, cut by a helper thread PREFETCH ahead.

    Rows within a batch are sorted (faster CSR slicing; the batch mean does not care).
    """
    n_batches = math.ceil(len(order) / bs)
    if n_batches - start <= 2 or not PREFETCH:
        for b in range(start, n_batches):
            yield _cut(X, order, b, bs, sparse)
        return
    yield from parallel.background((_cut(X, order, b, bs, sparse) for b in range(start, n_batches)),
                                   PREFETCH)


AUTO_EPOCH = 200_000          # train.epoch_size 0: an epoch is at most this many examples
AUTO_SGD_EXAMPLES = 1_000_000  # train.optimizer auto: plain SGD for a bag of at least this many examples, row-wise
                               # Adagrad below that from AUTO_TOKENS training tokens (where the feature budget starts)
AUTO_LR = {"adam": 0.0003, "sgd": 2.0, "momentum": 0.2, "adagrad": 0.1}        # train.lr auto, by optimizer
AUTO_SCHEDULE = {"adam": "constant", "sgd": "linear", "momentum": "linear", "adagrad": "constant"}   # train.schedule auto
AUTO_PATIENCE = 3             # train.patience auto with a constant schedule; a decaying one runs to its end


def auto_optimizer(n: int, bow: bool, n_tokens: int | None = None) -> tuple:
    """(optimizer, why) that ``train.optimizer: auto`` picks for n training examples of
    n_tokens tokens (None: not known, as for a caller of fit that did not say).

    Adam's per-row moments cost a (U, H) gather, update and scatter of two more tables a
    step; row-wise Adagrad keeps one number a row and updates W's rows in the CSR pass of
    plain SGD, and plain SGD does that pass alone. Measured on the corpora of bench/corpus.py
    (README: Large training sets): at 100,000 documents (5.4 M tokens) Adagrad matched Adam's
    dev accuracy in a fifth of the time and SGD fell 0.5 points short; at 10,000 (0.54 M
    tokens, every word's character n-grams) Adagrad lost 1.3 points to Adam; at 1,000,000
    SGD with a linear decay ended ahead. The embedding kinds keep Adam (not measured)."""
    if not bow:
        return "adam", "adam for the embedding kinds"
    if n >= AUTO_SGD_EXAMPLES:
        return "sgd", f"sgd from {AUTO_SGD_EXAMPLES:,} training examples of a bag"
    if n_tokens is not None and n_tokens >= AUTO_TOKENS:
        return "adagrad", (f"adagrad for a bag of under {AUTO_SGD_EXAMPLES:,} training examples "
                           f"and at least {AUTO_TOKENS:,} tokens")
    return "adam", f"adam for a bag of under {AUTO_TOKENS:,} training tokens"


def resolve_auto(cfg: TrainConfig, n: int, bow: bool, n_tokens: int | None = None) -> TrainConfig:
    """``cfg`` with its ``auto`` optimizer (auto_optimizer), lr and schedule (the optimizer's:
    AUTO_LR, AUTO_SCHEDULE) and patience (auto_patience) chosen for n training examples of
    n_tokens tokens; ``bow``: the input is a bag (kind bow)."""
    opt = cfg.optimizer
    if opt == AUTO:
        opt = auto_optimizer(n, bow, n_tokens)[0]
    schedule = AUTO_SCHEDULE[opt] if cfg.schedule == AUTO else cfg.schedule
    return dataclasses.replace(cfg, optimizer=opt, lr=AUTO_LR[opt] if cfg.lr == AUTO else cfg.lr, schedule=schedule,
                               patience=auto_patience(schedule) if cfg.patience == AUTO else cfg.patience)


def auto_patience(schedule: str) -> int:
    """``train.patience: auto``: AUTO_PATIENCE epochs with a constant schedule; none (0, run to
    the end) with one that decays to zero, whose dev score still rises as the rate falls: on
    1,000,000 corpus documents SGD's linear decay stopped by a patience of 3 at epoch 12 of
    20 with dev accuracy 0.9839, and reached 0.9880 at epoch 19 without it."""
    return AUTO_PATIENCE if schedule == "constant" else 0


def epoch_parts(n: int, epoch_size: int) -> tuple:
    """(k, m): an epoch is one of k equal slices, m rows each (the last may be shorter), of a
    shuffled pass over the n training rows: k = 1 (a whole pass) unless n is above the epoch
    size (epoch_size, or AUTO_EPOCH for 0), so that a large set is evaluated on dev, stopped
    early and checkpointed within a pass."""
    size = epoch_size or AUTO_EPOCH
    k = max(1, math.ceil(n / size))
    return k, math.ceil(n / k) if n else 0


def new_state(params: dict, opt, rng: np.random.Generator) -> State:
    return State(params=params, opt_arrays=opt.state_arrays(), opt_t=opt.t,
                 rng_state=rng.bit_generator.state)


@dataclass
class Data:
    """What the network trains on: X (N, ·) and y (N,) label ids, X_dev and y_dev for early
    stopping; X is CSR for the bag kinds (or anything CSR rows can be cut from by ``X[rows]``,
    as features.store.RowStore), (N, T) int32 ids for embed_concat. For a sigmoid output y
    and y_dev are (N, C) uint8 0/1 label matrices (made float per batch only) and
    ``pos_weight`` (C,) weighs each label's positives."""

    X: object
    y: np.ndarray
    X_dev: object
    y_dev: np.ndarray
    pos_weight: np.ndarray | None = None


@dataclass
class Hooks:
    """How a run reports and how it is stopped; every field optional.

    progress(event, info): "epoch_start", "batch", "epoch_end", "stopped" (by patience), and
    "member_start" for ensembles. checkpoint(state, why, best_network): at the end of every
    epoch ("epoch", or "best" when it is the best so far) and on interruption ("interrupt");
    ``best_network()`` returns the (spec, params) of the best model so far. stop(): polled
    after every batch (a StopRequest); once true, the state goes to checkpoint and Interrupted
    is raised."""

    progress: Callable | None = None
    checkpoint: Callable | None = None
    stop: Callable | None = None


def regularization(spec: mlp.NetSpec, cfg: TrainConfig, embed_lr: float = 1.0, embed_l2: float = 0.0):
    """(decay, lr_mult): parameter name -> L2 coefficient (weight_decay on the weights, never
    the biases; embed_l2 on the embedding table) and -> learning-rate factor (embed_lr on E)."""
    names = mlp.param_shapes(spec)
    decay = {n: cfg.weight_decay for n in names if not n.startswith("b") and n != "E"}
    lr_mult = {}
    if "E" in names:
        decay["E"] = embed_l2
        lr_mult["E"] = embed_lr
    return decay, lr_mult


def fit(spec: mlp.NetSpec, params: dict, data: Data, cfg: TrainConfig, rng: np.random.Generator,
        hooks: Hooks | None = None, state: State | None = None, embed_lr: float = 1.0,
        embed_l2: float = 0.0) -> Result:
    """Minibatch training of the network ``spec`` from ``params`` (in place); returns the best
    dev epoch's weights. ``state``: a State to continue from (weights, optimiser, generator and
    position restored). Overflow is not warned about: a non-finite loss or weight stops
    training with TrainingDiverged instead."""
    with malloc_thresholds(BATCHES_MALLOC), blas_threads(1), \
            np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        cfg = resolve_auto(cfg, n_rows(data.X), spec.input_kind == "bow")
        if spec.output == "sigmoid" and cfg.metric == "accuracy":      # several labels a text: micro-F1
            cfg = dataclasses.replace(cfg, metric="micro_f1")
        return _fit(spec, params, data, cfg, rng, hooks or Hooks(), state, embed_lr, embed_l2)


def _fit(spec, params, data: Data, cfg: TrainConfig, rng, hooks: Hooks, state, embed_lr, embed_l2) -> Result:
    X, y, X_dev, y_dev = data.X, data.y, data.X_dev, data.y_dev
    several = spec.output == "sigmoid"
    if several:                                            # (loss, dz) of a batch's logits, chosen once
        loss_of = lambda z, yb: binary_cross_entropy(z, yb, cfg.label_smoothing, data.pos_weight)
    else:
        loss_of = lambda z, yb: cross_entropy(z, yb, cfg.label_smoothing)
    decay, lr_mult = regularization(spec, cfg, embed_lr, embed_l2)
    progress = hooks.progress or (lambda event, info: None)
    stop = hooks.stop
    opt = optim.make(cfg.optimizer, params, cfg.momentum, cfg.beta1, cfg.beta2, cfg.eps, lr_mult,
                     rows=mlp.row_sparse(spec))
    if state is None:
        state = new_state(params, opt, rng)
        state.best_params = {k: v.copy() for k, v in params.items()}
    else:
        opt.load_state_arrays(state.opt_arrays, state.opt_t)
        rng.bit_generator.state = state.rng_state
    n = n_rows(X)
    bs = cfg.batch_size
    sparse = not isinstance(X, np.ndarray)                  # CSR or a features.store.RowStore, not (N, T) ids
    parts, m = epoch_parts(n, cfg.epoch_size)              # an epoch: one of `parts` slices of a shuffled pass
    n_batches = max(1, math.ceil(m / bs))
    total = cfg.epochs * n_batches

    def snapshot(why: str):
        if hooks.checkpoint:
            state.opt_arrays, state.opt_t = opt.state_arrays(), opt.t
            state.rng_state = rng.bit_generator.state
            hooks.checkpoint(state, why)

    loop_seconds = 0.0
    lr = optim.lr_at(state.step, total, cfg.lr, cfg.schedule, cfg.warmup)

    def _loop() -> Result:
        nonlocal loop_seconds, lr
        while state.epoch <= cfg.epochs and not state.done:
            epoch = state.epoch
            part = (epoch - 1) % parts
            if state.batch == 0:
                if part == 0 or state.order is None:
                    state.order = rng.permutation(n)
                state.loss_sum = 0.0
            rows = state.order[part * m:(part + 1) * m]
            progress("epoch_start", {"epoch": epoch, "epochs": cfg.epochs, "batches": n_batches, "done": state.batch,
                                   "step": state.step, "total_steps": total})
            t0 = time.perf_counter()
            for b, (idx, Xb) in enumerate(batches(X, rows, bs, state.batch, sparse), start=state.batch):
                yb = y[idx]
                z, caches = mlp.forward(params, spec, Xb, train=True, rng=rng)
                loss, dz = loss_of(z, yb)
                grads = mlp.backward(params, spec, caches, dz)
                loss += mlp.add_l2(params, grads, decay)
                if cfg.clip_norm > 0:
                    optim.clip_by_global_norm(grads, cfg.clip_norm)
                lr = optim.lr_at(state.step, total, cfg.lr, cfg.schedule, cfg.warmup)
                opt.step(params, grads, lr)
                state.step += 1
                state.batch = b + 1
                state.loss_sum += loss
                if not math.isfinite(loss):
                    _diverged(loss, params, epoch, b + 1)
                progress("batch", {"loss": loss})
                if stop is not None and stop():
                    loop_seconds += time.perf_counter() - t0
                    snapshot("interrupt")
                    signum = getattr(stop, "signum", 2) or 2
                    raise Interrupted(f"{'interrupted' if signum == 2 else 'terminated'} at epoch {epoch}, "
                                      f"batch {b + 1} of {n_batches}", 128 + signum)
            _diverged(state.loss_sum, params, epoch, n_batches)
            seconds = time.perf_counter() - t0
            loop_seconds += seconds
            record = {"epoch": epoch, "train_loss": state.loss_sum / n_batches, "lr": lr, "seconds": seconds}
            if parts > 1:
                record["passes"] = round(epoch / parts, 4)
            dev = evaluate(params, spec, X_dev, y_dev)
            if several:
                record.update({"dev_loss": dev["loss"], "dev_micro_f1": dev["micro_f1"],
                               "dev_macro_f1": dev["macro_f1"], "dev_threshold": dev["threshold"]})
            else:
                record.update({"dev_loss": dev["loss"], "dev_accuracy": dev["accuracy"],
                               "dev_macro_f1": dev["macro_f1"]})
            state.history.append(record)
            score = dev[cfg.metric]
            improved = score > state.best_score
            significant = score > state.best_score + cfg.min_delta    # patience waits for these only
            state.since_best = 0 if significant else state.since_best + 1
            if improved:
                state.best_score, state.best_epoch = score, epoch
                state.best_params = {k: v.copy() for k, v in params.items()}
            progress("epoch_end", dict(record, epochs=cfg.epochs, best=improved, best_epoch=state.best_epoch,
                                     metric=cfg.metric))
            state.epoch, state.batch = epoch + 1, 0
            patience_out = bool(cfg.patience and state.since_best >= cfg.patience)
            state.done = state.epoch > cfg.epochs or patience_out
            if patience_out and state.epoch <= cfg.epochs:
                progress("stopped", {"epoch": epoch, "epochs": cfg.epochs, "patience": cfg.patience, "min_delta": cfg.min_delta,
                                   "best_epoch": state.best_epoch, "best_score": state.best_score,
                                   "metric": cfg.metric})
            snapshot("best" if improved else "epoch")
        return Result(params=state.best_params, best_epoch=state.best_epoch, best_score=state.best_score,
                      history=state.history, train_seconds=loop_seconds, steps=state.step)

    polled = stop if hasattr(stop, "in_loop") else None
    if polled is not None:
        polled.in_loop = True         # a signal now stops after the batch instead of at once
    try:
        return _loop()
    finally:
        if polled is not None:
            polled.in_loop = False


def fit_ensemble(spec: mlp.NetSpec, init: Callable, data: Data, cfg: TrainConfig, seed: int,
                 rng: np.random.Generator, hooks: Hooks | None = None, state: State | None = None,
                 embed_lr: float = 1.0, embed_l2: float = 0.0):
    """Train ``cfg.ensemble`` = K networks one after the other and return (spec, params,
    Result) of the one network averaging their logits (mlp.merge; K = 1: the network itself).

    Member 0 starts from ``init(rng)``, member k from ``init`` of the generator seeded
    [seed, k], each with its own shuffles and dropout, each stopped on dev by itself; the
    merged network is scored on dev as a whole. This loop owns the members: the finished
    ones' best weights and summaries live in the State it checkpoints (``member``,
    ``members``, ``members_info``), so ``state`` resumes inside any member."""
    hooks = hooks or Hooks()
    K = cfg.ensemble
    members = list(state.members) if state is not None else []
    infos = list(state.members_info) if state is not None else []
    result = None
    for k in range(len(members), K):
        rng_k = rng if k == 0 else np.random.default_rng([seed, k])
        params = init(rng_k)
        resumed = state if state is not None and state.member == k else None
        if resumed is not None:
            if {n: v.shape for n, v in resumed.params.items()} != {n: v.shape for n, v in params.items()}:
                raise CheckpointError("the saved training state does not match the network of this config")
            params = resumed.params
        member_hooks = Hooks(progress=hooks.progress, stop=hooks.stop)
        if K > 1 and hooks.progress:
            hooks.progress("member_start", {"member": k + 1, "members": K})
            member_hooks.progress = lambda event, info, k=k: hooks.progress(event, dict(info, member=k + 1))
        if hooks.checkpoint:
            def checkpoint(st, why, k=k):
                st.member, st.members, st.members_info = k, members, infos
                hooks.checkpoint(st, why, lambda: mlp.merge(spec, members + [st.best_params]))
            member_hooks.checkpoint = checkpoint
        result = fit(spec, params, data, cfg, rng_k, member_hooks, resumed, embed_lr, embed_l2)
        members.append(result.params)
        infos.append(result.summary())
    if K == 1:
        return spec, result.params, result
    wide, params = mlp.merge(spec, members)
    dev = evaluate(params, wide, data.X_dev, data.y_dev)
    history = [dict(h, member=k + 1) for k, info in enumerate(infos) for h in info["history"]]
    result = Result(params=params, best_epoch=int(np.median([i["best_epoch"] for i in infos])),
                    best_score=dev[cfg.metric], history=history,
                    train_seconds=sum(i["train_seconds"] for i in infos), steps=sum(i["steps"] for i in infos),
                    members=[{n: v for n, v in i.items() if n != "history"} for i in infos])
    return wide, params, result


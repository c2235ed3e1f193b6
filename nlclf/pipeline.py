"""The stages of training chained: read → featurize → train → evaluate → save.

``run_train`` is the list of those stage calls; each stage takes values and returns one.
Nothing here prints: messages go through ``log``, progress through ``on_progress``. The run's
files are written into its output folder's staging area (rundir) by the checkpoint and report
modules, and moved into place when the run is complete. Evaluation, prediction and inspection
of a saved model live beside this module (evaluate, predict, inspection).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from . import calibration, checkpoint, compress, data, features, metrics, plots, report, rundir, runtime
from .config import AUTO, AUTO_INTS, Config, TrainConfig, dump, parse_size, to_dict
from .errors import CheckpointError, ConfigError, DataError, GateNotMet, Interrupted
from .features.base import AUTO_TOKENS, TextFeaturizer
from .model import Classifier
from .nn import mlp
from .nn.losses import sigmoid, softmax
from .training import Data, Hooks, auto_optimizer, fit_ensemble, pos_weights, predict_logits, resolve_auto
from .vocab import PAD_ID, LabelSet

DEFAULT_DATA_ROOT = Path(__file__).resolve().parent.parent / "data"


def data_root(explicit: str | None = None, cfg: Config | None = None) -> Path:
    """The folder data paths are relative to, absolute: --data-root, else the config's
    data.root, else $NLCLF_DATA_ROOT, else the project's data/ (or ./data)."""
    if explicit:
        root = Path(explicit)
    elif cfg is not None and cfg.data.root:
        root = Path(cfg.data.root)
    elif os.environ.get("NLCLF_DATA_ROOT"):
        root = Path(os.environ["NLCLF_DATA_ROOT"])
    else:
        root = DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else Path("data")
    return root.expanduser().absolute()


def with_root(cfg: Config, root: Path) -> Config:
    """cfg with data.root set to the folder its paths were read from: the run folder's
    config.yaml then trains again from anywhere, without --data-root. (The model's own
    metadata keeps the config as given, so the same training gives the same bytes wherever
    its data lies.)"""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))


COUNT_EVERY = 10000          # texts between two "lines" progress events


def _counted(items, stage: str, progress):
    """``items`` unchanged, with a "lines" event every COUNT_EVERY items (a reading spinner)."""
    n = 0
    for n, item in enumerate(items, start=1):
        if n % COUNT_EVERY == 0:
            progress("lines", {"stage": stage, "lines": n})
        yield item


def _label_set(labels: list, cfg: Config, where) -> LabelSet:
    try:
        return LabelSet(labels, cfg.data.labels)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None


TRAIN_WRITES = ("model.*.npz", "model.json", "config.yaml", "report.json", "report.md",
                "learning_curves.png", "confusion_matrix.png")      # what run_train puts in its folder


AUTO_WIDTHS = (256, 128, 64)          # model.hidden auto: one hidden layer, the widest of these ...
FIRST_LAYER_WEIGHTS = 13_000_000      # ... whose first layer (a bag: features × width) holds at most this many


def auto_hidden(kind: str, n_features: int) -> tuple:
    """The widths ``model.hidden: auto`` gives a network reading n_features inputs of ``kind``.

    A bag's first layer is one row of H weights a feature, almost all of the model: 256 wide
    while that stays within FIRST_LAYER_WEIGHTS (about 52 MB in float32), else 128, else 64 (the
    200,000-feature budget of large training sets), so that a model stays about that size
    whether its set was small and kept every feature or large and kept the budget's (README:
    the model section). The embedding kinds' table is features.embed_dim wide whatever the
    hidden layer, which stays 256 wide."""
    if kind != "bow":
        return (AUTO_WIDTHS[0],)
    fits = [h for h in AUTO_WIDTHS if n_features * h <= FIRST_LAYER_WEIGHTS]
    return (fits[0] if fits else AUTO_WIDTHS[-1],)


def hidden_of(cfg: Config, n_features: int) -> tuple:
    """model.hidden of ``cfg`` for n_features inputs, ``auto`` resolved (auto_hidden)."""
    h = cfg.model.hidden
    return auto_hidden(cfg.features.kind, n_features) if h == AUTO else tuple(h)


def net_spec(cfg: Config, featurizer: TextFeaturizer, n_classes: int, several: bool = False) -> mlp.NetSpec:
    """The network of ``cfg`` for fitted features; ``several``: sigmoid outputs (several labels a text)."""
    f, m = cfg.features, cfg.model
    return mlp.NetSpec(input_kind=f.kind, n_inputs=featurizer.n_features, n_classes=n_classes,
                       hidden=hidden_of(cfg, featurizer.n_features), activation=m.activation, leaky_slope=m.leaky_slope,
                       hidden_bias=m.hidden_bias, output_bias=m.output_bias, dropout=m.dropout,
                       input_dropout=f.word_dropout if f.kind != "embed_concat" else 0.0,
                       embed_dim=f.embed_dim if f.kind != "bow" else 0,
                       max_tokens=f.max_tokens if f.kind == "embed_concat" else 0,
                       freeze_embeddings=f.freeze, pad_id=PAD_ID, output="sigmoid" if several else "softmax")


def train_model(cfg: Config, featurizer: TextFeaturizer, X, y, X_dev, y_dev, labels: list,
                rng: np.random.Generator, root=None, on_progress=None, log=lambda msg: None,
                state=None, should_stop=None, on_checkpoint=None):
    """Build the network for fitted features, initialise it (pretrained rows included) and
    train it (training.fit_ensemble): returns (Classifier with the best dev epoch's weights,
    training.Result). With ``state`` (a saved training.State) training continues from it instead.
    ``on_checkpoint(state, why, best_model)`` gets a function returning the model so far.
    y (N, C) 0/1 (several labels a text): sigmoid outputs trained with the binary cross-entropy,
    and the model's thresholds chosen on dev (train.thresholds)."""
    several = np.ndim(y) == 2
    spec = net_spec(cfg, featurizer, len(labels), several)
    if cfg.model.hidden == AUTO:
        log(f"model: hidden {list(spec.hidden)} (auto: " + (
            f"the widest of {', '.join(map(str, AUTO_WIDTHS))} whose first layer of {spec.n_inputs:,} features holds "
            f"at most {FIRST_LAYER_WEIGHTS:,} weights)" if spec.input_kind == "bow" else "an embedding kind's)"))
    dtype = np.dtype(cfg.train.dtype)
    t = cfg.train
    pos_weight = None
    if several:
        t = several_train_config(t, log)
        pos_weight = pos_weights(y, t.pos_weight)
        log(f"train: positives weighted {float(pos_weight.min()):.2f} to {float(pos_weight.max()):.2f} "
            f"(train.pos_weight {t.pos_weight if t.pos_weight == AUTO else f'{t.pos_weight:g}'}"
            f"{': sqrt(negatives / positives) of each label, in [1, 10]' if t.pos_weight == AUTO else ''})")
    if AUTO in (t.optimizer, t.lr, t.schedule, t.patience):
        size = (X.shape[0], cfg.features.kind == "bow", featurizer.n_tokens)
        t = resolve_auto(t, *size)
        why = auto_optimizer(*size)[1] if cfg.train.optimizer == AUTO else "the optimizer's"
        log(f"train: optimizer {t.optimizer}, lr {t.lr:g}, schedule {t.schedule}, "
            f"patience {t.patience or 'off'} (auto: {why})")
    vectors = None
    if cfg.features.pretrained and cfg.features.kind != "bow":
        vectors = data.read_vectors(data.resolve(cfg.features.pretrained, data_root(root, cfg)),
                                    featurizer.vocab.index, cfg.features.embed_dim)
        log(f"pretrained vectors cover {len(vectors[0])} of {len(featurizer.vocab) - 2} vocabulary words "
            f"({len(vectors[0]) / max(1, len(featurizer.vocab) - 2):.1%})")

    def init(rng_k):
        params = mlp.init_params(spec, rng_k, dtype)
        if vectors is not None:
            params["E"][vectors[0]] = vectors[1]
        return params

    checkpoint = None
    if on_checkpoint is not None:
        def checkpoint(st, why, best_network):
            on_checkpoint(st, why, lambda: Classifier(featurizer, *best_network(), list(labels)))
    hooks = Hooks(progress=on_progress, checkpoint=checkpoint, stop=should_stop)
    net, params, result = fit_ensemble(spec, init, Data(X, y, X_dev, y_dev, pos_weight), t, cfg.seed, rng,
                                       hooks, state, cfg.features.embed_lr, cfg.features.embed_l2)
    model = Classifier(featurizer, net, params, list(labels))
    if several:
        S_dev = sigmoid(predict_logits(params, net, X_dev).astype(np.float64))       # (N, C)
        model.thresholds = metrics.choose_thresholds(y_dev, S_dev, per_label=t.thresholds == "per_label")
        th = model.thresholds
        log(f"thresholds: {'global ' + format(th, 'g') if np.ndim(th) == 0 else f'per label, {th.min():g} to {th.max():g} (median {np.median(th):g})'}"
            f", chosen on dev for the best micro-F1")
    return model, result


def several_train_config(t: TrainConfig, log) -> TrainConfig:
    """The training settings of a run with several labels a text: train.metric accuracy (the
    default) picks the best epoch by micro-F1 instead."""
    if t.metric == "accuracy":
        log("train: best epoch by dev micro_f1 (train.metric accuracy is for one label a text)")
        t = dataclasses.replace(t, metric="micro_f1")
    return t


def fit_lists(cfg: Config, train: tuple, dev: tuple, root=None, on_progress=None, log=lambda msg: None):
    """Train on in-memory (labels, texts) pairs: the core of cross-validation and tuning. Labels
    that are tuples (data.read_multilabelled) train a model with several labels a text; a dev
    label the training part never saw is left out of its tuple."""
    several = bool(train[0]) and isinstance(train[0][0], tuple)
    flat = [l for these in train[0] for l in these] if several else train[0]
    label_set = _label_set(flat, cfg, "training data")
    if len(label_set) < 2:
        raise DataError(f"only one class in the training data ({label_set.labels[0]})")
    featurizer = features.make(cfg.features)
    if several:
        known = set(label_set.labels)
        y = data.label_matrix(train[0], label_set.labels)                  # (N, C) uint8
        y_dev = data.label_matrix([tuple(l for l in these if l in known) for these in dev[0]], label_set.labels)
    else:
        y = label_set.ids(train[0], "training data")
        y_dev = label_set.ids(dev[0], "dev data")
    X = featurizer.fit_transform(list(train[1]), y)
    X_dev = featurizer.transform(list(dev[1]))
    rng = np.random.default_rng(cfg.seed)
    return train_model(cfg, featurizer, X, y, X_dev, y_dev, label_set.labels, rng, root, on_progress, log)


def _config_difference(saved: dict, now: dict) -> list:
    flat = lambda d: {f"{sec}.{k}" if isinstance(v, dict) else sec: (x if isinstance(v, dict) else v)
                      for sec, v in d.items() for k, x in (v.items() if isinstance(v, dict) else [(None, v)])}
    a, b = flat(saved), flat(now)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _resume_state(cfg: Config, folder: rundir.RunFolder, log):
    """(State, its meta) of the unfinished run in ``folder``, checked against ``cfg``: the
    messages tell a finished run, a run that crashed before saving anything, and one to continue."""
    out, partial = folder.path, folder.partial
    if not (partial / checkpoint.STATE_META).is_file():
        if rundir.read_run_info(out) is not None:
            raise CheckpointError(f"{out}: that run crashed (its process ended without a word: kill -9, out of "
                              f"memory, power loss) before it saved a training state, which happens at the "
                              f"end of an epoch (at most every train.checkpoint_seconds); there is nothing to "
                              f"resume: start again with --overwrite")
        if (out / checkpoint.META).is_file():
            raise CheckpointError(f"{out}: that run finished; there is nothing to resume")
        raise CheckpointError(f"{out}: no saved training state to resume from")
    state, meta = checkpoint.load_state(partial)
    diff = [k for k in _config_difference(meta["config"], to_dict(cfg)) if k != "data.root"]
    if diff:
        raise ConfigError(f"{out}: the config differs from the interrupted run's ({', '.join(diff[:5])}); "
                          f"resume with the same config and --set options")
    how = folder.unfinished()
    log(f"resuming the {'interrupted' if how == 'interrupted' else 'crashed'} run in {out} from epoch "
        f"{state.epoch}, batch {state.batch}" + ("" if how == "interrupted" else
                                                 " (its last saved state: what came after it is done again)"))
    return state, meta


def _check_inputs(saved: dict, now: dict, out: Path, force: bool, log) -> None:
    """Resuming on data that changed would mix two datasets in one model: refuse unless forced."""
    for role, fp in now.items():
        old = saved.get(role)
        why = "it was not part of the interrupted run" if old is None else data.changed(old, fp)
        if not why:
            continue
        if not force:
            raise ConfigError(f"{fp['path']}: the {role} data changed since the interrupted run in {out} "
                              f"({why}); resuming would mix two datasets. Start again with --overwrite, or "
                              f"continue anyway with --resume {out} --force")
        log(f"{fp['path']}: the {role} data changed since the interrupted run ({why}); continuing (--force)")


def data_paths(cfg: Config, root: Path) -> dict:
    """role -> path of the config's data files (train, and dev/test when set), checked to exist."""
    paths = {"train": data.resolve(cfg.data.train, root)}
    if cfg.data.dev:
        paths["dev"] = data.resolve(cfg.data.dev, root)
    if cfg.data.test:
        paths["test"] = data.resolve(cfg.data.test, root)
    if cfg.features.pretrained and cfg.features.kind != "bow":
        paths["pretrained"] = data.resolve(cfg.features.pretrained, root)
    for p in paths.values():
        if not p.exists():
            raise DataError(f"{p}: file not found (paths in the config are relative to the data "
                            f"root {root.resolve()}; set --data-root or NLCLF_DATA_ROOT)")
    return paths


OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "adam": 2, "adagrad": 1}     # arrays of a parameter's shape each keeps


def check_memory(cfg: Config, n_params: int) -> None:
    """Refuse a network that cannot fit: its weights, the best epoch's copy, the gradients, the
    optimiser's moments and an ensemble's finished members, against the machine's memory."""
    copies = 3 + OPTIMIZER_COPIES.get(cfg.train.optimizer, 2) + (cfg.train.ensemble - 1)
    need = n_params * np.dtype(cfg.train.dtype).itemsize * copies
    have = runtime.machine_memory()
    if have and need > have:
        raise ConfigError(f"this network needs about {runtime.human_bytes(need)} ({n_params:,} parameters × "
                          f"{np.dtype(cfg.train.dtype).itemsize} bytes × {copies} copies: weights, the best "
                          f"epoch's, gradients, {cfg.train.optimizer}'s state), the machine has "
                          f"{runtime.human_bytes(have)}: lower model.hidden, features.max_size or "
                          f"features.embed_dim")


def _known_params(cfg: Config) -> int:
    """Parameters the config alone fixes (before the vocabulary is known): hidden-to-hidden
    weights, and the first layer of embed_concat. A lower bound, checked before any data is read."""
    h = list(hidden_of(cfg, 0))                     # auto: one layer (256 wide before a bag's features are known)
    n = sum(a * b for a, b in zip(h, h[1:]))
    if cfg.features.kind == "embed_concat" and h:
        n += cfg.features.max_tokens * cfg.features.embed_dim * h[0]
    return n * cfg.train.ensemble


class Labelled:
    """The texts of a labelled input, streamed (again at each iteration, from ``records()``);
    the labels of the latest pass gathered on the way into ``labels`` (interned: a million
    lines hold a handful of label strings)."""

    def __init__(self, records):
        self.records, self.labels = records, []

    def __iter__(self):
        self.labels = []
        for _, label, text in self.records():
            self.labels.append(sys.intern(label))
            yield text


@dataclass
class Featurized:
    """What the featurize stage returns: the fitted featurizer, the label set, and the
    weighted matrices with their label ids."""

    featurizer: TextFeaturizer
    labels: LabelSet
    X: object
    y: np.ndarray
    X_dev: object
    y_dev: np.ndarray
    seconds: float
    several: bool = False             # several labels a text: y and y_dev are (N, C) uint8 0/1 matrices


# --- the stages ---------------------------------------------------------------------------

def read_inputs(cfg: Config, folder: rundir.RunFolder, paths: dict, resume: bool, force: bool, log):
    """Stage 1: (paths, fingerprints, state). The staging folder is started (a resumed run
    keeps its state, loaded and checked against ``cfg``); inputs that can be read only once
    are copied there; every input is fingerprinted, and a resumed run refuses changed data
    unless ``force``."""
    state, state_meta = _resume_state(cfg, folder, log) if resume else (None, None)
    partial = folder.start_partial(fresh=not resume, info={"pid": os.getpid()})
    paths = {role: data.readable_again(p, partial, log, cfg.data.max_text_bytes) for role, p in paths.items()}
    inputs = {role: data.fingerprint(p) for role, p in paths.items()}
    if state_meta is not None:
        _check_inputs(state_meta.get("inputs", {}), inputs, folder.path, force, log)
    return paths, inputs, state


def several_label_sets(cfg: Config, train_path, log) -> list | None:
    """The training texts' label tuples when the run has several labels a text, else None:
    data.multi_label true, or auto and some training text has two labels (said through
    ``log``). Only formats that can hold several labels are looked into (fastText, JSON Lines,
    TSV/CSV with data.label_sep): one more pass over the labels of the training file."""
    ml = cfg.data.multi_label
    if ml is False or (ml == AUTO and not data.may_hold_several(train_path, cfg.data)):
        return None
    sets = [these for _, these, _ in data.iter_multilabelled(train_path, cfg.data)]
    n = data.several_labels(sets)
    if ml == AUTO:
        if not n:
            return None
        log(f"data.multi_label: several labels a text (auto: {n:,} of {len(sets):,} training texts have two "
            f"or more, {sum(map(len, sets)) / max(len(sets), 1):.2f} a text): sigmoid outputs, binary "
            f"cross-entropy, thresholds chosen on dev")
    return sets


def featurize(cfg: Config, paths: dict, progress, log) -> Featurized:
    """Stage 2: the vocabulary (and feature weights) from the training split, its X and the
    dev X. With a dev file, two streamed passes over train (vocabulary, then counts); without
    one, a labels pass, the dev split, then the same two passes. Texts are never held whole.
    Several labels a text (several_label_sets): see featurize_several."""
    t0 = time.perf_counter()
    train_path, dev_path = paths["train"], paths.get("dev")
    sets = several_label_sets(cfg, train_path, log)
    if sets is not None:
        return featurize_several(cfg, paths, sets, progress, log, t0)
    featurizer = features.make(cfg.features)
    counted = lambda items, stage: _counted(items, stage, progress)
    train_records = lambda: data.iter_labelled(train_path, cfg.data)
    compact = cfg.features.kind == "bow"                      # X as a RowStore: 2-3 bytes an entry, not 8
    with runtime.malloc_thresholds(runtime.FEATURIZING_MALLOC):
        if dev_path is not None:
            notes = [log]                                     # format notes and bad lines: said once
            first = Labelled(lambda: data.iter_labelled(train_path, cfg.data, notes.pop() if notes else None))
            X = featurizer.fit_counts(lambda: counted(first, "read"), compact=compact)
            labels = first.labels
            data.check_trainable(labels, train_path)
            progress("stage_end", {"stage": "read", "lines": len(labels), "file": str(train_path),
                                   "features": featurizer.n_features, "seconds": time.perf_counter() - t0})
            dev_labels, dev_texts = data.read_labelled(dev_path, cfg.data, log, known=set(labels))
            X_dev = featurizer.transform_counts(dev_texts)
            del dev_texts
        else:
            all_labels = data.read_labels(data.iter_labelled(train_path, cfg.data, log))
            data.check_trainable(all_labels, train_path)
            is_dev = data.stratified_split(all_labels, cfg.data.dev_fraction, cfg.seed)
            labels = [l for l, d in zip(all_labels, is_dev) if not d]
            dev_labels = [l for l, d in zip(all_labels, is_dev) if d]
            log(f"no dev file: held out {len(dev_labels)} of the training examples ({cfg.data.dev_fraction:.0%}, "
                f"{data.split_kind(all_labels, cfg.data.dev_fraction)}, seed {cfg.seed})")
            X, X_dev = featurizer.fit_counts(lambda: counted((text for _, _, text in train_records()), "read"),
                                             is_dev, compact=compact)
            progress("stage_end", {"stage": "read", "lines": len(all_labels), "file": str(train_path),
                                   "features": featurizer.n_features, "seconds": time.perf_counter() - t0})
        label_set = _label_set(labels, cfg, train_path)
        if len(label_set) < 2:
            raise DataError(f"{train_path}: only one class ({label_set.labels[0]}); need at least two")
        y = label_set.ids(labels, train_path)
        y_dev = label_set.ids(dev_labels, dev_path or train_path)
        del labels, dev_labels
        featurizer.fit_weights(X, y)
        X, X_dev = featurizer.weigh(X), featurizer.weigh(X_dev)
    _log_auto_features(cfg, featurizer, log)
    seconds = _featurized(featurizer, X, X_dev, progress, t0)
    return Featurized(featurizer, label_set, X, y, X_dev, y_dev, seconds)


def _log_auto_features(cfg: Config, featurizer, log) -> None:
    auto = [k.removeprefix("features.") for k in sorted(AUTO_INTS) if k.startswith("features.")]
    chosen = [f"{k} {getattr(featurizer.spec, k):,}" for k in auto if getattr(cfg.features, k) == AUTO]
    if chosen:
        log(f"features: {', '.join(chosen)} (auto: chosen by the training set's size, "
            f"{'under' if featurizer.spec.max_size == 0 else 'at least'} {AUTO_TOKENS:,} tokens)")


def _featurized(featurizer, X, X_dev, progress, t0: float) -> float:
    seconds = time.perf_counter() - t0
    progress("stage_end", {"stage": "featurize", "rows": int(X.shape[0]), "dev_rows": int(X_dev.shape[0]),
                           "columns": int(featurizer.n_features), "nnz": int(X.nnz if hasattr(X, "nnz") else X.size),
                           "seconds": seconds})
    return seconds


def featurize_several(cfg: Config, paths: dict, sets: list, progress, log, t0: float) -> Featurized:
    """featurize for several labels a text: ``sets`` are the training file's label tuples; the
    texts are streamed into the vocabulary and X as for one label (without a dev file, a
    dev_fraction held out at random, seeded); y and y_dev are (N, C) uint8 0/1 matrices
    (data.label_matrix) and nb weights count each text for each of its labels."""
    train_path, dev_path = paths["train"], paths.get("dev")
    featurizer = features.make(cfg.features)
    notes = [log]                                     # format notes and bad lines: said once
    texts = lambda: (text for _, _, text in data.iter_multilabelled(train_path, cfg.data,
                                                                     notes.pop() if notes else None))
    counted = lambda items: _counted(items, "read", progress)
    compact = cfg.features.kind == "bow"                      # X as a RowStore, as featurize makes it
    with runtime.malloc_thresholds(runtime.FEATURIZING_MALLOC):
        if dev_path is not None:
            X = featurizer.fit_counts(lambda: counted(texts()), compact=compact)
            dev_sets = None
        else:
            is_dev = data.stratified_split([these[0] for these in sets], cfg.data.dev_fraction, cfg.seed)
            log(f"no dev file: held out {int(is_dev.sum())} of the training examples ({cfg.data.dev_fraction:.0%}, "
                f"by their first label, seed {cfg.seed})")
            X, X_dev = featurizer.fit_counts(lambda: counted(texts()), is_dev, compact=compact)
            dev_sets = [these for these, d in zip(sets, is_dev.tolist()) if d]
            sets = [these for these, d in zip(sets, is_dev.tolist()) if not d]
        flat = [label for these in sets for label in these]
        data.check_trainable(flat, train_path)
        progress("stage_end", {"stage": "read", "lines": len(sets) + len(dev_sets or ()), "file": str(train_path),
                               "features": featurizer.n_features, "seconds": time.perf_counter() - t0})
        label_set = _label_set(flat, cfg, train_path)
        if dev_sets is None:
            dev_sets, dev_texts = data.read_multilabelled(dev_path, cfg.data, log, known=set(label_set.labels))
            X_dev = featurizer.transform_counts(dev_texts)
            del dev_texts
        Y, Y_dev = data.label_matrix(sets, label_set.labels), data.label_matrix(dev_sets, label_set.labels)
        featurizer.fit_weights(X, Y)
        X, X_dev = featurizer.weigh(X), featurizer.weigh(X_dev)
    _log_auto_features(cfg, featurizer, log)
    seconds = _featurized(featurizer, X, X_dev, progress, t0)
    return Featurized(featurizer, label_set, X, Y, X_dev, Y_dev, seconds, several=True)


def evaluate_model(cfg: Config, model: Classifier, feats: Featurized, test_path, log) -> tuple:
    """Stage 4: (final metrics of dev and test, calibration or None, test size). With
    train.calibrate, the softmax temperature is fitted on dev and set on ``model``. Several
    labels a text: evaluate_several."""
    if feats.several:
        return evaluate_several(cfg, model, feats, test_path, log)
    z_dev = predict_logits(model.params, model.spec, feats.X_dev)
    labels = feats.labels
    final = {"dev": metrics.report(feats.y_dev, z_dev.argmax(1), labels.labels)}
    splits = {"dev": (z_dev, feats.y_dev)}
    n_test = 0
    if test_path is not None:
        test_labels, test_texts = data.read_labelled(test_path, cfg.data, log, known=set(labels.labels))
        y_test = labels.ids(test_labels, test_path)
        z_test = model.logits(test_texts)
        del test_texts
        final["test"] = metrics.report(y_test, z_test.argmax(1), labels.labels)
        splits["test"] = (z_test, y_test)
        n_test = len(y_test)
    calib = None
    if cfg.train.calibrate:
        model.temperature = calibration.fit_temperature(z_dev, feats.y_dev)
        calib = {"temperature": model.temperature}
        for name, (z, yy) in splits.items():
            calib[f"{name}_ece_before"] = calibration.ece(softmax(z), yy)
            calib[f"{name}_ece_after"] = calibration.ece(softmax(z / z.dtype.type(model.temperature)), yy)
        log(f"calibration: temperature {model.temperature:.3f}, dev ECE {calib['dev_ece_before']:.4f} -> "
            f"{calib['dev_ece_after']:.4f}")
    return final, calib, n_test


def compress_run(cfg: Config, model: Classifier, paths: dict, r: dict, log) -> Classifier:
    """output.compress: the model compressed as `nlclf compress` does, its agreement with the
    full model measured on the dev file (else the test file); below output.compress_agreement
    the full model is kept, and the log says so with the figures. r["compress"] records them
    (and the test accuracy of both models when there is a test file)."""
    check = paths.get("dev") or paths.get("test")
    gate = cfg.output.compress_agreement if check is not None else 0.0
    try:
        small, figures = compress.compress(model, cfg, parse_size(cfg.output.compress, "output.compress"), 8,
                                           gate, check)
    except GateNotMet as e:
        log(f"nlclf: {e}: the full model is kept")
        r["compress"] = {"kept_full_model": True, "reason": str(e)}
        return model
    if paths.get("test") is not None and paths.get("test") != check:
        test_labels, test_texts = data.read_labelled(paths["test"], cfg.data)
        figures["test"] = {"file": str(paths["test"]), **compress.agreement(model, small, test_texts, test_labels)}
    r["compress"] = figures
    c = figures.get("check")
    log(f"compressed the model: {figures['original_bytes']:,} -> {figures['size_bytes']:,} bytes"
        + (f", agreement with the full model {c['agreement']:.2%} on {Path(c['file']).name}" if c else
           " (agreement not measured: no dev or test file)"))
    return small


def evaluate_several(cfg: Config, model: Classifier, feats: Featurized, test_path, log) -> tuple:
    """evaluate_model for several labels a text: metrics.multilabel_report of dev and test with
    the model's thresholds (no calibration: the temperature is a softmax's)."""
    if cfg.train.calibrate:
        log("train.calibrate: skipped (a softmax temperature; this model has several labels a text)")
    labels = feats.labels.labels
    S_dev = sigmoid(predict_logits(model.params, model.spec, feats.X_dev).astype(np.float64))   # (N, C)
    final = {"dev": metrics.several_report(feats.y_dev, S_dev, model.thresholds, labels)}
    n_test = 0
    if test_path is not None:
        sets, texts = data.read_multilabelled(test_path, cfg.data, log, known=set(labels))
        Y = data.label_matrix(sets, labels)
        S = sigmoid(model.logits(texts).astype(np.float64))
        del texts
        final["test"] = metrics.several_report(Y, S, model.thresholds, labels)
        n_test = len(Y)
    return final, None, n_test


def train_report(cfg: Config, feats: Featurized, model: Classifier, result, final: dict, calib, n_test: int,
                 paths: dict, inputs: dict, root: Path, out: Path, command, t_start: float) -> dict:
    """What report.json holds: the data, the network, every epoch, the final metrics, the run."""
    spec = model.spec
    return {
        "data": {"train": int(len(feats.y)), "dev": int(len(feats.y_dev)), "test": n_test,
                 "train_file": str(paths["train"]), "dev_file": str(paths["dev"]) if "dev" in paths else None,
                 "test_file": str(paths["test"]) if "test" in paths else None, "inputs": inputs},
        "labels": feats.labels.labels,
        "features": {"kind": cfg.features.kind, "vocab_size": len(feats.featurizer.vocab),
                     "n_features": feats.featurizer.n_features},
        "model": {"hidden": list(hidden_of(cfg, feats.featurizer.n_features)), "activation": spec.activation,
                  "parameters": mlp.n_params(model.params), "ensemble": cfg.train.ensemble},
        "multi_label": feats.several,
        "metric": "micro_f1" if feats.several and cfg.train.metric == "accuracy" else cfg.train.metric,
        "best_epoch": result.best_epoch, "best_score": result.best_score,
        "members": result.members,
        "history": result.history, "final": final,
        "featurize_seconds": feats.seconds, "train_seconds": result.train_seconds,
        "steps": result.steps, "total_seconds": time.perf_counter() - t_start,
        "out_dir": str(out), "calibration": calib, "epochs_cap": cfg.train.epochs,
        "still_improving": any(m["best_epoch"] == m["epochs"] == cfg.train.epochs
                               for m in (result.members or [result.summary()])),
        "run": {"command": command, "data_root": str(root), "nlclf_version": __version__, "inputs": inputs},
    }


def save_run(folder: rundir.RunFolder, cfg: Config, root: Path, model: Classifier, r: dict, log) -> None:
    """Stage 5: config, checkpoint, reports and pictures into the staging folder, then moved
    into place together (Ctrl-C and SIGTERM held until they are)."""
    partial = folder.partial
    rundir.atomic_write(partial / "config.yaml", dump(with_root(cfg, root)).encode())
    files = checkpoint.save(partial, model, cfg)
    checkpoint.remove_state(partial)
    r["pictures"] = _pictures(partial, r, log)
    report.write_train_report(partial, r)
    with runtime.signals_deferred():
        folder.promote(files + ["config.yaml", "report.json", "report.md"] + r["pictures"], replaces=TRAIN_WRITES)


SAVE_SHARE = 0.05            # the largest share of a run's time that saving its training state may take


def checkpointer(cfg: Config, root: Path, folder: rundir.RunFolder, inputs: dict):
    """The train stage's checkpoint hook: at an epoch's end (at most every checkpoint_seconds)
    and on interruption, the best model so far (if it changed) and the state to resume from,
    both into the staging folder."""
    every = cfg.train.checkpoint_seconds
    saved = {"time": time.perf_counter(), "best": (0, 0), "every": every}
    partial = folder.partial

    def on_checkpoint(st, why, best_model):
        now = time.perf_counter()
        if st.done or (why != "interrupt" and now - saved["time"] < saved["every"]):
            return
        if (st.member, st.best_epoch) != saved["best"]:
            rundir.atomic_write(partial / "config.yaml", dump(with_root(cfg, root)).encode())
            checkpoint.save(partial, best_model(), cfg)
            saved["best"] = (st.member, st.best_epoch)
        checkpoint.save_state(partial, st, cfg, {"inputs": inputs}, best_is_current=why == "best")
        end = time.perf_counter()
        saved["time"] = end
        if every:                               # a costly save is made less often: at most SAVE_SHARE of the time
            saved["every"] = max(every, (end - now) / SAVE_SHARE)
    return on_checkpoint


def run_train(cfg: Config, root=None, out_dir=None, overwrite: bool = False,
              on_progress=None, log=lambda msg: None, resume: bool = False, should_stop=None,
              force: bool = False, command: list | None = None) -> dict:
    """Train as ``cfg`` says; write checkpoint, config and report to the output folder; return the report.

    The run is assembled in the folder's staging area (rundir.PARTIAL): the best model so far
    and the training state, saved at the end of an epoch (at most every checkpoint_seconds)
    and when ``should_stop()`` turns true (then Interrupted is raised). Only a complete run
    moves its files into the folder, replacing what an earlier run of nlclf wrote there; a
    failed one leaves the folder as it was. ``resume`` continues the unfinished run of the
    folder, to the same final bytes; ``force`` lets it continue on changed data."""
    t_start = time.perf_counter()
    if cfg.output.compress and cfg.features.kind != "bow":
        raise ConfigError(f"output.compress: compressing reads bag-of-words models (features.kind bow); "
                          f"this config trains {cfg.features.kind}")
    root = data_root(root, cfg)
    out = Path(out_dir or cfg.output.dir)
    paths = data_paths(cfg, root)
    check_memory(cfg, _known_params(cfg))
    progress = on_progress or (lambda event, info: None)
    folder = rundir.RunFolder.claim(out, overwrite, TRAIN_WRITES, resume)
    try:
        paths, inputs, state = read_inputs(cfg, folder, paths, resume, force, log)
        feats = featurize(cfg, paths, progress, log)
        shapes = mlp.param_shapes(net_spec(cfg, feats.featurizer, len(feats.labels), feats.several))
        check_memory(cfg, sum(math.prod(s) for s in shapes.values()) * cfg.train.ensemble)
        model, result = train_model(cfg, feats.featurizer, feats.X, feats.y, feats.X_dev, feats.y_dev,
                                    feats.labels.labels, np.random.default_rng(cfg.seed), root, on_progress, log,
                                    state, should_stop, checkpointer(cfg, root, folder, inputs))
        final, calib, n_test = evaluate_model(cfg, model, feats, paths.get("test"), log)
        r = train_report(cfg, feats, model, result, final, calib, n_test, paths, inputs, root, out, command, t_start)
        if cfg.output.compress:
            model = compress_run(cfg, model, paths, r, log)
        save_run(folder, cfg, root, model, r, log)
    except Interrupted:
        folder.set_run_info(dict(rundir.read_run_info(out) or {}, status="interrupted"))
        folder.release()
        raise
    except BaseException as e:
        resumable = (folder.partial / checkpoint.STATE_META).is_file()
        if resumable and (resume or isinstance(e, KeyboardInterrupt)):
            folder.set_run_info(dict(rundir.read_run_info(out) or {}, status="interrupted"))
        elif not resume:
            folder.discard_partial()             # nothing of this run is kept; the previous result is untouched
        folder.release(failed=True)
        raise
    folder.release()
    return r


def _pictures(out: Path, r: dict, log) -> list:
    """Learning curves and the confusion matrix as PNG, when matplotlib is installed."""
    if not plots.available():
        log("no pictures: install the plotting extra (pip install 'nlclf[plot]') for learning curves "
            "and a confusion-matrix heat map")
        return []
    m = r["final"].get("test") or r["final"]["dev"]
    pictures = [plots.learning_curves(r["history"], out / "learning_curves.png").name]
    if m.get("confusion_matrix") is not None:
        pictures.append(plots.confusion_heatmap(m["confusion_matrix"], m["labels"], out / "confusion_matrix.png").name)
    return pictures


COMPRESS_WRITES = ("model.json", "model.*.npz", "compress.json")


def run_root(model_dir):
    """The folder a training run read its data from (report.json's run.data_root), or None."""
    try:
        root = json.loads((Path(model_dir) / "report.json").read_text(encoding="utf-8"))["run"]["data_root"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(root) if isinstance(root, str) and root else None


def run_compress(model_dir, out, max_size="8MB", bits: int = 8, min_agreement: float = 0.99, check=None,
                 overwrite: bool = False, rank: int = 0, log=lambda msg: None) -> dict:
    """`nlclf compress` (see compress.py): load, compress, and write the compressed model into
    ``out`` (a folder nlclf owns: new, empty, or its own with ``overwrite``), files assembled
    beside and moved in once complete. Returns the figures (also written as compress.json)."""
    max_bytes = parse_size(max_size)
    if not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(f"--agreement: {min_agreement} must be between 0 and 1")
    model, cfg, _ = checkpoint.load(model_dir)
    small, figures = compress.compress(model, cfg, max_bytes, bits, min_agreement, check, rank, run_root(model_dir))
    figures["source"], figures["out"] = str(model_dir), str(out)
    folder = rundir.RunFolder.claim(out, overwrite, COMPRESS_WRITES)
    failed = True
    try:
        partial = folder.start_partial(fresh=True, info={"command": "compress"})
        files = checkpoint.save(partial, small, cfg)
        rundir.atomic_write(partial / "compress.json", (json.dumps(figures, indent=1, sort_keys=True) + "\n").encode())
        folder.promote(files + ["compress.json"], replaces=COMPRESS_WRITES)
        failed = False
    finally:
        folder.release(failed=failed)
    log(f"compressed {model_dir}: {figures['original_bytes']:,} -> {figures['size_bytes']:,} bytes")
    return figures

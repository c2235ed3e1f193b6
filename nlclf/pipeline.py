"""The stages chained: run_train, run_eval, run_predict.

Nothing here prints: messages go through ``log``, progress through ``on_progress``.
Files are written only by the checkpoint and report modules.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

import scipy.sparse as sp

from . import calibration, checkpoint, data, explain, metrics, parallel, plots, report, rundir, runtime, significance
from . import __version__
from .config import Config, dump, to_dict
from .errors import CheckpointError, ConfigError, DataError, Interrupted, OutputError
from . import features
from .features.base import TextFeaturizer
from .model import Classifier
from .nn import mlp
from .train import Data, Hooks, fit_ensemble, predict_logits
from .nn.losses import log_softmax, softmax
from .text import SEP
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


def _label_ids(labels: list, label_set: LabelSet, path) -> np.ndarray:
    unknown = sorted(set(labels) - set(label_set.index))
    if unknown:
        raise DataError(f"{path}: labels not seen in training: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''} (known: {', '.join(label_set.labels[:20])}"
                        f"{f', ... ({len(label_set)} in all)' if len(label_set) > 20 else ''})")
    return np.fromiter((label_set.index[l] for l in labels), dtype=np.int64, count=len(labels))


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


def _texts_noting_labels(path, labels: list, opts=None, log=None):
    """The texts of a labelled file, streamed, appending each label to ``labels`` on the way."""
    for _, label, text in data.iter_labelled(path, opts, log):
        labels.append(sys.intern(label))
        yield text


TRAIN_WRITES = ("model.*.npz", "model.json", "config.yaml", "report.json", "report.md",
                "learning_curves.png", "confusion_matrix.png")      # what run_train puts in its folder


def net_spec(cfg: Config, featurizer: TextFeaturizer, n_classes: int) -> mlp.NetSpec:
    f, m = cfg.features, cfg.model
    return mlp.NetSpec(input_kind=f.kind, n_inputs=featurizer.n_features, n_classes=n_classes,
                       hidden=tuple(m.hidden), activation=m.activation, leaky_slope=m.leaky_slope,
                       hidden_bias=m.hidden_bias, output_bias=m.output_bias, dropout=m.dropout,
                       input_dropout=f.word_dropout if f.kind != "embed_concat" else 0.0,
                       embed_dim=f.embed_dim if f.kind != "bow" else 0,
                       max_tokens=f.max_tokens if f.kind == "embed_concat" else 0,
                       freeze_embeddings=f.freeze, pad_id=PAD_ID)


def train_model(cfg: Config, featurizer: TextFeaturizer, X, y, X_dev, y_dev, labels: list,
                rng: np.random.Generator, root=None, on_progress=None, log=lambda msg: None,
                state=None, should_stop=None, on_checkpoint=None):
    """Build the network for fitted features, initialise it (pretrained rows included) and
    train it (train.fit_ensemble): returns (Classifier with the best dev epoch's weights,
    train.Result). With ``state`` (a saved train.State) training continues from it instead.
    ``on_checkpoint(state, why, best_model)`` gets a function returning the model so far."""
    spec = net_spec(cfg, featurizer, len(labels))
    dtype = np.dtype(cfg.train.dtype)
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
    net, params, result = fit_ensemble(spec, init, Data(X, y, X_dev, y_dev), cfg.train, cfg.seed, rng,
                                       hooks, state, cfg.features.embed_lr, cfg.features.embed_l2)
    return Classifier(featurizer, net, params, list(labels)), result


def fit_lists(cfg: Config, train: tuple, dev: tuple, root=None, on_progress=None, log=lambda msg: None):
    """Train on in-memory (labels, texts) pairs: the core of cross-validation and tuning."""
    label_set = _label_set(train[0], cfg, "training data")
    if len(label_set) < 2:
        raise DataError(f"only one class in the training data ({label_set.labels[0]})")
    featurizer = features.make(cfg.features)
    y = _label_ids(train[0], label_set, "training data")
    y_dev = _label_ids(dev[0], label_set, "dev data")
    X = featurizer.fit_transform(list(train[1]), y)
    X_dev = featurizer.transform(list(dev[1]))
    rng = np.random.default_rng(cfg.seed)
    return train_model(cfg, featurizer, X, y, X_dev, y_dev, label_set.labels, rng, root, on_progress, log)


def score(model: Classifier, labels: list, texts: list) -> dict:
    """metrics.report of a model on labelled texts (labels unseen in training count as errors)."""
    index = {l: i for i, l in enumerate(model.labels)}
    y = np.array([index.get(l, -1) for l in labels])
    pred = model.proba(list(texts)).argmax(1)
    return metrics.report(y, pred, model.labels)


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


OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "adam": 2}     # arrays of a parameter's shape each keeps


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
    h = list(cfg.model.hidden)
    n = sum(a * b for a, b in zip(h, h[1:]))
    if cfg.features.kind == "embed_concat" and h:
        n += cfg.features.max_tokens * cfg.features.embed_dim * h[0]
    return n * cfg.train.ensemble


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
    root = data_root(root, cfg)
    out = Path(out_dir or cfg.output.dir)
    paths = data_paths(cfg, root)
    check_memory(cfg, _known_params(cfg))
    folder = rundir.RunFolder.claim(out, overwrite, TRAIN_WRITES, resume)
    try:
        r = _train_in(folder, cfg, root, paths, on_progress, log, resume, should_stop, force, t_start, command)
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


def _train_in(folder: rundir.RunFolder, cfg: Config, root: Path, paths: dict, on_progress, log, resume: bool,
              should_stop, force: bool, t_start: float, command) -> dict:
    out = folder.path
    state, state_meta = _resume_state(cfg, folder, log) if resume else (None, None)
    partial = folder.start_partial(fresh=not resume, info={"pid": os.getpid()})
    paths = {role: data.readable_again(p, partial, log, cfg.data.max_text_bytes) for role, p in paths.items()}
    inputs = {role: data.fingerprint(p) for role, p in paths.items()}
    if state_meta is not None:
        _check_inputs(state_meta.get("inputs", {}), inputs, out, force, log)
    train_path, dev_path, test_path = paths["train"], paths.get("dev"), paths.get("test")

    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    progress = on_progress or (lambda event, info: None)
    featurizer = features.make(cfg.features)
    counted = lambda items, stage: _counted(items, stage, progress)
    if dev_path is not None:
        # two streamed passes over train (vocabulary, then counts); the texts are never held whole
        labels: list = []
        featurizer.fit_vocab(counted(_texts_noting_labels(train_path, labels, cfg.data, log), "read"))
        data.check_trainable(labels, train_path)
        progress("stage_end", {"stage": "read", "lines": len(labels), "file": str(train_path),
                               "features": featurizer.n_features, "seconds": time.perf_counter() - t0})
        X = featurizer.transform_counts(counted((text for _, _, text in data.iter_labelled(train_path, cfg.data)),
                                                "featurize"))
        dev_labels, dev_texts = data.read_labelled(dev_path, cfg.data, log, known=set(labels))
        X_dev = featurizer.transform_counts(dev_texts)
        del dev_texts
    else:
        all_labels = data.read_labels(counted(data.iter_labelled(train_path, cfg.data, log), "read"))
        data.check_trainable(all_labels, train_path)
        is_dev = data.stratified_split(all_labels, cfg.data.dev_fraction, cfg.seed)
        labels = [l for l, d in zip(all_labels, is_dev) if not d]
        dev_labels = [l for l, d in zip(all_labels, is_dev) if d]
        log(f"no dev file: held out {len(dev_labels)} of the training examples "
            f"({cfg.data.dev_fraction:.0%}, {data.split_kind(all_labels, cfg.data.dev_fraction)}, seed {cfg.seed})")
        featurizer.fit_vocab(counted((text for (_, _, text), d in zip(data.iter_labelled(train_path, cfg.data), is_dev)
                                      if not d), "vocabulary"))
        progress("stage_end", {"stage": "read", "lines": len(all_labels), "file": str(train_path),
                               "features": featurizer.n_features, "seconds": time.perf_counter() - t0})
        X, X_dev = featurizer.transform_split(counted((text for _, _, text in data.iter_labelled(train_path, cfg.data)),
                                                      "featurize"), is_dev)
    label_set = _label_set(labels, cfg, train_path)
    if len(label_set) < 2:
        raise DataError(f"{train_path}: only one class ({label_set.labels[0]}); need at least two")
    y = _label_ids(labels, label_set, train_path)
    y_dev = _label_ids(dev_labels, label_set, dev_path or train_path)
    del labels, dev_labels
    if cfg.features.kind != "embed_concat":
        featurizer.fit_weights(X, y)
        X, X_dev = featurizer.weigh(X), featurizer.weigh(X_dev)
    featurize_seconds = time.perf_counter() - t0
    progress("stage_end", {"stage": "featurize", "rows": int(X.shape[0]), "dev_rows": int(X_dev.shape[0]),
                           "columns": int(featurizer.n_features), "nnz": int(getattr(X, "nnz", X.size)),
                           "seconds": featurize_seconds})
    shapes = mlp.param_shapes(net_spec(cfg, featurizer, len(label_set)))
    check_memory(cfg, sum(math.prod(s) for s in shapes.values()) * cfg.train.ensemble)

    saved = {"time": time.perf_counter(), "best": (0, 0)}

    def on_checkpoint(st, why, best_model):
        """At an epoch's end (at most every checkpoint_seconds) and on interruption: the best
        model so far, if it changed, then the state to resume from, both in the staging folder."""
        now = time.perf_counter()
        if st.done or (why != "interrupt" and now - saved["time"] < cfg.train.checkpoint_seconds):
            return
        if (st.member, st.best_epoch) != saved["best"]:
            rundir.atomic_write(partial / "config.yaml", dump(with_root(cfg, root)).encode())
            checkpoint.save(partial, best_model(), cfg)
            saved["best"] = (st.member, st.best_epoch)
        checkpoint.save_state(partial, st, cfg, {"inputs": inputs})
        saved["time"] = now

    model, result = train_model(cfg, featurizer, X, y, X_dev, y_dev, label_set.labels, rng, root,
                                on_progress, log, state, should_stop, on_checkpoint)
    spec = model.spec

    z_dev = predict_logits(model.params, spec, X_dev)
    final = {"dev": metrics.report(y_dev, z_dev.argmax(1), label_set.labels)}
    splits = {"dev": (z_dev, y_dev)}
    n_test = 0
    if test_path is not None:
        test_labels, test_texts = data.read_labelled(test_path, cfg.data, log, known=set(label_set.labels))
        y_test = _label_ids(test_labels, label_set, test_path)
        z_test = model.logits(test_texts)
        del test_texts
        final["test"] = metrics.report(y_test, z_test.argmax(1), label_set.labels)
        splits["test"] = (z_test, y_test)
        n_test = len(y_test)
    calib = None
    if cfg.train.calibrate:
        model.temperature = calibration.fit_temperature(z_dev, y_dev)
        calib = {"temperature": model.temperature}
        for name, (z, yy) in splits.items():
            calib[f"{name}_ece_before"] = calibration.ece(softmax(z), yy)
            calib[f"{name}_ece_after"] = calibration.ece(softmax(z / z.dtype.type(model.temperature)), yy)
        log(f"calibration: temperature {model.temperature:.3f}, dev ECE {calib['dev_ece_before']:.4f} -> "
            f"{calib['dev_ece_after']:.4f}")

    rundir.atomic_write(partial / "config.yaml", dump(with_root(cfg, root)).encode())
    files = checkpoint.save(partial, model, cfg)
    checkpoint.remove_state(partial)
    r = {
        "data": {"train": int(len(y)), "dev": int(len(y_dev)), "test": n_test,
                 "train_file": str(train_path), "dev_file": str(dev_path) if dev_path else None,
                 "test_file": str(test_path) if test_path else None, "inputs": inputs},
        "labels": label_set.labels,
        "features": {"kind": cfg.features.kind, "vocab_size": len(featurizer.vocab),
                     "n_features": featurizer.n_features},
        "model": {"hidden": list(cfg.model.hidden), "activation": spec.activation,
                  "parameters": mlp.n_params(model.params), "ensemble": cfg.train.ensemble},
        "metric": cfg.train.metric, "best_epoch": result.best_epoch, "best_score": result.best_score,
        "members": result.members,
        "history": result.history, "final": final,
        "featurize_seconds": featurize_seconds, "train_seconds": result.train_seconds,
        "steps": result.steps, "total_seconds": time.perf_counter() - t_start,
        "out_dir": str(out), "calibration": calib, "epochs_cap": cfg.train.epochs,
        "still_improving": any(m["best_epoch"] == m["epochs"] == cfg.train.epochs
                               for m in (result.members or [result.summary()])),
    }
    r["run"] = {"command": command, "data_root": str(root), "nlclf_version": __version__, "inputs": inputs}
    r["pictures"] = _pictures(partial, r, log)
    report.write_train_report(partial, r)
    with runtime.signals_deferred():
        folder.promote(files + ["config.yaml", "report.json", "report.md"] + r["pictures"], replaces=TRAIN_WRITES)
    return r


def _pictures(out: Path, r: dict, log) -> list:
    """Learning curves and the confusion matrix as PNG, when matplotlib is installed."""
    if not plots.available():
        log("no pictures: install the plotting extra (pip install 'nlclf[plot]') for learning curves "
            "and a confusion-matrix heat map")
        return []
    m = r["final"].get("test") or r["final"]["dev"]
    pictures = [plots.learning_curves(r["history"], out / "learning_curves.png").name]
    if m["confusion_matrix"] is not None:
        pictures.append(plots.confusion_heatmap(m["confusion_matrix"], m["labels"], out / "confusion_matrix.png").name)
    return pictures


def _read_eval(model: Classifier, data_path, opts=None):
    rows = list(data.iter_labelled(data_path, opts, known=set(model.labels)))
    if not rows:
        raise DataError(f"{data_path}: no examples (expected lines of 'label<TAB>text')")
    y = _label_ids([r[1] for r in rows], LabelSet(model.labels, model.labels), data_path)
    return rows, y


def run_eval(model_dir, data_path, errors: int = 0, bins: int = 15, plot_dir=None, top_k: int = 1) -> dict:
    """Metrics of a saved model on a labelled file, its calibration (ECE, reliability bins),
    with ``top_k`` > 1 the top-k accuracy and fastText's P@k and R@k (one true label a text:
    P@k = hits / (N k), R@k = hits / N), and with ``errors`` the most confident mistakes."""
    if plot_dir is not None and Path(plot_dir).exists() and not Path(plot_dir).is_dir():
        raise OutputError(f"{plot_dir}: --plots names a folder for the pictures; this is an existing file")
    model, cfg, _ = checkpoint.load(model_dir)
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


def run_compare(model_a, model_b, data_path, resamples: int = 10000, seed: int = 0) -> dict:
    """Both models on the same labelled file, and whether the difference is more than noise:
    McNemar's test on the examples where they disagree, and a paired bootstrap of the
    accuracy difference (B minus A). The data is read once (with model A's data settings);
    the tables are over every label either model or the data knows, and an example whose label
    a model never saw counts as that model's error (``notes`` says which)."""
    (ma, cfg, _), (mb, _, _) = checkpoint.load(model_a), checkpoint.load(model_b)
    rows = list(data.iter_labelled(data_path, cfg.data))
    if not rows:
        raise DataError(f"{data_path}: no examples")
    truth = [r[1] for r in rows]
    texts = [r[2] for r in rows]
    names = sorted(set(ma.labels) | set(mb.labels) | set(truth))
    index = {l: i for i, l in enumerate(names)}
    y = np.fromiter((index[l] for l in truth), dtype=np.int64, count=len(truth))
    out, preds, notes = {}, [], []
    for key, path, model in (("a", model_a, ma), ("b", model_b, mb)):
        ids = np.array([index[l] for l in model.labels])[model.proba(texts).argmax(1)]       # (N,)
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


def _batches(lines: Iterable[str], max_batch: int) -> Iterator[list]:
    """Group lines into batches without waiting: a reader thread collects lines and hands its
    batch over as soon as the consumer is idle (or the batch is full). Interactive input is
    answered line by line; a file is read in full batches."""
    q: queue.Queue = queue.Queue(maxsize=4)
    done = object()
    error: list = []

    def reader():
        batch = []
        try:
            for line in lines:
                batch.append(line)
                if len(batch) >= max_batch or q.empty():
                    q.put(batch)
                    batch = []
            if batch:
                q.put(batch)
        except BaseException as e:     # handed over to the consuming thread
            error.append(e)
        finally:
            q.put(done)

    threading.Thread(target=reader, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            break
        yield item
    if error:
        raise error[0]


def run_predict(model_dir, paths: Iterable[str] = ("-",), top_k: int = 1, batch_size: int = 1024,
                texts: Iterable[str] | None = None, explain_k: int = 0, workers: int = 0,
                threshold: float | None = None, id_field: str | None = None,
                with_text: bool = False) -> Iterator[list]:
    """Batches of results for the input records of ``paths`` ('-' is stdin), or for ``texts``,
    in order. Each result is a dict: "top", the (label, probability) pairs of the ``top_k``
    most probable labels (all of them for top_k < 1) whose probability is at least
    ``threshold`` (fastText's predict-prob; possibly none), or with ``explain_k`` the keys of
    an explanation (see explain.explain); "id", the record's identifier (``id_field`` of
    JSON Lines and CSV records, the document's path for a folder, else None); "text" with
    ``with_text``. A batch is whatever input has arrived (at most batch_size records), so
    interactive input is answered at once. Batches are computed by ``workers`` forked
    processes (0: one per core; 1: in this process)."""
    model, cfg, _ = checkpoint.load(model_dir)
    records = data.iter_records(paths, cfg.data, id_field=id_field) if texts is None else ((None, t) for t in texts)
    k = len(model.labels) if top_k < 1 else min(top_k, len(model.labels))
    labels = model.labels

    def predict_batch(batch: list) -> list:
        if explain_k:
            return explain.explain(model, batch, explain_k)
        probs = model.proba(batch)                                     # (N, C)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]         # (N, k)
        p = np.take_along_axis(probs, top, axis=1).tolist()
        out = [[(labels[i], pi) for i, pi in zip(ids, row)] for ids, row in zip(top.tolist(), p)]
        if threshold is not None:
            out = [[(l, pi) for l, pi in row if pi >= threshold] for row in out]
        return out

    held: collections.deque = collections.deque()      # the records of the batches in flight, in order

    def texts_of(batches):
        for batch in batches:
            held.append(batch)
            yield [t for _, t in batch]

    for results in parallel.ordered_map(predict_batch, texts_of(_batches(records, batch_size)), workers):
        batch = held.popleft()
        out = []
        for (ident, text), r in zip(batch, results):
            item = dict(r) if explain_k else {"top": r}
            item["id"] = ident
            if with_text:
                item["text"] = text
            elif explain_k:
                item.pop("text", None)
            out.append(item)
        yield out


def _single_feature_inputs(model: Classifier, ids):
    """X with one row per feature id: a bag holding only that feature (weighted like training),
    or a text of that one token (embed_concat)."""
    n = len(ids)
    if model.spec.input_kind == "embed_concat":
        X = np.full((n, model.spec.max_tokens), model.spec.pad_id, dtype=np.int32)
        X[:, 0] = ids
        return X
    X = sp.csr_matrix((np.ones(n, np.float32), np.asarray(ids, np.int32), np.arange(n + 1)),
                      shape=(n, model.featurizer.n_features))
    return model.featurizer.weigh(X)


def run_inspect(model_dir, data_path=None, words: Iterable[str] = (), top: int = 10, chunk: int = 4096) -> dict:
    """What a model is: shape, parameters, vocabulary; the features most associated with each
    label (log-probability of the label given a text of that feature alone); with a data file,
    the unknown-word rate and the most frequent unknown words; nearest neighbours of ``words``
    in the embedding table (embedding kinds)."""
    model, cfg, meta = checkpoint.load(model_dir)
    spec, fz = model.spec, model.featurizer
    vocab = fz.vocab.tokens
    r = {"model": str(model_dir), "kind": spec.input_kind, "hidden": list(spec.hidden),
         "ensemble": cfg.train.ensemble, "member_hidden": list(cfg.model.hidden),
         "activation": spec.activation, "labels": model.labels, "temperature": model.temperature,
         "vocab_size": len(vocab), "n_features": fz.n_features,
         "parameters": {k: list(v.shape) for k, v in model.params.items()},
         "n_parameters": mlp.n_params(model.params)}
    ids = np.arange(2, len(vocab))
    C = len(model.labels)
    best = [np.zeros(0)] * C
    best_ids = [np.zeros(0, np.int64)] * C
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        logp = log_softmax(mlp.forward(model.params, spec, _single_feature_inputs(model, part))[0])
        for c in range(C):                       # keep a running top-k per label
            s = np.concatenate([best[c], logp[:, c]])
            i = np.concatenate([best_ids[c], part])
            keep = np.argsort(-s, kind="stable")[:top]
            best[c], best_ids[c] = s[keep], i[keep]
    r["top_features"] = {model.labels[c]: [(explain.feature_name(i, vocab), float(np.exp(s)))
                                           for i, s in zip(best_ids[c].tolist(), best[c].tolist())]
                         for c in range(C)}
    if data_path is not None:
        texts = data.iter_texts([str(data_path)], cfg.data)
        unknown: dict = {}
        n_tokens = n_unk = 0
        index = fz.vocab.index
        for batch in _chunks_of(texts, 4096):
            for t in fz.tokens_of(batch):
                if t == SEP:
                    continue
                n_tokens += 1
                if t not in index:
                    n_unk += 1
                    unknown[t] = unknown.get(t, 0) + 1
        r["unknown_rate"] = n_unk / n_tokens if n_tokens else 0.0
        r["tokens"] = n_tokens
        r["frequent_unknown"] = sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    if words:
        if "E" not in model.params:
            raise ConfigError(f"--word: {model_dir} is a bag-of-words model; nearest neighbours need an "
                              f"embedding model (features.kind embed_mean or embed_concat)")
        E = model.params["E"].astype(np.float64)
        norms = np.linalg.norm(E, axis=1)
        norms[norms == 0] = 1.0
        r["neighbours"] = {}
        for w in words:
            w = w.lower() if cfg.features.lowercase else w
            if w not in fz.vocab.index:
                r["neighbours"][w] = None
                continue
            j = fz.vocab.index[w]
            cos = E @ E[j] / (norms * norms[j])
            cos[[0, 1, j]] = -np.inf
            nn_ids = np.argsort(-cos, kind="stable")[:top]
            r["neighbours"][w] = [(explain.feature_name(i, vocab), float(cos[i])) for i in nn_ids.tolist()]
    return r


def _chunks_of(items, size):
    batch = []
    for x in items:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

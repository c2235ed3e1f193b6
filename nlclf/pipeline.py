"""The stages chained: run_train, run_eval, run_predict.

Nothing here prints: messages go through ``log``, progress through ``on_progress``.
Files are written only by the checkpoint and report modules.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import checkpoint, data, metrics, report
from .config import Config, dump, to_dict
from .errors import CheckpointError, ConfigError, DataError, OutputError
from .features import Featurizer
from .model import Classifier
from .nn import mlp
from .train import fit, predict_logits
from .vocab import PAD_ID, LabelSet

DEFAULT_DATA_ROOT = Path(__file__).resolve().parent.parent / "data"


def data_root(explicit: str | None = None) -> Path:
    """--data-root, else $NLCLF_DATA_ROOT, else the project's data/ (or ./data)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("NLCLF_DATA_ROOT"):
        return Path(os.environ["NLCLF_DATA_ROOT"])
    return DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else Path("data")


def _label_ids(labels: list, label_set: LabelSet, path) -> np.ndarray:
    unknown = sorted(set(labels) - set(label_set.index))
    if unknown:
        raise DataError(f"{path}: labels not seen in training: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''} (known: {', '.join(label_set.labels)})")
    return np.fromiter((label_set.index[l] for l in labels), dtype=np.int64, count=len(labels))


def _texts_noting_labels(path, labels: list):
    """The texts of a labelled file, streamed, appending each label to ``labels`` on the way."""
    for _, label, text in data.iter_labelled(path):
        labels.append(label)
        yield text


def _require_examples(labels: list, path) -> None:
    if not labels:
        raise DataError(f"{path}: no examples (expected lines of 'label<TAB>text')")


OUTPUT_FILES = ("model.npz", "model.json", "state.npz", "state.json", "config.yaml", "report.json",
                "report.md", "learning_curves.png", "confusion_matrix.png", "cv.json", "cv.md",
                "leaderboard.json", "leaderboard.md", "best.yaml")


def prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Create the output folder; refuse a non-empty one unless overwrite (which removes the files
    nlclf writes there, and nothing else); check it is writable."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputError(f"{out_dir}: output folder exists and is not empty; "
                              f"use --overwrite to replace it, or choose another --out")
        for name in OUTPUT_FILES:
            (out_dir / name).unlink(missing_ok=True)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot write to the output folder: {e.strerror or e}") from None


def net_spec(cfg: Config, featurizer: Featurizer, n_classes: int) -> mlp.NetSpec:
    f, m = cfg.features, cfg.model
    return mlp.NetSpec(input_kind=f.kind, n_inputs=featurizer.n_features, n_classes=n_classes,
                       hidden=tuple(m.hidden), activation=m.activation, leaky_slope=m.leaky_slope,
                       hidden_bias=m.hidden_bias, output_bias=m.output_bias, dropout=m.dropout,
                       input_dropout=f.word_dropout if f.kind != "embed_concat" else 0.0,
                       embed_dim=f.embed_dim if f.kind != "bow" else 0,
                       max_tokens=f.max_tokens if f.kind == "embed_concat" else 0,
                       freeze_embeddings=f.freeze, pad_id=PAD_ID)


def train_model(cfg: Config, featurizer: Featurizer, X, y, X_dev, y_dev, labels: list,
                rng: np.random.Generator, root=None, on_progress=None, log=lambda msg: None,
                state=None, should_stop=None, on_checkpoint=None):
    """Build the network for fitted features, initialise it (pretrained rows included) and
    train it: returns (Classifier with the best dev epoch's weights, train.Result).
    With ``state`` (a saved train.State) training continues from it instead."""
    spec = net_spec(cfg, featurizer, len(labels))
    dtype = np.dtype(cfg.train.dtype)
    params = mlp.init_params(spec, rng, dtype)
    if cfg.features.pretrained and cfg.features.kind != "bow":
        ids, vecs = data.read_vectors(data.resolve(cfg.features.pretrained, data_root(root)),
                                      featurizer.vocab.index, cfg.features.embed_dim)
        params["E"][ids] = vecs
        log(f"pretrained vectors cover {len(ids)} of {len(featurizer.vocab) - 2} vocabulary words "
            f"({len(ids) / max(1, len(featurizer.vocab) - 2):.1%})")
    decay = {name: cfg.train.weight_decay for name in params if not name.startswith("b") and name != "E"}
    if "E" in params:
        decay["E"] = cfg.features.embed_l2
    lr_mult = {"E": cfg.features.embed_lr} if "E" in params else {}

    if state is not None:
        if {k: v.shape for k, v in state.params.items()} != {k: v.shape for k, v in params.items()}:
            raise CheckpointError("the saved training state does not match the network of this config")
        params = state.params
    result = fit(params, spec, X, y, X_dev, y_dev, cfg.train, rng, decay, lr_mult, on_progress,
                 state, should_stop, on_checkpoint)
    return Classifier(featurizer, spec, result.params, list(labels)), result


def fit_lists(cfg: Config, train: tuple, dev: tuple, root=None, on_progress=None, log=lambda msg: None):
    """Train on in-memory (labels, texts) pairs: the core of cross-validation and tuning."""
    label_set = LabelSet(train[0])
    if len(label_set) < 2:
        raise DataError(f"only one class in the training data ({label_set.labels[0]})")
    featurizer = Featurizer(cfg.features)
    X = featurizer.fit_transform(list(train[1]))
    X_dev = featurizer.transform(list(dev[1]))
    y = _label_ids(train[0], label_set, "training data")
    y_dev = _label_ids(dev[0], label_set, "dev data")
    rng = np.random.default_rng(cfg.seed)
    return train_model(cfg, featurizer, X, y, X_dev, y_dev, label_set.labels, rng, root, on_progress, log)


def score(model: Classifier, labels: list, texts: list) -> dict:
    """metrics.report of a model on labelled texts (labels unseen in training count as errors)."""
    index = {l: i for i, l in enumerate(model.labels)}
    y = np.array([index.get(l, -1) for l in labels])
    pred = model.proba(list(texts)).argmax(1)
    return metrics.report(y, pred, model.labels)


def _resume_state(cfg: Config, out: Path):
    """The saved state of an interrupted run in ``out``, checked against ``cfg``."""
    state, meta = checkpoint.load_state(out)
    saved, now = meta["config"], to_dict(cfg)
    if saved != now:
        diff = [f"{sec}.{k}" if isinstance(now.get(sec), dict) else sec
                for sec in now for k in (now[sec] if isinstance(now[sec], dict) else [None])
                if (saved.get(sec, {}).get(k) if isinstance(now[sec], dict) and isinstance(saved.get(sec), dict)
                    else saved.get(sec)) != (now[sec][k] if isinstance(now[sec], dict) else now[sec])]
        raise ConfigError(f"{out}: the config differs from the interrupted run's ({', '.join(diff[:5])}); "
                          f"resume with the same config and --set options")
    if state.done:
        raise OutputError(f"{out}: that run already finished; nothing to resume")
    return state


def run_train(cfg: Config, root=None, out_dir=None, overwrite: bool = False,
              on_progress=None, log=lambda msg: None, resume: bool = False, should_stop=None) -> dict:
    """Train as ``cfg`` says; write checkpoint, config and report to the output folder; return the report.

    The best model is saved whenever the dev score improves, the training state at the end of
    every epoch and when ``should_stop()`` turns true (then Interrupted is raised); ``resume``
    continues the interrupted run saved in the output folder, to the same final bytes."""
    t_start = time.perf_counter()
    root = data_root(root)
    out = Path(out_dir or cfg.output.dir)
    train_path = data.resolve(cfg.data.train, root)
    dev_path = data.resolve(cfg.data.dev, root) if cfg.data.dev else None
    test_path = data.resolve(cfg.data.test, root) if cfg.data.test else None
    for p in (train_path, dev_path, test_path):
        if p is not None and not p.is_file():
            raise DataError(f"{p}: file not found (paths in the config are relative to the data "
                            f"root {root}; set --data-root or NLCLF_DATA_ROOT)")
    state = _resume_state(cfg, out) if resume else None
    if state is None:
        prepare_output(out, overwrite)
    else:
        log(f"resuming from epoch {state.epoch}, batch {state.batch}")

    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    featurizer = Featurizer(cfg.features)
    if dev_path is not None:
        # two streamed passes over train (vocabulary, then counts); the texts are never held whole
        labels: list = []
        featurizer.fit_vocab(_texts_noting_labels(train_path, labels))
        _require_examples(labels, train_path)
        X = featurizer.transform_counts(text for _, _, text in data.iter_labelled(train_path))
        dev_labels, dev_texts = data.read_labelled(dev_path)
        X_dev = featurizer.transform_counts(dev_texts)
        del dev_texts
    else:
        all_labels = data.read_labels(train_path)
        _require_examples(all_labels, train_path)
        is_dev = data.stratified_split(all_labels, cfg.data.dev_fraction, cfg.seed)
        labels = [l for l, d in zip(all_labels, is_dev) if not d]
        dev_labels = [l for l, d in zip(all_labels, is_dev) if d]
        log(f"no dev file: held out {len(dev_labels)} of the training examples "
            f"({cfg.data.dev_fraction:.0%}, stratified, seed {cfg.seed})")
        featurizer.fit_vocab(text for (_, _, text), d in zip(data.iter_labelled(train_path), is_dev) if not d)
        X, X_dev = featurizer.transform_split((text for _, _, text in data.iter_labelled(train_path)), is_dev)
    if cfg.features.kind != "embed_concat":
        featurizer.fit_weights(X)
        X, X_dev = featurizer.weigh(X), featurizer.weigh(X_dev)
    featurize_seconds = time.perf_counter() - t0

    label_set = LabelSet(labels)
    if len(label_set) < 2:
        raise DataError(f"{train_path}: only one class ({label_set.labels[0]}); need at least two")
    y = _label_ids(labels, label_set, train_path)
    y_dev = _label_ids(dev_labels, label_set, dev_path or train_path)
    del labels, dev_labels

    checkpoint.atomic_write(out / "config.yaml", dump(cfg).encode())

    def on_checkpoint(st, why):
        if why == "best":
            checkpoint.save(out, Classifier(featurizer, spec_box[0], st.best_params, label_set.labels), cfg)
        if not st.done:
            checkpoint.save_state(out, st, cfg)

    spec_box = [net_spec(cfg, featurizer, len(label_set))]
    model, result = train_model(cfg, featurizer, X, y, X_dev, y_dev, label_set.labels, rng, root,
                                on_progress, log, state, should_stop, on_checkpoint)
    spec = model.spec

    final = {"dev": metrics.report(y_dev, predict_logits(model.params, spec, X_dev).argmax(1), label_set.labels)}
    n_test = 0
    if test_path is not None:
        test_labels, test_texts = data.read_labelled(test_path)
        y_test = _label_ids(test_labels, label_set, test_path)
        probs = model.proba(test_texts)
        final["test"] = metrics.report(y_test, probs.argmax(1), label_set.labels)
        n_test = len(y_test)

    checkpoint.save(out, model, cfg)
    checkpoint.remove_state(out)
    r = {
        "data": {"train": int(len(y)), "dev": int(len(y_dev)), "test": n_test,
                 "train_file": str(train_path), "dev_file": str(dev_path) if dev_path else None,
                 "test_file": str(test_path) if test_path else None},
        "labels": label_set.labels,
        "features": {"kind": cfg.features.kind, "vocab_size": len(featurizer.vocab),
                     "n_features": featurizer.n_features},
        "model": {"hidden": list(spec.hidden), "activation": spec.activation,
                  "parameters": mlp.n_params(model.params)},
        "metric": cfg.train.metric, "best_epoch": result.best_epoch, "best_score": result.best_score,
        "history": result.history, "final": final,
        "featurize_seconds": featurize_seconds, "train_seconds": result.train_seconds,
        "steps": result.steps, "total_seconds": time.perf_counter() - t_start,
        "out_dir": str(out),
    }
    report.write_train_report(out, r)
    return r


def run_eval(model_dir, data_path) -> dict:
    """Metrics of a saved model on a labelled file."""
    model, _, _ = checkpoint.load(model_dir)
    labels, texts = data.read_labelled(data_path)
    y = _label_ids(labels, LabelSet(model.labels), data_path)
    probs = model.proba(texts)
    return metrics.report(y, probs.argmax(1), model.labels)


def _batches(lines: Iterable[str], max_batch: int) -> Iterator[list]:
    """Group lines into batches without waiting: a reader thread fills a queue, and each batch
    takes whatever has arrived (at least one line, at most max_batch). Interactive input is
    answered line by line; a file is read in full batches."""
    q: queue.Queue = queue.Queue(maxsize=4 * max_batch)
    done = object()
    error: list = []

    def reader():
        try:
            for line in lines:
                q.put(line)
        except BaseException as e:     # handed over to the consuming thread
            error.append(e)
        finally:
            q.put(done)

    threading.Thread(target=reader, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            break
        batch = [item]
        finished = False
        while len(batch) < max_batch:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is done:
                finished = True
                break
            batch.append(item)
        yield batch
        if finished:
            break
    if error:
        raise error[0]


def run_predict(model_dir, paths: Iterable[str] = ("-",), top_k: int = 1, batch_size: int = 1024,
                texts: Iterable[str] | None = None) -> Iterator[list]:
    """Batches of results for the input lines of ``paths`` ('-' is stdin), or for ``texts``, in
    order: each result is the top_k (label, probability) pairs of one line. A batch is whatever
    input has arrived (at most batch_size lines), so interactive input is answered at once."""
    model, _, _ = checkpoint.load(model_dir)
    lines = data.iter_texts(paths) if texts is None else texts
    k = max(1, min(top_k, len(model.labels)))
    labels = model.labels
    for batch in _batches(lines, batch_size):
        probs = model.proba(batch)                                     # (N, C)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]         # (N, k)
        p = np.take_along_axis(probs, top, axis=1).tolist()
        yield [[(labels[i], pi) for i, pi in zip(ids, row)] for ids, row in zip(top.tolist(), p)]

"""Prediction on streams: `nlclf predict` and the Python API's batches; and of many files
into an output folder (`nlclf predict --out-dir`), on forked workers or a Dask cluster.

Input records are grouped into batches as they arrive (interactive input is answered at once),
scored by forked workers in order (parallel.ordered_map) and handed back with their
identifiers and, if asked, their texts.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import queue
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import checkpoint, data, explain, metrics, parallel, rundir, runtime
from .errors import CheckpointError, ConfigError, DataError


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


def top_labels(probs: np.ndarray, labels: list, k: int = 1, threshold: float | None = None,
               keep: np.ndarray | None = None) -> list:
    """For each row of probs (N, C): the (label, probability) pairs of its ``k`` most probable
    labels (every label for k < 1), most probable first (ties: the label order), keeping only
    those with a probability of at least ``threshold``, and with ``keep`` (N, C) bool only
    those it marks (among the k most probable of those)."""
    if keep is not None:
        order = np.argsort(-probs, axis=1, kind="stable")                # (N, C)
        kept = np.take_along_axis(keep, order, axis=1)                  # (N, C), most probable first
        p = np.take_along_axis(probs, order, axis=1).tolist()
        limit = probs.shape[1] if k < 1 else k
        out = [[(labels[i], pi) for i, pi, m in zip(ids, row, ms) if m][:limit]
               for ids, row, ms in zip(order.tolist(), p, kept.tolist())]
        return out if threshold is None else [[(l, pi) for l, pi in row if pi >= threshold] for row in out]
    k = probs.shape[1] if k < 1 else min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]         # (N, k)
    p = np.take_along_axis(probs, top, axis=1).tolist()
    out = [[(labels[i], pi) for i, pi in zip(ids, row)] for ids, row in zip(top.tolist(), p)]
    if threshold is not None:
        out = [[(l, pi) for l, pi in row if pi >= threshold] for row in out]
    return out


def decided_labels(model, probs: np.ndarray, k: int | None = None, threshold: float | None = None,
                   allow_empty: bool = False) -> list:
    """The (label, probability) pairs each row of probs (N, C) is given, most probable first:
    what `nlclf predict`, `nlclf serve` and the Python API print and return.

    One label a text: top_labels with k (None: 1, or every label when a threshold is given)
    and the threshold. Several labels a text (a sigmoid model): with k and no threshold, the
    k most probable labels (k = -1: all); otherwise every label at or above the threshold
    (``threshold``, else the model's own, global or per label, chosen on dev), the most
    probable one if none is, unless ``allow_empty``, at most k of them when k is given."""
    if not getattr(model, "several", False):
        return top_labels(probs, model.labels, resolve_k(k, threshold), threshold)
    if k is not None and threshold is None:
        return top_labels(probs, model.labels, k)
    keep = metrics.decide(probs, model.thresholds if threshold is None else threshold, allow_empty)   # (N, C)
    return top_labels(probs, model.labels, -1 if k is None else k, keep=keep)


def resolve_k(k: int | None, threshold: float | None) -> int:
    """The number of labels asked for: ``k`` when given; else 1, or every label (-1) when a
    ``threshold`` is given (fastText's predict-prob: all labels at or above it)."""
    if k is None:
        return 1 if threshold is None else -1
    return k


def run_predict(model_dir, paths: Iterable[str] = ("-",), top_k: int | None = 1, batch_size: int = 1024,
                texts: Iterable[str] | None = None, explain_k: int = 0, workers: int = 0,
                threshold: float | None = None, id_field: str | None = None,
                with_text: bool = False, allow_empty: bool = False) -> Iterator[list]:
    """Batches of results for the input records of ``paths`` ('-' is stdin), or for ``texts``,
    in order. Each result is a dict: "top", the (label, probability) pairs of the ``top_k``
    most probable labels (all of them for top_k < 1) whose probability is at least
    ``threshold`` (fastText's predict-prob; possibly none), or with ``explain_k`` the keys of
    an explanation (see explain.explain); "id", the record's identifier (``id_field`` of
    JSON Lines and CSV records, the document's path for a folder, else None); "text" with
    ``with_text``. A batch is whatever input has arrived (at most batch_size records), so
    interactive input is answered at once. Batches are computed by ``workers`` forked
    processes (0: one per core; 1: in this process). A model with several labels a text gives
    the labels of decided_labels (its thresholds unless ``top_k`` or ``threshold`` is given)."""
    model, cfg, _ = _cached_model(model_dir)
    if texts is None and parallel.n_workers(workers) > 1 and _input_bytes(paths) >= PREPARE_BYTES:
        model.featurizer.prepare()      # its large batches' lookup tables, built once and shared by the workers
    records = data.iter_records(paths, cfg.data, id_field=id_field) if texts is None else ((None, t) for t in texts)
    predict_batch = _scorer(model, top_k, threshold, explain_k, allow_empty)
    if parallel.n_workers(workers) == 1:                # scored here (workers have one BLAS thread)
        predict_batch = _on_one_blas_thread(predict_batch)
    held: collections.deque = collections.deque()      # the records of the batches in flight, in order

    def texts_of(batches):
        for batch in batches:
            held.append(batch)
            yield [t for _, t in batch]

    for results in parallel.ordered_map(predict_batch, texts_of(_batches(records, batch_size)), workers):
        yield _results(held.popleft(), results, explain_k, with_text)


PREPARE_BYTES = 1 << 20      # input files of this many bytes: the featurizer's tables are built before forking


def _input_bytes(paths) -> int:
    """The bytes of the regular files among ``paths`` (0 for stdin and the rest)."""
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size if str(p) != "-" and Path(p).is_file() else 0
        except OSError:
            pass
    return total


def _scorer(model, k: int | None, threshold: float | None, explain_k: int, allow_empty: bool = False):
    """The function from a batch of texts to their results (see run_predict)."""

    def predict_batch(batch: list) -> list:
        if explain_k:
            return explain.explain(model, batch, explain_k)
        return decided_labels(model, model.proba(batch), k, threshold, allow_empty)

    return predict_batch


ONE_BLAS_THREAD = 64     # texts a batch from which run_predict scores it on one BLAS thread in this process


def _on_one_blas_thread(score):
    """``score`` with each batch of ONE_BLAS_THREAD texts or more run on one BLAS thread: the
    products of a file's batches are too small for more, and OpenBLAS's idle threads spun a
    second core through a whole file (100,000 lines on one process: 8.3 s of CPU for 4.4 s,
    against 4.3 s for 4.3 s). Worker processes (parallel) and predict_part set it once."""
    def scored(batch: list) -> list:
        if len(batch) < ONE_BLAS_THREAD:
            return score(batch)
        with runtime.blas_threads(1):
            return score(batch)
    return scored


def is_several(model_dir) -> bool:
    """Whether the model in ``model_dir`` gives a text several labels (loaded once per process)."""
    return _cached_model(model_dir)[0].several


def _results(batch: list, results: list, explain_k: int, with_text: bool) -> list:
    """run_predict's result dicts for a batch of (identifier, text) records and their scores."""
    out = []
    for (ident, text), r in zip(batch, results):
        item = dict(r) if explain_k else {"top": r}
        item["id"] = ident
        if with_text:
            item["text"] = text
        elif explain_k:
            item.pop("text", None)
        out.append(item)
    return out


# --- many files into an output folder, on this machine or a Dask cluster -----------------------

PART_LINES = 1 << 16          # lines a task: 64 batches of 1024
OUTPUT_SUFFIX = {"text": ".pred", "tsv": ".pred.tsv", "jsonl": ".pred.jsonl"}


@dataclasses.dataclass(frozen=True)
class Request:
    """What to compute for each record and how to print it (`nlclf predict`'s options)."""
    top_k: int | None = 1
    threshold: float | None = None
    allow_empty: bool = False
    explain_k: int = 0
    id_field: str | None = None
    with_text: bool = False
    batch_size: int = 1024
    fmt: str = "text"
    proba: bool = False             # print probabilities
    many: bool = False              # print several labels (jsonl: a "top" list)


_LOADED: dict = {}                    # in a worker process: (model folder, model.json's identity) -> model
_LOADING = threading.Lock()


def _model_identity(model_dir) -> tuple:
    """Which model a folder holds now, from a stat of its model.json (a retrained model is new)."""
    path = Path(model_dir).resolve()
    try:
        st = (path / checkpoint.META).stat()
    except OSError:
        return (str(path),)
    return str(path), st.st_ino, st.st_size, st.st_mtime_ns


def _cached_model(model_dir):
    """(model, config, the arrays' SHA-256), loaded once per process for a model folder."""
    key = _model_identity(model_dir)
    with _LOADING:
        if key not in _LOADED:
            _LOADED.clear()                      # one model a worker: a new one replaces the old
            model, cfg, meta = checkpoint.load(model_dir)
            _LOADED[key] = model, cfg, meta["sha256"]
        return _LOADED[key]


def predict_part(model_dir: str, part, req: Request) -> tuple:
    """(the model's SHA-256, the output bytes) of one task: a file, or a data.FilePart of one,
    predicted in fixed batches of req.batch_size records from its start, so the bytes do not
    depend on where, or beside which other parts, it ran. Runs on a worker: the model is loaded
    once per process. Its batches run as the training loop's do (runtime): glibc's batch-loop
    thresholds and one BLAS thread, whatever the worker's environment says (a Dask worker
    started with OPENBLAS_NUM_THREADS=2 on each of 2 cores took 1.6 times as long)."""
    from .report import prediction_lines
    model, cfg, sha = _cached_model(model_dir)
    model.featurizer.prepare()                 # a file or a part of one: many batches, built once a worker
    predict_batch = _scorer(model, req.top_k, req.threshold, req.explain_k, req.allow_empty)
    out = []
    with runtime.malloc_thresholds(runtime.BATCHES_MALLOC), runtime.blas_threads(1):
        for batch in parallel.chunks(data.iter_records([part], cfg.data, id_field=req.id_field), req.batch_size):
            results = _results(batch, predict_batch([t for _, t in batch]), req.explain_k, req.with_text)
            out.append(prediction_lines(results, req.fmt, req.proba, req.many, bool(req.explain_k)))
    return sha, "".join(out).encode("utf-8")


def output_names(paths: list, fmt: str) -> list:
    """The output file of each input: its name with the last suffix replaced by the format's
    (reviews.txt -> reviews.pred; --format jsonl: reviews.pred.jsonl). Two inputs that would
    write the same output are an error, before any work."""
    names, seen = [], {}
    for p in paths:
        if str(p) == "-":
            raise ConfigError("--out-dir writes one file per input file; standard input ('-') has no name")
        name = Path(p).name
        stem = Path(name).stem if Path(name).suffix and not Path(p).is_dir() else name
        out = (stem or name) + OUTPUT_SUFFIX[fmt]
        if out in seen:
            raise ConfigError(f"{seen[out]} and {p} would both be written to {out}; predict them into "
                              f"separate --out-dir folders")
        seen[out] = p
        names.append(out)
    return names


def predict_files(model_dir, paths: list, out_dir, req: Request, overwrite: bool = False,
                  workers: int = 0, scheduler: str | None = None, log=lambda msg: None) -> dict:
    """Predict each input file into its own file of ``out_dir`` (see output_names), each written
    atomically once complete. Line formats are cut into parts of PART_LINES lines; the parts
    run on ``workers`` forked processes (0: one per core) or, with ``scheduler``, on that Dask
    cluster (which reads the inputs and the model at the same paths), and the bytes written are
    the same either way. The output folder is claimed as a training run's is (a new or empty
    folder, or one nlclf wrote; ``overwrite`` replaces only the outputs it lists). Returns
    {"files": [{"input", "output", "bytes"}], "seconds"}."""
    from .cluster import executor
    t0 = time.perf_counter()
    names = output_names(paths, req.fmt)
    model_dir = str(Path(model_dir).resolve())
    model, cfg, sha = _cached_model(model_dir)           # loaded before the workers fork: they share it,
    if scheduler is None:                                # and the lookup tables of its large batches
        model.featurizer.prepare()                       # (a Dask worker builds its own: predict_part)
    for p in paths:
        if not Path(p).exists():
            raise DataError(f"{p}: file not found")
    plans = [data.line_parts(os.path.abspath(p), cfg.data, PART_LINES) for p in paths]   # a worker's cwd is its own
    folder = rundir.RunFolder.claim(out_dir, overwrite, writes=tuple(f"*{s}" for s in OUTPUT_SUFFIX.values()))
    pool = None
    try:
        tasks = [(model_dir, part, req) for plan in plans for part in plan]
        pool = executor(max(1, min(parallel.n_workers(workers), len(tasks))), scheduler)
        results = pool.ordered(predict_part, tasks)
        written = []
        for p, name, plan in zip(paths, names, plans):
            def write(f, n=len(plan)):
                for _ in range(n):
                    used, text = next(results)
                    if used != sha:
                        raise CheckpointError(f"{model_dir}: a worker read another model than this "
                                              f"process (arrays {used[:16]}, not {sha[:16]}): was it "
                                              f"replaced while predicting?")
                    f.write(text)
            target = folder.write(name, write)
            written.append({"input": str(p), "output": str(target), "bytes": target.stat().st_size})
            log(f"{p} -> {target}")
        results.close()
    except BaseException:
        folder.release(failed=True)
        raise
    finally:
        if pool is not None:
            pool.close()
    folder.release()
    return {"files": written, "seconds": time.perf_counter() - t0}

"""Prediction on streams: `nlclf predict` and the Python API's batches.

Input records are grouped into batches as they arrive (interactive input is answered at once),
scored by forked workers in order (parallel.ordered_map) and handed back with their
identifiers and, if asked, their texts.
"""

from __future__ import annotations

import collections
import queue
import threading
from typing import Iterable, Iterator

import numpy as np

from . import checkpoint, data, explain, parallel


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


def top_labels(probs: np.ndarray, labels: list, k: int = 1, threshold: float | None = None) -> list:
    """For each row of probs (N, C): the (label, probability) pairs of its ``k`` most probable
    labels (every label for k < 1), most probable first (ties: the label order), keeping only
    those with a probability of at least ``threshold``."""
    k = probs.shape[1] if k < 1 else min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]         # (N, k)
    p = np.take_along_axis(probs, top, axis=1).tolist()
    out = [[(labels[i], pi) for i, pi in zip(ids, row)] for ids, row in zip(top.tolist(), p)]
    if threshold is not None:
        out = [[(l, pi) for l, pi in row if pi >= threshold] for row in out]
    return out


def resolve_k(k: int | None, threshold: float | None) -> int:
    """The number of labels asked for: ``k`` when given; else 1, or every label (-1) when a
    ``threshold`` is given (fastText's predict-prob: all labels at or above it)."""
    if k is None:
        return 1 if threshold is None else -1
    return k


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
    k = top_k
    labels = model.labels

    def predict_batch(batch: list) -> list:
        if explain_k:
            return explain.explain(model, batch, explain_k)
        return top_labels(model.proba(batch), labels, k, threshold)

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

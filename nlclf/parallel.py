"""Ordered, streaming maps over forked worker processes: how featurization and prediction use
every core of one machine. (Work for many machines goes to Dask: see cluster.py.)

``fn`` and everything it refers to (a fitted featurizer, a model) reach the workers by
``fork``, not by pickling; only the items and the results are pickled. At most two items
per worker are in flight, so the input is streamed: memory holds a few items, never all.
A thread feeds the workers, so each result is handed back as soon as it and the ones before
it are ready, even while the input waits for its next item (interactive prediction).
``background`` is that thread on its own: the training loop cuts its next batches with it.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import queue
import signal
import threading
from typing import Callable, Iterable, Iterator

from .runtime import BATCHES_MALLOC, blas_threads, keep_malloc_thresholds, signals_deferred

_FN: Callable | None = None      # the function a forked worker inherited
_IN_WORKER = False               # set in workers: no pools inside pools


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` consecutive items (the last one shorter), streamed."""
    it = iter(items)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def n_workers(workers: int) -> int:
    """The number of processes for a ``workers`` setting (0: one per core); 1 in a worker."""
    if _IN_WORKER or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return workers or (os.cpu_count() or 1)


def _mark_worker():
    """Runs first in each worker: no pools inside it, one BLAS thread (the workers already
    use every core; a multi-threaded BLAS beside them spins and makes prediction 1.8× slower),
    and glibc's thresholds of a loop over batches (runtime.BATCHES_MALLOC), whatever the parent
    set: a worker's chunks and batches free and reuse temporaries of the same sizes, which the
    featurizing parent's FEATURIZING_MALLOC would map and fault in afresh for every chunk
    (fitting 1,000,000 corpus documents on 2 workers: 23.5 s against 14.8 s)."""
    global _IN_WORKER
    _IN_WORKER = True
    blas_threads(1).__enter__()                  # for the worker's whole life
    keep_malloc_thresholds(BATCHES_MALLOC)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


def _answer(conn, fn, item) -> bool:
    """In a worker: send back ``fn(item)``, or the error it raised; False once the parent is gone."""
    try:
        out = fn(item)
    except BaseException as e:                   # noqa: BLE001 - handed to the parent
        out = _Failure(e)
    try:
        conn.send(out)
    except (BrokenPipeError, ConnectionResetError):
        return False
    except Exception as e:                       # the result or the error does not pickle
        conn.send(_Failure(RuntimeError(f"a worker's result could not be sent back: {e!r}")))
    return True


def _serve(conn, inherited: list) -> None:
    """A worker's loop: an item in, its result (or the error it raised) out, until the parent
    closes its end. Ctrl-C is left to the parent, which ends the workers itself."""
    _mark_worker()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for c in inherited:                          # the parent's ends of the pipes, copied by fork
        c.close()
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if not _answer(conn, _FN, item):
            return


def ordered_map(fn: Callable, items: Iterable, workers: int = 0, min_items: int = 1) -> Iterator:
    """``fn(item)`` for each item, in order: in ``n_workers(workers)`` forked processes, or in
    this one when that is 1 or when the input holds fewer than ``min_items`` items (those are
    read ahead before deciding). With ``min_items`` 1 the workers are forked before the input
    is touched: a thread reading stdin must not be caught mid-read by fork (a forked child
    closes its stdin, and would wait forever for the lock that thread holds). Errors raised by
    ``fn`` or by the input come out of this generator.

    Item i goes to worker i mod W over that worker's own pipe, and results are read back in
    the same order. No lock or queue is shared between processes, so stopping early (a reader
    that went away, ``| head -1``) ends the workers at once and can never wait on one of them:
    multiprocessing.Pool's terminate() can, when a worker is killed holding its result lock.
    """
    items = iter(items)
    workers = n_workers(workers)
    head: list = []
    if workers > 1 and min_items > 1:
        head = list(itertools.islice(items, min_items))
        if len(head) < min_items:
            workers = 1
    items = itertools.chain(head, items)
    if workers <= 1:
        yield from map(fn, items)
        return

    global _FN
    _FN = fn
    ctx = multiprocessing.get_context("fork")
    conns, procs = [], []
    try:
        for _ in range(workers):
            mine, theirs = ctx.Pipe()
            conns.append(mine)
            p = ctx.Process(target=_serve, args=(theirs, list(conns)), daemon=True)
            with signals_deferred():           # a signal inside fork's handlers would be swallowed there
                p.start()
            theirs.close()
            procs.append(p)

        def dispatch():                          # on the feeding thread: send, then say to whom
            for i, item in enumerate(items):
                conns[i % workers].send(item)
                yield i % workers

        # join=False: the feeding thread may be waiting for input (stdin) when we stop
        with contextlib.closing(background(dispatch(), 2 * workers, join=False)) as owners:
            for k in owners:
                try:
                    out = conns[k].recv()
                except (EOFError, OSError):
                    procs[k].join(1)
                    raise RuntimeError(f"worker process {procs[k].pid} died (exit code "
                                       f"{procs[k].exitcode})") from None
                if isinstance(out, _Failure):
                    raise out.error
                yield out
    finally:
        _FN = None
        for p in procs:                          # first the workers, so a blocked send fails
            p.kill()
        for p in procs:
            p.join()
        for c in conns:
            c.close()


class WorkerLost(RuntimeError):
    """A worker process ended without handing back its result (killed, out of memory)."""


def _run_one(conn, fn, item) -> None:
    """A task process: compute, send the result (or the error), exit. Signals are the parent's:
    Ctrl-C and SIGTERM reach the whole process group, and the parent ends the tasks itself."""
    _mark_worker()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _answer(conn, fn, item)


def unordered_map(fn: Callable, items: list, workers: int = 0, should_start: Callable | None = None) -> Iterator:
    """(i, fn(items[i])) for every item as each finishes, at most ``n_workers(workers)`` at a
    time, each item in a forked process of its own (for long tasks: folds, trials). What fn
    raises comes back as (i, the exception) and the others go on; a process that dies (kill -9,
    the kernel's out-of-memory killer) comes back as (i, WorkerLost). Closing the generator,
    or an exception in the consumer (Ctrl-C), kills the running processes at once. Once
    ``should_start()`` is false no more items are started (a time budget); the first always is."""
    from multiprocessing.connection import wait
    workers = n_workers(workers)
    can_start = should_start or (lambda: True)
    if workers <= 1 and _IN_WORKER:
        for i, item in enumerate(items):
            if not can_start():
                return
            try:
                yield i, fn(item)
            except Exception as e:               # noqa: BLE001 - reported like a worker's
                yield i, e
        return
    ctx = multiprocessing.get_context("fork")
    pending = list(enumerate(items))
    pending.reverse()
    running: dict = {}                           # connection -> (index, process)
    try:
        first = True
        while pending or running:
            if pending and not first and not can_start():
                pending.clear()
                if not running:
                    break
            while pending and len(running) < max(1, workers):
                i, item = pending.pop()
                first = False
                mine, theirs = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_run_one, args=(theirs, fn, item), daemon=True)
                with signals_deferred():       # a signal inside fork's handlers would be swallowed there
                    p.start()
                theirs.close()
                running[mine] = (i, p)
            for conn in wait(list(running)):
                i, p = running.pop(conn)
                try:
                    out = conn.recv()
                    out = out.error if isinstance(out, _Failure) else out
                except (EOFError, OSError):
                    p.join()
                    code = p.exitcode
                    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    out = WorkerLost(f"worker process {p.pid} died ({how}) before it finished")
                conn.close()
                p.join()
                yield i, out
    finally:
        for conn, (_, p) in running.items():
            p.kill()
        for conn, (_, p) in running.items():
            p.join()
            conn.close()


def background(items: Iterable, ahead: int, join: bool = True) -> Iterator:
    """The items of ``items``, produced by a helper thread at most ``ahead`` in advance.

    An error raised while producing comes out here after the items before it. Closing this
    generator stops the thread at its next item, and waits for it unless ``join`` is False.
    """
    q: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:         # handed to the consuming thread
            put(_Failure(e))
        put(_END)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Failure):
                raise x.error
            yield x
    finally:
        stop.set()
        if join:
            worker.join()

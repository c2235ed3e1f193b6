"""Where work runs: forked processes on this machine, or a Dask ``distributed`` cluster.

Both executors offer the same two maps over a list of tasks, each task a top-level function
of plain arguments (it is pickled for Dask): ``results``, each task's result as it finishes
(folds and trials, search.py), and ``ordered``, the results in task order, streamed with a
bounded number of tasks in flight (prediction of many files, predict.py). nlclf never runs a
cluster of its own: a scheduler address hands the work to Dask.
"""

from __future__ import annotations

import collections
import os
import re
from typing import Callable, Iterator

from . import parallel
from .errors import ConfigError


class Local:
    """Forked processes on this machine. ``results``: one process per task
    (parallel.unordered_map): the shared data reaches them by fork, a process that dies fails
    only its own task, Ctrl-C ends them at once. ``ordered``: ``jobs`` long-lived workers
    (parallel.ordered_map), which inherit by fork what the parent loaded before."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def results(self, fn, shared, tasks: list, should_start=None):
        """(i, fn(shared, *tasks[i]) or the exception it raised) as each task finishes; no task
        is started once ``should_start()`` is false."""
        return parallel.unordered_map(lambda args: fn(shared, *args), tasks, self.jobs, should_start)

    def ordered(self, fn: Callable, tasks: list) -> Iterator:
        """fn(*tasks[i]) for each task, in order; an error raised by a task comes out here."""
        return parallel.ordered_map(lambda args: fn(*args), tasks, self.jobs)

    def close(self):
        pass


SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(\d{1,5})/?$")


class Dask:
    """A Dask ``distributed`` scheduler: ``tcp://HOST:PORT``. Data files (and model folders)
    must be readable by the workers at the same paths. Dask's protocol unpickles what the
    scheduler sends: use only a cluster you trust."""

    def __init__(self, address: str):
        m = SCHEDULER_ADDRESS.match(address)
        if not m or not 0 < int(m.group(3)) < 65536:
            raise ConfigError(f"--scheduler {address}: expected a Dask scheduler address like "
                              f"tcp://HOST:PORT (port 1-65535)")
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--scheduler needs the 'distributed' package: pip install 'nlclf[distributed]'") from None
        try:
            self.client = Client(address, timeout="15s")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:            # OSError, TimeoutError, a protocol error, MemoryError, ...
            raise ConfigError(f"--scheduler {address}: cannot connect to a Dask scheduler there "
                              f"({type(e).__name__}: {str(e)[:200] or 'no answer'})") from None

    def results(self, fn, shared, tasks: list, should_start=None):
        """As Local's. Every task is handed to the scheduler at once; once ``should_start()`` is
        false the tasks not yet finished are cancelled (the scheduler does not say which began)."""
        from distributed import as_completed
        data = self.client.scatter(shared, broadcast=True)
        futures = [self.client.submit(fn, data, *args, pure=False) for args in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                try:
                    yield index[fut.key], fut.result()
                except Exception as e:             # noqa: BLE001 - the task's error, or a lost worker
                    if type(e).__name__ == "CancelledError":
                        continue
                    yield index[fut.key], e
                if should_start is not None and not should_start():
                    self.client.cancel([f for f in futures if not f.done()])
        finally:
            self.client.cancel(futures)

    def threads(self) -> int:
        """The cluster's worker threads now (at least 1)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:                          # noqa: BLE001 - a scheduler that went away answers later
            return 1

    def ordered(self, fn: Callable, tasks: list) -> Iterator:
        """As Local's: at most four tasks a worker thread are submitted ahead of the one being
        read, so a long task list holds a bounded number of results; a task's error (or a lost
        worker, Dask's KilledWorker) comes out here, and the rest are cancelled."""
        ahead = 4 * self.threads()
        futures: collections.deque = collections.deque()
        nxt = 0
        try:
            for _ in range(len(tasks)):
                while nxt < len(tasks) and len(futures) < ahead:
                    futures.append(self.client.submit(fn, *tasks[nxt], pure=False))
                    nxt += 1
                fut = futures.popleft()
                yield fut.result()
                fut.release()
        finally:
            if futures:
                self.client.cancel(list(futures))

    def close(self):
        self.client.close()


def executor(jobs: int | None = None, scheduler: str | None = None):
    """A Dask executor for a scheduler address, else forked processes (``jobs``; 0 or None:
    one per core)."""
    if scheduler:
        return Dask(scheduler)
    return Local(jobs or os.cpu_count() or 1)

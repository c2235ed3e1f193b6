"""The process and the machine it runs on: memory, signals, BLAS threads, the allocator.

Process-level knobs live here and only here, as context managers that restore what they
change; the pipeline's stages enter them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from pathlib import Path


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a smaller cgroup limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):          # pragma: no cover - not Linux
        total = 0
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < (total or 1 << 62):
            total = int(text)
    return total


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as memory is sold and `free -h` prints)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"                                   # pragma: no cover


@contextlib.contextmanager
def signals_deferred():
    """Ctrl-C or SIGTERM arriving inside the block is acted on when it ends, so that a group of
    files (a report and its Markdown, a model moved into place) is written whole. Only the main
    thread handles signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list = []
    previous = {s: signal.signal(s, lambda signum, frame: got.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if got:
            handler = previous[got[0]]
            if callable(handler):
                handler(got[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), got[0])


# --- BLAS threads ------------------------------------------------------------------------

def blas_threads(n: int = 1):
    """A context in which BLAS uses ``n`` threads, restored after (threadpoolctl). One is what
    the minibatch products want (a multi-threaded BLAS spinning beside the batch-preparing
    thread is many times slower), and what a worker process wants when the workers already
    use every core."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                           # pragma: no cover - comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(n, user_api="blas")


# --- glibc's allocator ---------------------------------------------------------------------

MALLOC_DEFAULT = 128 * 1024              # glibc's starting mmap threshold (and trim threshold)
FEATURIZING_MALLOC = 128 * 1024          # featurization: large blocks mapped, given back when freed
BATCHES_MALLOC = 32 * 1024 * 1024        # a loop over minibatches (training, predicting a file):
                                         # glibc's upper bound for its dynamic threshold


def _started_with() -> tuple:
    """(mmap, trim) thresholds as this process started: the environment's (Dask's nanny starts
    its workers with MALLOC_TRIM_THRESHOLD_=65536), else glibc's starting ones."""
    def env(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        return int(value) if value.isdigit() else default
    return env("MALLOC_MMAP_THRESHOLD_", MALLOC_DEFAULT), env("MALLOC_TRIM_THRESHOLD_", MALLOC_DEFAULT)


_malloc_now = [_started_with()]


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc, when this process uses it (None elsewhere)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt                                          # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


def _set_malloc(thresholds: tuple) -> None:
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, thresholds[0])                      # M_MMAP_THRESHOLD
        libc.mallopt(-1, thresholds[1])                      # M_TRIM_THRESHOLD
    _malloc_now[0] = thresholds


def trim_heap() -> None:
    """Give the heap's free memory back to the system (glibc's malloc_trim; a no-op elsewhere):
    after a phase that ran under BATCHES_MALLOC, whose freed blocks the heap would keep."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def keep_malloc_thresholds(nbytes: int) -> None:
    """malloc_thresholds(nbytes) for the rest of this process's life (a worker's)."""
    _set_malloc((nbytes, 2 * nbytes))


@contextlib.contextmanager
def malloc_thresholds(nbytes: int):
    """glibc's mmap threshold at ``nbytes`` and its trim threshold at twice that, inside the
    block; the previous setting after (at first, the one the process started with; a no-op
    without glibc). Setting either by hand freezes the other, so both are set together.

    Featurization uses FEATURIZING_MALLOC while it stacks the chunks' arrays into X: by default
    glibc raises the mmap threshold each time a large block is freed, so later chunks' arrays
    would come from the heap and freeing them after they are stacked would not give the memory
    back (peak memory twice X). Its workers and its fit pass's merging use BATCHES_MALLOC
    (parallel._mark_worker, features.bag.Bag._fit): under 128 KiB every chunk's temporaries
    were mapped and faulted in afresh, and a million documents took 26 s instead of 16.
    Loops over minibatches (the training loop, a worker predicting a file) use BATCHES_MALLOC:
    their per-batch temporaries (a few MB each) then come from the heap instead of being mapped
    and zeroed by the kernel at every step, and a heap top trimmed after every batch and
    faulted in again by the next (100,000 page faults a second on the 1M-document benchmark) is
    avoided. This matters most where the environment fixed the thresholds: in a Dask worker
    (MALLOC_TRIM_THRESHOLD_=65536, which also freezes the mmap threshold at 128 KiB) predicting
    files took 1.7 times as long without it."""
    before = _malloc_now[0]
    _set_malloc((nbytes, 2 * nbytes))
    try:
        yield
    finally:
        _set_malloc(before)

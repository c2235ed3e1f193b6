"""Run one benchmark command and measure its wall time and peak RSS.

``run(cmd)`` starts ``cmd`` with OMP/MKL/OpenBLAS limited to 2 threads, reaps it with
``os.wait4`` (the child's own ``ru_maxrss``, KiB on Linux), and returns
``{"wall_seconds", "peak_rss_mb", "returncode", "tree_peak_pss_mb", "tree_peak_rss_mb",
"tree_max_procs", **last JSON line of stdout}``.
It raises ``RuntimeError`` with the tail of stderr if the command fails.

``peak_rss_mb`` is the kernel's figure: the largest resident set of the child *or of any
one* of its reaped descendants -- not their sum. A program that forks workers (nlclf's
featurizer does) uses more than that at once, so ``run`` also samples the process tree
every ``SAMPLE_SECONDS`` (``/proc/*/stat`` for the parent links, ``smaps_rollup`` for the
memory) and reports the largest sum seen: ``tree_peak_pss_mb`` (proportional set size:
pages shared by forked processes counted once in total), ``tree_peak_rss_mb`` (plain sum,
counting shared pages once per process) and ``tree_max_procs``. Sampling can miss a
peak shorter than the interval; ``peak_rss_mb`` cannot.

    python bench/measure.py -- python bench/peer_torch.py --train ... --dev ...
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

THREAD_ENV = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
              "OPENBLAS_NUM_THREADS": "2"}
SAMPLE_SECONDS = 0.2  # one sample costs ~3-5 ms of CPU (a /proc scan): ~2% of one core


def _tree(root):
    """The pids of ``root`` and its live descendants (from the ppid field of /proc/*/stat)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(name))
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, ()))
    return pids


def _memory_kib(pid):
    """(Rss, Pss) of one process in KiB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if line[:4] in ("Rss:", "Pss:"))
    except (OSError, ValueError):
        return None
    try:
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (KeyError, IndexError, ValueError):
        return None


class _TreeSampler(threading.Thread):
    """Polls the memory of a process tree until ``stop`` is set; keeps the peaks."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.rss = self.pss = self.procs = 0

    def run(self):
        while not self.stop.is_set():
            try:
                mems = [m for m in map(_memory_kib, _tree(self.pid)) if m]
            except OSError:
                mems = []
            if mems:
                self.rss = max(self.rss, sum(m[0] for m in mems))
                self.pss = max(self.pss, sum(m[1] for m in mems))
                self.procs = max(self.procs, len(mems))
            self.stop.wait(SAMPLE_SECONDS)


def last_json(text):
    """The last line of ``text`` that parses as a JSON object, or ``{}``."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {}


def run(cmd, env=None):
    """Run ``cmd`` (a list of str); ``env`` entries override the defaults above."""
    full_env = {**os.environ, **THREAD_ENV, **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if code != 0:
        tail = "\n".join(stderr.splitlines()[-20:])
        raise RuntimeError(f"command failed ({code}): {' '.join(cmd)}\n{tail}")
    return {"wall_seconds": round(wall, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "returncode": code,
            "tree_peak_pss_mb": round(sampler.pss / 1024, 1),
            "tree_peak_rss_mb": round(sampler.rss / 1024, 1),
            "tree_max_procs": sampler.procs, **last_json(stdout)}


def write_section(path, doc: list, begin: str, end: str) -> None:
    """Print ``doc`` (lines) and put it into ``path`` between the markers ``begin`` and ``end``,
    the rest of the file kept (the section appended when it has none yet)."""
    print("\n".join(doc))
    out = Path(path)
    old = out.read_text(encoding="utf-8") if out.exists() else ""
    block = "\n".join([begin, *doc, end])
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    out.write_text(new, encoding="utf-8")


def main(argv=None):
    """CLI: ``measure.py -- CMD ...``; prints the merged result as one JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: measure.py -- CMD [ARGS...]")
    try:
        print(json.dumps(run(argv)))
    except RuntimeError as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()

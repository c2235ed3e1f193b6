"""Run one benchmark command and measure its wall time and peak RSS.

``run(cmd)`` starts ``cmd`` with OMP/MKL/OpenBLAS limited to 2 threads, reaps it with
``os.wait4`` (the child's own ``ru_maxrss``, KiB on Linux), and returns
``{"wall_seconds", "peak_rss_mb", "returncode", **last JSON line of stdout}``.
It raises ``RuntimeError`` with the tail of stderr if the command fails.

    python bench/measure.py -- python bench/peer_torch.py --train ... --dev ...
"""
import json
import os
import subprocess
import sys
import tempfile
import time

THREAD_ENV = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
              "OPENBLAS_NUM_THREADS": "2"}


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
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
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
            "returncode": code, **last_json(stdout)}


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

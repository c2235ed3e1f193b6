"""Compact models: ``make bench-compress``.

Usage::

    python bench/compress_bench.py [--data-root ../shared/data] [--work bench/out/compress]
        [--max-size 8MB] [--reuse] [--out docs/performance.md]

In one run, one process a row (``bench/measure.py``), for the default sst2 and sst5 models
(``configs/<set>.yaml``, data paths only): train (kept with ``--reuse``), ``nlclf compress`` to
``--max-size`` with the set's test file as the check set, then ``nlclf eval`` of both models on
it and ``echo 'a fine film' | nlclf predict MODEL -`` from each (median of 5). Writes the table
between the ``bench-compress`` markers of ``--out`` and every figure to
``<work>/compress.json``; issue 17's targets: at most 8 MB, the same label on at least 99 % of
the test lines, at most 0.5 points of test accuracy lost.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import measure  # noqa: E402

NLCLF = str(Path(sys.executable).parent / "nlclf")
LINE = "a fine film"
RUNS = 5
BEGIN, END = "<!-- bench-compress: begin -->", "<!-- bench-compress: end -->"


def log(msg):
    print(f"[bench-compress] {msg}", file=sys.stderr, flush=True)


def files_mb(folder: Path) -> float:
    meta = json.loads((folder / "model.json").read_text())
    return ((folder / "model.json").stat().st_size + (folder / meta["arrays_file"]).stat().st_size) / 1e6


def accuracy(model: Path, test: Path) -> float:
    measure.run(["sh", "-c", f"{NLCLF} eval {model} {test} --report - > {model}.eval.json"])
    return json.loads(Path(f"{model}.eval.json").read_text())["accuracy"]


def start(model: Path) -> dict:
    runs = [measure.run(["sh", "-c", f"echo '{LINE}' | {NLCLF} predict {model} - > /dev/null"]) for _ in range(RUNS)]
    return {"wall_seconds": round(statistics.median(r["wall_seconds"] for r in runs), 3),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def one_set(name: str, args, work: Path) -> dict:
    full, small = work / name, work / f"{name}-small"
    test = Path(args.data_root) / name / "test.tsv"
    if not (args.reuse and (full / "model.json").exists()):
        log(f"training nlclf's default {name}")
        measure.run([NLCLF, "train", str(ROOT / "configs" / f"{name}.yaml"), "--data-root", args.data_root,
                     "--out", str(full), "--overwrite", "-q"])
    log(f"compressing {name} to {args.max_size}")
    c = measure.run([NLCLF, "compress", str(full), "--out", str(small), "--max-size", args.max_size,
                     "--check", str(test), "--agreement", "0", "--overwrite"])
    figures = json.loads((small / "compress.json").read_text())
    return {"full_mb": round(files_mb(full), 2), "small_mb": round(files_mb(small), 2),
            "compress_seconds": c["wall_seconds"], "rank": figures["rank"], "rows_kept": figures["rows_kept"],
            "rows_total": figures["rows_total"], "agreement": figures["check"]["agreement"],
            "n_test": figures["check"]["n"], "accuracy_full": accuracy(full, test),
            "accuracy_small": accuracy(small, test), "start_full": start(full), "start_small": start(small)}


def document(r: dict) -> list:
    rows = ["## Compact models (`make bench-compress`)", "",
            f"{r['started'][:16].replace('T', ' ')} UTC, one run (`{r['command']}`), load average before/after "
            f"{r['load'][0]:.2f} / {r['load'][1]:.2f}. `nlclf compress MODEL --out DIR --max-size {r['max_size']} "
            f"--check TEST`; accuracy by `nlclf eval`; one line: `echo '{LINE}' | nlclf predict MODEL -`, median "
            f"of {RUNS}.", "",
            "| model | files | compressed | rank, rows kept | compress s | test lines, same label | test accuracy "
            "| one line, full → compressed |", "|---|---|---|---|---|---|---|---|"]
    for k, v in r["sets"].items():
        rows.append(f"| {k} | {v['full_mb']:.2f} MB | {v['small_mb']:.2f} MB | {v['rank'] or 'full'}, "
                    f"{v['rows_kept']:,} of {v['rows_total']:,} | {v['compress_seconds']:.1f} | "
                    f"{v['agreement']:.2%} of {v['n_test']:,} | {100 * v['accuracy_full']:.2f} → "
                    f"{100 * v['accuracy_small']:.2f} | {v['start_full']['wall_seconds']:.2f} s, "
                    f"{v['start_full']['peak_rss_mb']:.0f} MB → {v['start_small']['wall_seconds']:.2f} s, "
                    f"{v['start_small']['peak_rss_mb']:.0f} MB |")
    rows += ["", "| target | measured | met |", "|---|---|---|"]
    for k, v in r["sets"].items():
        loss = 100 * (v["accuracy_full"] - v["accuracy_small"])
        ok = v["small_mb"] <= 8.0 and v["agreement"] >= 0.99 and loss <= 0.5
        rows.append(f"| {k}: at most 8 MB, the same label on at least 99 % of the test lines, at most 0.5 "
                    f"points lost | {v['small_mb']:.2f} MB, {v['agreement']:.2%}, {max(loss, 0.0):.2f} points lost | "
                    f"{'met' if ok else '**missed**'} |")
    return rows


def write(path, doc: list) -> None:
    """The section between the markers of ``path`` replaced (appended if there is none)."""
    measure.write_section(path, doc, BEGIN, END)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--work", default=str(HERE / "out" / "compress"))
    p.add_argument("--max-size", default="8MB")
    p.add_argument("--reuse", action="store_true", help="keep models trained by an earlier run")
    p.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    p.add_argument("--render", metavar="COMPRESS_JSON", help="measure nothing: write the section again from "
                   "an earlier run's compress.json")
    args = p.parse_args(argv)
    if args.render:
        write(args.out, document(json.loads(Path(args.render).read_text())))
        return
    args.data_root = str(Path(args.data_root).resolve())
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    r = {"sets": {k: one_set(k, args, work) for k in ("sst2", "sst5")}, "max_size": args.max_size,
         "started": started.isoformat(), "load": (load0, os.getloadavg()[0]),
         "command": f"python bench/compress_bench.py {' '.join(sys.argv[1:])}".strip(),
         "elapsed": time.perf_counter() - t0}
    (work / "compress.json").write_text(json.dumps(r, indent=1))
    write(args.out, document(r))
    log(f"done in {r['elapsed'] / 60:.1f} min: {args.out}")


if __name__ == "__main__":
    main()

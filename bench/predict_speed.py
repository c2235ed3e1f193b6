"""Prediction at every scale beside fastText: ``make bench-predict``.

Usage::

    python bench/predict_speed.py [--data-root ../shared/data] [--work bench/out/predict]
        [--reuse] [--skip NAME ...] [--out docs/performance.md]

In one run, one process a row (``bench/measure.py``: whole-process wall time, peak memory of
the process tree; 2 BLAS threads), one after the other:

1. models: nlclf's default configs of sst2 and sst5 (``configs/<set>.yaml``, data paths only),
   their files' size and test accuracy; fastText on sst5 with bench-accuracy's recipe (25
   epochs, lr 0.5, bigrams, dim 100) saved as ``.bin`` and, by ``quantize``, as ``.ftz``;
2. start: ``echo 'a fine film' | nlclf predict MODEL -`` (median of 5), and fastText's Python
   bindings labelling that line from the ``.ftz`` and the ``.bin``;
3. throughput: 100,000 lines (sst5's texts, cycled) through ``nlclf predict`` (a file on 2 workers and
   on one process, and the file on standard input, ``cat FILE | nlclf predict MODEL -``) and fastText (``peer_fasttext.py --predict``: load, read every line, predict),
   in ROUNDS alternating rounds, each row its median round;
4. memory: ``nlclf predict`` of 10,000 and of 1,000,000 lines;
5. Dask: 20 files of 50,000 lines into ``--out-dir``, locally with ``--workers 2`` and on a
   2-worker LocalCluster (started before, not timed), the outputs compared byte for byte.

Writes the tables between the ``bench-predict`` markers of ``--out`` (the rest of the file,
``make bench-speed``'s, is kept) and every figure to ``<work>/predict.json``.
"""
import argparse
import datetime
import hashlib
import itertools
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

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)   # measured as installed: with compiled bytecode

NLCLF = str(Path(sys.executable).parent / "nlclf")
LINE = "a fine film"
START_RUNS = 5
BEGIN, END = "<!-- bench-predict: begin -->", "<!-- bench-predict: end -->"
SECTIONS = ("start", "throughput", "memory", "dask")


def log(msg):
    print(f"[predict {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def texts_of(tsv: Path) -> list:
    with open(tsv, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t", 1)[-1] for line in f if line.strip()]


def write_lines(path: Path, texts: list, n: int) -> Path:
    if not path.exists() or sum(1 for _ in open(path, "rb")) != n:
        with open(path, "w", encoding="utf-8") as f:
            for t in itertools.islice(itertools.cycle(texts), n):
                f.write(t + "\n")
    return path


def mb(*paths) -> float:
    return round(sum(Path(p).stat().st_size for p in paths) / 1e6, 1)


def train_nlclf(name: str, args, work: Path) -> dict:
    out = work / name
    if not (args.reuse and (out / "model.json").exists()):
        log(f"training nlclf's default {name}")
        measure.run([NLCLF, "train", str(ROOT / "configs" / f"{name}.yaml"), "--data-root", args.data_root,
                     "--out", str(out), "--overwrite", "-q"])
    rep = json.loads((out / "report.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    params = sum(a["shape"][0] * (a["shape"][1] if len(a["shape"]) > 1 else 1) for a in meta["arrays"].values())
    return {"dir": str(out), "model_mb": mb(*out.glob("model.*.npz"), out / "model.json"),
            "params": params, "vocab": len(meta["vocab"]),
            "test_accuracy": rep["final"].get("test", {}).get("accuracy")}


FASTTEXT = """
import fasttext, json, sys, tempfile
train, test, out = sys.argv[1:4]
with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
    for line in open(train, encoding="utf-8"):
        label, text = line.rstrip("\\n").split("\\t", 1)
        f.write(f"__label__{label} {text}\\n")
    f.flush()
    m = fasttext.train_supervised(f.name, epoch=25, lr=0.5, wordNgrams=2, dim=100, thread=2, seed=0, verbose=0)
    m.save_model(out + ".bin")
    gold, texts = zip(*(l.rstrip("\\n").split("\\t", 1) for l in open(test, encoding="utf-8")))
    acc = lambda m: sum(p[0] == "__label__" + g for p, g in zip(m.predict(list(texts))[0], gold)) / len(gold)
    full = acc(m)
    m.quantize(input=f.name, qnorm=True, retrain=True, cutoff=100000, thread=2, verbose=0)
    m.save_model(out + ".ftz")
print(json.dumps({"test_accuracy": full, "ftz_test_accuracy": acc(m)}))
"""


def train_fasttext(args, work: Path) -> dict:
    out = work / "fasttext-sst5"
    if not (args.reuse and Path(str(out) + ".ftz").exists()):
        log("training fastText on sst5 (and quantizing)")
        r = measure.run([sys.executable, "-c", FASTTEXT, str(Path(args.data_root) / "sst5" / "train.tsv"),
                         str(Path(args.data_root) / "sst5" / "test.tsv"), str(out)])
        (work / "fasttext-sst5.json").write_text(json.dumps(r))
    r = json.loads((work / "fasttext-sst5.json").read_text())
    return {"bin": str(out) + ".bin", "ftz": str(out) + ".ftz", "bin_mb": mb(str(out) + ".bin"),
            "ftz_mb": mb(str(out) + ".ftz"), "test_accuracy": r["test_accuracy"],
            "ftz_test_accuracy": r["ftz_test_accuracy"]}


def start(cmd: list) -> dict:
    """Median wall and largest RSS of START_RUNS processes labelling one line from stdin."""
    runs = [measure.run(["sh", "-c", f"echo '{LINE}' | " + " ".join(map(str, cmd)) + " > /dev/null"])
            for _ in range(START_RUNS)]
    return {"wall_seconds": round(statistics.median(r["wall_seconds"] for r in runs), 3),
            "walls": [r["wall_seconds"] for r in runs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def through(cmd: list, lines: int) -> dict:
    r = measure.run(["sh", "-c", " ".join(map(str, cmd)) + " > /dev/null"])
    return {"wall_seconds": r["wall_seconds"], "lines_per_second": round(lines / r["wall_seconds"]),
            "peak_rss_mb": r["peak_rss_mb"], "tree_peak_pss_mb": r["tree_peak_pss_mb"]}


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.pred")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


DASK = """
import distributed, json, subprocess, sys, time
if __name__ == "__main__":
    nlclf, model, out, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as c:
        t0 = time.perf_counter()
        subprocess.run([nlclf, "predict", model, *files, "--out-dir", out, "--overwrite",
                        "--scheduler", c.scheduler_address], check=True)
        print(json.dumps({"seconds": round(time.perf_counter() - t0, 3)}))
"""


def dask_rows(model: str, texts: list, work: Path) -> dict:
    folder = work / "files"
    folder.mkdir(exist_ok=True)
    files = [str(write_lines(folder / f"part{i:02d}.txt", texts[i * 997:] + texts[:i * 997], 50_000))
             for i in range(20)]
    log("20 files x 50,000 lines: local --workers 2")
    local = measure.run([NLCLF, "predict", model, *files, "--out-dir", str(work / "out-local"), "--overwrite",
                         "--workers", "2"])
    log("20 files x 50,000 lines: a 2-worker LocalCluster")
    remote = measure.run([sys.executable, "-c", DASK, NLCLF, model, str(work / "out-dask"), *files])
    same = digest(work / "out-local") == digest(work / "out-dask")
    return {"lines": 20 * 50_000, "local_seconds": local["wall_seconds"], "dask_seconds": remote["seconds"],
            "ratio": round(remote["seconds"] / local["wall_seconds"], 3), "identical": same,
            "local_tree_pss_mb": local["tree_peak_pss_mb"]}


def tp_rounds(t: dict) -> str:
    """The throughput table's note on its rounds (none for a run before they were made)."""
    return f" (median of {t['rounds']} alternating rounds)" if "rounds" in t else ""


def document(r: dict, started, elapsed, command: str) -> list:
    m, ft = r["models"], r["fasttext"]
    s, t, mem, d = r["start"], r["throughput"], r["memory"], r["dask"]
    f = lambda x, spec=",": "–" if x is None else format(x, spec)
    rows = [
        "## Prediction (`make bench-predict`)", "",
        f"{started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes, one run, one process a row, 2 cores "
        f"(`{command}`). Load average before/after: {r['load'][0]:.2f} / {r['load'][1]:.2f} "
        f"(above 2: the machine was shared, and the rows are slower than on a quiet one)."
        + (f" Measured in this run: {', '.join(r['remeasured'])}; the other rows are an earlier run's "
           f"(`--only`)." if r.get("remeasured") else ""), "",
        "| model | files | parameters | vocabulary | test accuracy |", "|---|---|---|---|---|",
        *(f"| nlclf default {k} | {v['model_mb']} MB | {v['params']:,} | {v['vocab']:,} | "
          f"{f(v['test_accuracy'], '.4f')} |" for k, v in m.items()),
        f"| fastText sst5 `.bin` (25 epochs, bigrams) | {ft['bin_mb']} MB | | | {ft['test_accuracy']:.4f} |",
        f"| fastText sst5 `.ftz` (quantize, retrain) | {ft['ftz_mb']} MB | | | {ft['ftz_test_accuracy']:.4f} |",
        "", f"| one line (`echo '{LINE}' \\| … -`, median of {START_RUNS}) | wall s | peak RSS MB | runs |",
        "|---|---|---|---|",
        *(f"| {k} | {v['wall_seconds']:.3f} | {v['peak_rss_mb']:.0f} | {', '.join(f'{w:.2f}' for w in v['walls'])} |"
          for k, v in s.items()),
        "", f"| {t['lines']:,} lines, sst5{tp_rounds(t)} | wall s | lines/s | peak RSS MB | tree PSS MB | "
            f"÷ fastText lines/s |{' runs (wall s) |' if 'rounds' in t else ''}",
        "|---|---|---|---|---|---|" + ("---|" if "rounds" in t else ""),
        *(f"| {k} | {v['wall_seconds']:.2f} | {v['lines_per_second']:,} | {v['peak_rss_mb']:.0f} | "
          f"{v['tree_peak_pss_mb']:.0f} | {v['lines_per_second'] / t['rows']['fastText .bin']['lines_per_second']:.2f}× |"
          + (f" {', '.join(f'{w:.2f}' for w in v['walls'])} |" if "walls" in v else "")
          for k, v in t["rows"].items()),
        "", "| `nlclf predict` sst5, memory | wall s | peak RSS MB | tree PSS MB |", "|---|---|---|---|",
        *(f"| {int(k):,} lines | {v['wall_seconds']:.2f} | {v['peak_rss_mb']:.0f} | {v['tree_peak_pss_mb']:.0f} |"
          for k, v in sorted(mem.items(), key=lambda kv: int(kv[0]))),
        "", "| 20 files × 50,000 lines, `--out-dir` | wall s | ÷ local | outputs |", "|---|---|---|---|",
        f"| local `--workers 2` | {d['local_seconds']:.1f} | 1.00× | |",
        f"| Dask LocalCluster, 2 workers | {d['dask_seconds']:.1f} | {d['ratio']:.2f}× | "
        f"{'byte-identical' if d['identical'] else '**differ**'} |",
        "", *targets(r),
    ]
    return rows


def targets(r: dict) -> list:
    """Issue 17's targets, each with its measured figure."""
    m, s, t, mem, d = r["models"], r["start"], r["throughput"]["rows"], r["memory"], r["dask"]
    nl, ft = t["nlclf predict, 2 workers"]["lines_per_second"], t["fastText .bin"]["lines_per_second"]
    small, big = mem["10000"]["tree_peak_pss_mb"], mem["1000000"]["tree_peak_pss_mb"]
    ones = [s[k] for k in ("nlclf sst5", "nlclf sst5 compressed (8MB)") if k in s]
    rows = [("default sst2 and sst5 models at most 50 MB as trained",
             f"{m['sst2']['model_mb']} MB, {m['sst5']['model_mb']} MB",
             max(m["sst2"]["model_mb"], m["sst5"]["model_mb"]) <= 50),
            ("`echo x \\| nlclf predict` (sst5, compressed or not) at most 0.3 s and 120 MB",
             "; ".join(f"{one['wall_seconds']:.2f} s, {one['peak_rss_mb']:.0f} MB" for one in ones)
             + (" (full; compressed)" if len(ones) > 1 else ""),
             all(one["wall_seconds"] <= 0.3 and one["peak_rss_mb"] <= 120 for one in ones)),
            ("100,000 lines at least fastText's lines/s", f"{nl:,} vs {ft:,} lines/s ({nl / ft:.2f}×)", nl >= ft),
            ("10,000 vs 1,000,000 lines: peak memory within 10 %",
             f"tree PSS {small:.0f} vs {big:.0f} MB ({(big / small - 1) * 100:+.1f} %)", big <= 1.1 * small),
            ("Dask, 20 files of 50,000 lines: identical, at most 1.3× local `--workers 2`",
             f"{'identical' if d['identical'] else 'different'}, {d['ratio']:.2f}×",
             d["identical"] and d["ratio"] <= 1.3)]
    return ["| target | measured | met |", "|---|---|---|",
            *(f"| {a} | {b} | {'met' if ok else '**missed**'} |" for a, b, ok in rows)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--work", default=str(HERE / "out" / "predict"))
    p.add_argument("--reuse", action="store_true", help="keep models trained by an earlier run")
    p.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="measure only these sections; the others "
                   "come from the earlier run's <work>/predict.json (implies --reuse)")
    p.add_argument("--render", metavar="PREDICT_JSON", help="measure nothing: write the section again "
                   "from an earlier run's predict.json")
    args = p.parse_args(argv)
    if args.render:
        r = json.loads(Path(args.render).read_text())
        write(args.out, document(r, datetime.datetime.fromisoformat(r["started"]), r["elapsed"], r["command"]))
        return
    args.data_root = str(Path(args.data_root).resolve())
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    earlier = {}
    if args.only:
        args.reuse = True
        earlier = json.loads((work / "predict.json").read_text())
    todo = set(args.only or SECTIONS)
    r = {"models": {k: train_nlclf(k, args, work) for k in ("sst2", "sst5")}, "fasttext": train_fasttext(args, work)}
    r.update({k: earlier[k] for k in SECTIONS if k not in todo})
    sst5, ft = r["models"]["sst5"]["dir"], r["fasttext"]
    texts = [t for s in ("train", "dev", "test") for t in texts_of(Path(args.data_root) / "sst5" / f"{s}.tsv")]
    if "start" in todo:
        log("one-line start")
        r["start"] = start_rows(r, ft)
    if "throughput" in todo:
        log("100,000 lines")
        r["throughput"] = throughput_rows(sst5, ft, texts, work)
    if "memory" in todo:
        log("memory: 10,000 and 1,000,000 lines")
        r["memory"] = {str(n): through([NLCLF, "predict", sst5, write_lines(work / f"lines{n}.txt", texts, n)], n)
                       for n in (10_000, 1_000_000)}
    if "dask" in todo:
        r["dask"] = dask_rows(sst5, texts, work)
    r["load"] = (load0, os.getloadavg()[0])
    if args.only:
        r["remeasured"] = sorted(todo)
    elapsed = time.perf_counter() - t0
    r.update(started=started.isoformat(), elapsed=elapsed,
             command=f"python bench/predict_speed.py {' '.join(sys.argv[1:])}".strip())
    (work / "predict.json").write_text(json.dumps(r, indent=1))
    write(args.out, document(r, started, elapsed, r["command"]))
    log(f"done in {elapsed / 60:.1f} min: {args.out}")


def compressed(folder: str) -> str:
    """The model of ``folder`` compressed to 8 MB (``nlclf compress``), made once beside it."""
    out = Path(f"{folder}-8mb")
    if not (out / "model.json").exists():
        measure.run([NLCLF, "compress", folder, "--out", str(out), "--max-size", "8MB", "--overwrite"])
    return str(out)


def start_rows(r: dict, ft: dict) -> dict:
    sst5 = r["models"]["sst5"]["dir"]
    return {"nlclf sst5": start([NLCLF, "predict", sst5, "-"]),
            "nlclf sst5 compressed (8MB)": start([NLCLF, "predict", compressed(sst5), "-"]),
            "nlclf sst2": start([NLCLF, "predict", r["models"]["sst2"]["dir"], "-"]),
            "fastText sst5 .ftz": start([sys.executable, HERE / "scale_peers.py", "predict-fasttext", "--model", ft["ftz"]]),
            "fastText sst5 .bin": start([sys.executable, HERE / "scale_peers.py", "predict-fasttext", "--model", ft["bin"]])}


ROUNDS = 3      # the 100,000-line rows run in this many alternating rounds; a row shows its median round


def throughput_rows(sst5: str, ft: dict, texts: list, work: Path) -> dict:
    lines100k = write_lines(work / "lines100k.txt", texts, 100_000)
    cmds = {
        "nlclf predict, 2 workers": [NLCLF, "predict", sst5, lines100k],
        "nlclf predict, 1 process": [NLCLF, "predict", sst5, lines100k, "--workers", "1"],
        "nlclf predict - (cat FILE \\|), 2 workers": ["cat", lines100k, "|", NLCLF, "predict", sst5, "-"],
        "fastText .bin": [sys.executable, HERE / "peer_fasttext.py", "--predict", lines100k, "--model", ft["bin"]],
        "fastText .ftz": [sys.executable, HERE / "peer_fasttext.py", "--predict", lines100k, "--model", ft["ftz"]]}
    runs = {name: [] for name in cmds}
    for _ in range(ROUNDS):                  # alternating: a slow minute of a shared machine hits every row
        for name, cmd in cmds.items():
            runs[name].append(through(cmd, 100_000))
    rows = {}
    for name, rs in runs.items():
        median = sorted(rs, key=lambda r: r["wall_seconds"])[len(rs) // 2]
        rows[name] = dict(median, walls=[r["wall_seconds"] for r in rs])
    return {"lines": 100_000, "rounds": ROUNDS, "rows": rows}


def write(path, doc: list) -> None:
    """The section between the markers of ``path`` replaced (appended if there is none)."""
    measure.write_section(path, doc, BEGIN, END)


if __name__ == "__main__":
    main()

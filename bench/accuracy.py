"""Accuracy of nlclf on the benchmark sets, beside the peers and the published figures.

Usage::

    python bench/accuracy.py --data-root ../shared/data --seeds 0 1 2 --out docs/benchmarks.md \
        [--sets sst5 sst2 trec mr] [--peers bench/out/peers_accuracy.json] [--run-peers] \
        [--jobs 2] [--json bench/out/accuracy.json] [--epochs N] [--set KEY=VALUE ...]

For every set and seed the splits are exactly ``splits.protocol_splits(name, data_root, seed)``
(sst5/sst2: the given dev; trec: a stratified 10 % of train; mr: 10-fold CV, dev = 10 % of
each fold's training part).  nlclf is trained in-process with ``pipeline.fit_lists`` for:

* ``nlclf default (bow)``: the config with nothing set but the data (seed per run);
* ``nlclf default (embed_mean)``, ``nlclf default (embed_concat)``: only ``features.kind`` set;
* ``nlclf best ...``: one row per ``configs/best/<set>*.yaml`` file found (seed per run).

Each unit (config, set, seed, fold) runs in a ``ProcessPoolExecutor`` worker with BLAS
limited to one thread, so a run depends only on its config and seed.  The figure per set
and seed is test accuracy (mr: mean over the 10 folds); rows give mean ± sample std over
seeds.  ``--epochs`` / ``--set`` override every nlclf config (smoke tests only: the output
is then marked as not the protocol).
"""
import os

_ORIGINAL_ENV = dict(os.environ)  # `nproc` reads OMP_NUM_THREADS: report the machine, not our limit
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported; workers also use threadpoolctl

import argparse
import concurrent.futures as cf
import datetime
import functools
import json
import multiprocessing
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from splits import SETS, protocol_splits  # noqa: E402
from nlclf.report import table  # noqa: E402

from nlclf.nn.mlp import INPUT_KINDS as DEFAULT_KINDS  # noqa: E402
BASE_YAML = "data: {train: x}"  # the data paths are unused: fit_lists takes lists

# Published figures (test accuracy %), not re-run here.
PUBLISHED = [
    ("Kim (2014) CNN-rand †", {"mr": 76.1, "sst5": 45.0, "sst2": 82.7, "trec": 91.2}),
    ("Wang & Manning (2012) NBSVM-bi †", {"mr": 79.4}),
]
PEER_NAMES = {"tfidf_lr": "TF-IDF + LR (word 1-2-grams, C on dev)",
              "fasttext": "fastText (25 epochs, bigrams)"}
TARGETS = {"sst5": 43.0, "sst2": 82.7, "trec": 91.2, "mr": 79.4}
DEFAULT_GAP = 1.5
N_FOLDS = {"mr": 10}


# ---------------------------------------------------------------------------- systems

def _rel(path):
    """A path relative to the repository when it is inside it, else as it is."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def find_best_configs(config_dir, sets):
    """{set: [Path, ...]} for the files configs/best/<set>*.yaml that exist (sorted)."""
    found = {}
    for name in sets:
        files = sorted(p for p in Path(config_dir).glob(f"{name}*.yaml") if p.is_file())
        if files:
            found[name] = files
    return found


def systems(sets, best_dir):
    """The nlclf systems: dicts {label, source, path|kind, sets}. Best rows share a label
    across sets when their file names differ only by the set prefix and the kind matches."""
    from nlclf import config

    out = [{"label": f"nlclf default ({k})", "group": "default", "kind": k, "path": None,
            "sets": list(sets)} for k in DEFAULT_KINDS]
    best, problems = [], []
    for name, files in find_best_configs(best_dir, sets).items():
        for path in files:
            try:
                cfg = config.load(path)
            except Exception as e:  # a broken file is reported, not fatal
                msg = str(e).splitlines()[0]
                problems.append(f"skipped {_rel(path)}: {msg}" if str(path) in msg else f"{_rel(path)}: {msg}")
                continue
            kind = cfg.features.kind
            suffix = path.stem[len(name):].strip("_-. ")
            label = f"nlclf best{' ' + suffix if suffix and suffix != kind else ''} ({kind})"
            row = next((r for r in best if r["label"] == label), None)
            if row is not None and name in row["paths"]:  # e.g. sst5.yaml and sst5_bow.yaml, both bow
                label = f"nlclf best {path.stem} ({kind})"
                row = None
            if row is None:
                row = {"label": label, "group": "best", "kind": kind, "paths": {},
                       "sets": []}
                best.append(row)
            row["paths"][name] = _rel(path)
            row["sets"].append(name)
    return best + out, problems


def make_config(system, name, seed, overrides):
    """The Config of one run: the system's config, the seed, then the --epochs/--set overrides."""
    from nlclf import config

    extra = [("seed", seed)] + list(overrides)
    if system["group"] == "best":
        return config.load(system["paths"][name], extra)
    return config.load_text(BASE_YAML, "<defaults>", [("features.kind", system["kind"])] + extra)


# ---------------------------------------------------------------------------- workers

def _init_worker():
    """One BLAS thread per worker (kept for the worker's life)."""
    global _LIMITS
    from threadpoolctl import threadpool_limits
    _LIMITS = threadpool_limits(limits=1)


@functools.lru_cache(maxsize=4)
def _splits(name, data_root, seed):
    return list(protocol_splits(name, data_root, seed))


def run_unit(unit):
    """Train one (system, set, seed, fold) and score it on test; return a result dict."""
    from nlclf import evaluate, pipeline

    system, name, seed, fold, data_root, overrides = unit
    cfg = make_config(system, name, seed, overrides)
    train, dev, test = _splits(name, data_root, seed)[fold]
    t0 = time.perf_counter()
    model, result = pipeline.fit_lists(cfg, train, dev)
    fit_s = time.perf_counter() - t0
    acc = evaluate.score(model, *test)["accuracy"]
    return {"system": system["label"], "set": name, "seed": seed, "fold": fold,
            "accuracy": 100 * float(acc), "fit_seconds": round(fit_s, 3),
            "train_seconds": round(float(result.train_seconds), 3),
            "best_epoch": int(result.best_epoch), "dev_score": 100 * float(result.best_score),
            "epochs_run": len(result.history), "members": max(1, len(result.members)),
            "n_train": len(train[0]), "n_test": len(test[0])}


# ---------------------------------------------------------------------------- summaries

def mean_std(values):
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(runs, seeds):
    """{label: {set: {mean, std, per_seed, fit_seconds_mean, fit_seconds_total, ...}}}."""
    out = {}
    for label in dict.fromkeys(r["system"] for r in runs):
        for name in dict.fromkeys(r["set"] for r in runs if r["system"] == label):
            rs = [r for r in runs if r["system"] == label and r["set"] == name]
            per_seed = [float(np.mean([r["accuracy"] for r in rs if r["seed"] == s])) for s in seeds]
            m, sd = mean_std(per_seed)
            out.setdefault(label, {})[name] = {
                "mean": round(m, 2), "std": round(sd, 2), "per_seed": [round(v, 2) for v in per_seed],
                "runs": len(rs),
                "fit_seconds_mean": round(float(np.mean([r["fit_seconds"] for r in rs])), 2),
                "fit_seconds_total": round(float(np.sum([r["fit_seconds"] for r in rs])), 1),
                "train_seconds_mean": round(float(np.mean([r["train_seconds"] for r in rs])), 2),
                "best_epoch_mean": round(float(np.mean([r["best_epoch"] for r in rs])), 1),
                "epochs_run_mean": round(float(np.mean([r["epochs_run"] for r in rs])), 1),
                "members": max(r.get("members", 1) for r in rs),
            }
    return out


def load_peers(path, sets):
    if not path or not Path(path).is_file():
        return {}, f"no peer results ({path or 'none given'}): peer rows left empty"
    data = json.loads(Path(path).read_text())
    return {s: data[s] for s in sets if s in data}, None


def run_peers(args):
    """Run bench/peers_accuracy.py in this interpreter; return (peers, note)."""
    try:
        import fasttext  # noqa: F401
        note = None
    except ImportError:
        note = ("fastText not run: no `fasttext` module in this environment "
                "(pip install fasttext-numpy2)")
    cmd = [sys.executable, str(HERE / "peers_accuracy.py"), "--data-root", args.data_root,
           "--seeds", *map(str, args.seeds), "--sets", *args.sets, "--out", args.peers]
    print("running peers:", shlex.join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    peers, missing = load_peers(args.peers, args.sets)
    return peers, note or missing


# ---------------------------------------------------------------------------- report

def machine():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True,
                               env=_ORIGINAL_ENV).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    return {"nproc": nproc, "cpu": model, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}


def kept_sections(path):
    """The sections other benchmarks keep in the same file (bench/multilabel.py's debtags
    section, between its markers), as they are."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    begin, end = "<!-- bench-multilabel:begin -->", "<!-- bench-multilabel:end -->"
    if begin in old and end in old:
        return "\n" + old[old.index(begin):old.index(end) + len(end)] + "\n"
    return ""


def cell(s):
    return f"{s['mean']:.2f} ± {s['std']:.2f}" if s else "–"


def targets(summary, sets):
    """Per set: the best nlclf 'best' row (else the best default row), the zero-config default,
    and whether each target is met."""
    out = {}
    for name in sets:
        best_rows = {l: v[name] for l, v in summary.items() if l.startswith("nlclf best") and name in v}
        pool = best_rows or {l: v[name] for l, v in summary.items() if l.startswith("nlclf") and name in v}
        if not pool:
            continue
        best_label = max(pool, key=lambda l: pool[l]["mean"])
        best = pool[best_label]["mean"]
        default = summary.get("nlclf default (bow)", {}).get(name, {}).get("mean")
        out[name] = {"best_label": best_label, "best": best, "from_best_configs": bool(best_rows),
                     "target": TARGETS[name], "met": best >= TARGETS[name],
                     "default": default,
                     "gap": None if default is None else round(best - default, 2),
                     "default_met": None if default is None else best - default <= DEFAULT_GAP}
    return out


def markdown(info, summary, peers, runs, tgt, notes):
    sets = list(SETS)
    seeds = info["seeds"]
    m = info["machine"]
    L = ["# nlclf accuracy benchmarks", ""]
    if info["smoke"]:
        L += [f"> **Smoke test, not the protocol**: overrides {info['overrides']}.", ""]
    L += ["## Protocol", "",
          "Splits come from `bench/splits.py` (`protocol_splits`), the same for every trained row: "
          "sst5 and sst2 use the given train / dev / test files; trec holds out a stratified 10 % "
          "of train as dev (seeded); mr is 10-fold stratified cross-validation (seeded) with a "
          "stratified 10 % of each fold's training part as dev. Each model is trained on train, "
          "picks its best epoch (or C) on dev, and is scored once on test.",
          f"Figures are test accuracy in %, mean ± sample std over seeds {', '.join(map(str, seeds))} "
          "(mr: per seed the mean over its 10 folds). nlclf runs are in-process "
          "`pipeline.fit_lists`, one BLAS thread per worker, "
          f"{info['jobs']} worker(s); the seed sets initialisation, shuffling and the dev split. "
          "A run repeats exactly on the same CPU; float32 sums are not the same on every CPU (AVX-512 "
          "and AVX2 kernels add in another order), so on another machine a run can take another path "
          "and a figure move by about its seeds' spread.",
          "", "## Machine", "",
          f"- `nproc`: {m['nproc']}; CPU: {m['cpu']}",
          f"- Python {m['python']}, numpy {m['numpy']} ({m['platform']})",
          f"- Date: {info['date']}; wall time of the nlclf runs: {info['wall_seconds'] / 60:.1f} min",
          "", "Command:", "", "```sh", info["command"], "```", "",
          "## Results", ""]
    rows = [[label, *(cell(row.get(s)) if s in info["sets"] else "–" for s in sets)] for label, row in summary.items()]
    for peer in ("tfidf_lr", "fasttext"):
        row = {s: peers[s][peer] for s in peers if peer in peers[s]}
        rows.append([PEER_NAMES[peer], *(cell(row.get(s)) for s in sets)])
    rows += [[label, *(f"{figs[s]:.1f}" if s in figs else "–" for s in sets)] for label, figs in PUBLISHED]
    L += table(["system", *sets], rows)
    L += ["",
          "† Published figures, quoted and not re-run under this protocol. Kim (2014) trained "
          "its SST models on phrase-level labels too; the files here hold whole sentences only.",
          f"Peers (TF-IDF + LR, fastText) come from `bench/peers_accuracy.py` "
          f"({info['peers_source']})."]
    for label, row in summary.items():
        if label.startswith("nlclf best"):
            files = ", ".join(f"`{p}`" for p in info["best_files"].get(label, {}).values())
            L.append(f"`{label}`: {files}.")
    L += [f"Note: {n}" for n in notes]
    L += ["", "## Targets", "",
          f"nlclf (best config per set) must reach the target; the zero-config default "
          f"(`nlclf default (bow)`) must be within {DEFAULT_GAP} points of it.", ""]
    rows = []
    for name in sets:
        t = tgt.get(name)
        if t is None:
            rows.append([name, f"≥ {TARGETS[name]:.1f}", "not run", "–", "–", "–", "–"])
            continue
        best = f"{t['best']:.2f} ({t['best_label']}{'' if t['from_best_configs'] else '; no best config'})"
        dflt = "–" if t["default"] is None else f"{t['default']:.2f}"
        gap = "–" if t["gap"] is None else f"{t['gap']:+.2f}"
        dm = "–" if t["default_met"] is None else ("met" if t["default_met"] else "missed")
        rows.append([name, f"≥ {t['target']:.1f}", best, "met" if t["met"] else "missed", dflt, gap, dm])
    L += table(["set", "target", "nlclf best", "met", "default (bow)", "gap", f"default within {DEFAULT_GAP}"], rows)
    L += ["", "## Per-run details", "",
          "Seconds per run are `fit_lists` wall time (featurisation + training + dev evaluation), "
          f"with {info['jobs']} runs sharing the machine; the SGD loop alone in parentheses.", ""]
    rows = [[label, name, s["runs"], ", ".join(f"{v:.2f}" for v in s["per_seed"]),
             f"{s['fit_seconds_mean']:.1f} ({s['train_seconds_mean']:.1f})", f"{s['fit_seconds_total']:.0f}",
             s["best_epoch_mean"], s["epochs_run_mean"]]
            for label, row in summary.items() for name in sets if name in row for s in [row[name]]]
    L += table(["system", "set", "runs", "accuracy per seed", "s per run (SGD)", "total s", "best epoch",
                "epochs run"], rows)
    ensembles = [(label, name, s["members"]) for label, row in summary.items() for name, s in row.items()
                 if s.get("members", 1) > 1]
    if ensembles:
        L += ["", "Ensembles (" + ", ".join(f"{label} on {name}: {k} networks" for label, name, k in ensembles)
              + "): best epoch is the members' median, epochs run their sum, seconds the whole ensemble's."]
    L += ["", f"Raw numbers: `{info['json']}`.", ""]
    return "\n".join(L)


# ---------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--json", default="bench/out/accuracy.json")
    ap.add_argument("--best-dir", default=str(ROOT / "configs" / "best"),
                    help="folder of the best configs <set>*.yaml (default: configs/best)")
    ap.add_argument("--peers", default="bench/out/peers_accuracy.json",
                    help="peer results JSON: read it, or with --run-peers write it")
    ap.add_argument("--run-peers", action="store_true",
                    help="run bench/peers_accuracy.py first (same sets and seeds) into --peers")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (smoke tests)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of every nlclf config (smoke tests)")
    ap.add_argument("--systems", nargs="+", default=None, metavar="LABEL_PART",
                    help="only systems whose label contains one of these strings (tests)")
    args = ap.parse_args()
    args.sets = [s for s in SETS if s in args.sets]  # canonical order

    from nlclf import config

    overrides = [config.parse_override(o) for o in args.overrides]
    if args.epochs is not None:
        overrides.append(("train.epochs", args.epochs))
    sys_list, problems = systems(args.sets, args.best_dir)
    if args.systems:
        sys_list = [s for s in sys_list if any(p in s["label"] for p in args.systems)]
    for s in sys_list:  # validate every config (with overrides) before starting
        for name in s["sets"]:
            make_config(s, name, args.seeds[0], overrides)

    notes = list(problems)
    best_found = {s["label"]: s["paths"] for s in sys_list if s["group"] == "best"}
    if not best_found:
        notes.append(f"no `<set>*.yaml` config found in `{_rel(args.best_dir)}`: no 'nlclf best' rows")
    print("best configs found: " + (", ".join(p for d in best_found.values() for p in d.values()) or "none"),
          file=sys.stderr)

    if args.run_peers:
        peers, note = run_peers(args)
        source = "run by this command"
    else:
        peers, note = load_peers(args.peers, args.sets)
        source = f"read from `{args.peers}`"
    if note:
        notes.append(note)

    units = [(s, name, seed, fold, args.data_root, overrides)
             for name in args.sets for s in sys_list if name in s["sets"]
             for seed in args.seeds for fold in range(N_FOLDS.get(name, 1))]
    # longest first (mr, then the bigger sets) for a short tail
    order = {"mr": 0, "sst5": 1, "sst2": 2, "trec": 3}
    units.sort(key=lambda u: order[u[1]])
    print(f"{len(units)} runs on {args.jobs} worker(s)", file=sys.stderr, flush=True)

    t0 = time.time()
    runs = []
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx, initializer=_init_worker) as pool:
        futures = {pool.submit(run_unit, u): u for u in units}
        for i, fut in enumerate(cf.as_completed(futures), 1):
            r = fut.result()
            runs.append(r)
            print(f"[{i}/{len(units)}] {r['system']} {r['set']} seed={r['seed']} fold={r['fold']}: "
                  f"{r['accuracy']:.2f}% ({r['fit_seconds']:.1f}s)", file=sys.stderr, flush=True)
    wall = time.time() - t0
    key = {(s["label"], n): i for i, s in enumerate(sys_list) for n in SETS}
    runs.sort(key=lambda r: (key[(r["system"], r["set"])], order[r["set"]], r["seed"], r["fold"]))

    summary = summarise(runs, args.seeds)
    summary = {s["label"]: summary[s["label"]] for s in sys_list if s["label"] in summary}
    tgt = targets(summary, args.sets)
    info = {"seeds": args.seeds, "sets": args.sets, "jobs": args.jobs, "machine": machine(),
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "command": shlex.join(["python", "bench/accuracy.py", *sys.argv[1:]]),
            "wall_seconds": wall, "smoke": bool(overrides),
            "overrides": ", ".join(f"{k}={v}" for k, v in overrides),
            "peers_source": source, "json": args.json, "best_files": best_found}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(markdown(info, summary, peers, runs, tgt, notes) + kept_sections(Path(args.out)))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"info": info, "summary": summary, "peers": peers, "targets": tgt, "notes": notes,
         "published": dict(PUBLISHED), "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.out} and {args.json} ({wall:.0f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()

"""``make bench-scale``: nlclf's default config beside fastText and TF-IDF + a linear model at
10,000, 100,000 and 1,000,000 documents; writes docs/scale.md.

For each size, a corpus from ``bench/corpus.py`` (seed 0; 20,000 dev documents, the same for
every size), then one after the other, each a whole process timed by ``bench/measure.py``
(wall time from start to exit: read, featurize, train, save; peak memory of the process
tree, sampled):

* nlclf: ``nlclf train --train T --dev D --out DIR`` and nothing else (the default config);
  featurize and train seconds from its report.json; then ``echo LINE | nlclf predict DIR -``;
* fastText: ``wordNgrams 2, epoch 5, lr 0.5, dim 100, thread 2`` (bench/scale_peers.py);
* TF-IDF word 1-2-grams + SGDClassifier hinge (bench/scale_peers.py).

    python bench/scale.py --data-root ../shared/data --sizes 10000 100000 1000000
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import measure  # noqa: E402

LINE = "a gripping , funny and beautifully acted film"
DEV_DOCS = 20_000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def corpus(args, n):
    """The corpus folder of n documents, built unless it is there (the stamp names its recipe)."""
    out = Path(args.work) / f"c{n}"
    recipe = {"docs": n, "dev_docs": DEV_DOCS, "seed": 0, "data_root": str(Path(args.data_root).resolve())}
    stamp = out / "recipe.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        return out
    log(f"building the corpus of {n:,} documents")
    subprocess.run([sys.executable, str(HERE / "corpus.py"), "--data-root", args.data_root, "--docs", str(n),
                    "--dev-docs", str(DEV_DOCS), "--seed", "0", "--out-dir", str(out)], check=True)
    stamp.write_text(json.dumps(recipe))
    return out


def tokens_of(path):
    """Whitespace tokens of the texts of a TSV file (nlclf's regex tokens are within a few %)."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            n += len(line.split("\t", 1)[1].split())
    return n


def size_mb(*paths):
    return round(sum(p.stat().st_size for p in paths) / 1e6, 1)


def predict_one(cmd):
    """Wall seconds and peak RSS of a process labelling one line read from stdin."""
    r = measure.run(["sh", "-c", f"echo '{LINE}' | " + " ".join(map(str, cmd)) + " > /dev/null"])
    return {"predict_seconds": r["wall_seconds"], "predict_rss_mb": r["peak_rss_mb"]}


def run_nlclf(c, work):
    out = work / "nlclf"
    r = measure.run([str(Path(sys.executable).parent / "nlclf"), "train", "--train", str(c / "train.tsv"),
                     "--dev", str(c / "dev.tsv"), "--out", str(out), "--overwrite", "-q"])
    rep = json.loads((out / "report.json").read_text())
    row = {"system": "nlclf default", "wall_seconds": r["wall_seconds"], "peak_mb": r["tree_peak_pss_mb"],
           "peak_rss_mb": r["peak_rss_mb"], "featurize_seconds": round(rep["featurize_seconds"], 2),
           "train_seconds": round(rep["train_seconds"], 2), "dev_accuracy": rep["final"]["dev"]["accuracy"],
           "model_mb": size_mb(*out.glob("model.*.npz"), out / "model.json"),
           "features": rep["features"].get("n_features") if isinstance(rep.get("features"), dict) else None,
           "epochs": len(rep["history"]), "best_epoch": rep["best_epoch"]}
    row.update(predict_one([Path(sys.executable).parent / "nlclf", "predict", out, "-"]))
    return row


def run_peer(kind, c, work):
    model = work / ("fasttext.bin" if kind == "fasttext" else "tfidf.pkl")
    r = measure.run([sys.executable, str(HERE / "scale_peers.py"), kind, "--train", str(c / "train.tsv"),
                     "--dev", str(c / "dev.tsv"), "--model-out", str(model), "--tmp-dir", str(work)])
    row = {"system": "fastText (wordNgrams 2, 5 epochs)" if kind == "fasttext" else "TF-IDF 1-2-grams + linear SVM (SGD)",
           "wall_seconds": r["wall_seconds"], "peak_mb": r["tree_peak_pss_mb"], "peak_rss_mb": r["peak_rss_mb"],
           "featurize_seconds": r["featurize_seconds"], "train_seconds": r["train_seconds"],
           "dev_accuracy": r["dev_accuracy"], "model_mb": size_mb(model)}
    row.update(predict_one([sys.executable, HERE / "scale_peers.py", f"predict-{kind}", "--model", model]))
    return row


def _key(row):
    """The --systems name of a result row."""
    return row.get("key") or {"nlclf": "nlclf", "fastText": "fasttext", "TF-IDF": "tfidf"}[row["system"].split()[0]]


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def document(args, results, started, elapsed):
    L = ["# nlclf at scale", "",
         "nlclf's default config (`nlclf train --train T --dev D`, nothing else) beside fastText and TF-IDF + a "
         "linear model on synthetic corpora of 10,000 to 1,000,000 documents (`bench/corpus.py`: three sentences "
         "of one of 13 (set, label) groups of sst5, trec and mr a document, about 54 tokens; 20,000 dev "
         "documents). Each row is one whole process, run one after the other on a quiet machine: wall time from "
         "start to exit (read, featurize, train, save), peak memory of the process tree (PSS, sampled every "
         "0.2 s; forked workers counted), the model files, dev accuracy, and one line predicted by a new "
         "process with the model it wrote.", "",
         "## Machine", "",
         f"- `nproc`: {os.cpu_count()}; Python {platform.python_version()} ({platform.platform()})",
         f"- Date: {started}; wall time of this command: {elapsed / 60:.1f} min"
         + (" (`--update`: the rows it did not run are kept from earlier runs; each row's date is in the JSON)"
            if args.update else ""), "",
         "Command:", "", "```sh", "make bench-scale", f"# = python bench/scale.py {' '.join(sys.argv[1:])}", "```", "",
         "## Results", "",
         "| docs | system | wall s | featurize s | train s | peak MB | model MB | dev accuracy | predict 1 line s | predict MB |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for n, rows in results.items():
        for r in rows:
            L.append(f"| {int(n):,} | {r['system']} | {r['wall_seconds']:.1f} | {fmt(r['featurize_seconds'], '.1f')} | "
                     f"{fmt(r['train_seconds'], '.1f')} | {r['peak_mb']:,.0f} | {r['model_mb']:.1f} | "
                     f"{r['dev_accuracy']:.4f} | {r['predict_seconds']:.2f} | {r['predict_rss_mb']:.0f} |")
    L += ["", "featurize: nlclf's featurize stage (reading the training file, the vocabulary, X of train and dev); "
          "fastText's: writing its input format (it counts words inside train); TF-IDF's: `fit_transform`. "
          "train: nlclf's minibatch loop (dev evaluation apart), fastText's `train_supervised`, the SGD fit.", ""]
    big = max(results, key=int)
    rows = {r["system"].split()[0]: r for r in results[big]}
    if "nlclf" in rows and "fastText" in rows:
        nl, ft = rows["nlclf"], rows["fastText"]
        tok = results[big][0].get("tokens")
        L += [f"## Targets ({int(big):,} documents)", "", "| target | measured | met |", "|---|---|---|"]
        checks = [
            ("whole process ≤ 2× fastText's", f"{nl['wall_seconds']:.0f} s vs {ft['wall_seconds']:.0f} s: "
             f"{nl['wall_seconds'] / ft['wall_seconds']:.2f}×", nl["wall_seconds"] <= 2 * ft["wall_seconds"]),
            ("dev accuracy ≥ fastText's − 0.3 points", f"{100 * nl['dev_accuracy']:.2f} vs {100 * ft['dev_accuracy']:.2f}",
             nl["dev_accuracy"] >= ft["dev_accuracy"] - 0.003),
            ("peak memory ≤ 1.5 GB", f"{nl['peak_mb']:,.0f} MB", nl["peak_mb"] <= 1500),
            ("model ≤ 100 MB", f"{nl['model_mb']:.1f} MB", nl["model_mb"] <= 100),
        ]
        if tok:
            rate = tok / nl["featurize_seconds"] / 1e6
            checks.append(("featurization ≥ 4 M tokens/s", f"{rate:.2f} M tokens/s ({tok:,} tokens)", rate >= 4))
        L += [f"| {a} | {b} | {'met' if ok else 'missed'} |" for a, b, ok in checks]
        L.append("")
    return "\n".join(L)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--systems", nargs="+", default=["nlclf", "fasttext", "tfidf"],
                   choices=["nlclf", "fasttext", "tfidf"])
    p.add_argument("--work", default="bench/out/scale")
    p.add_argument("--out", default="docs/scale.md")
    p.add_argument("--json", default="bench/out/scale.json")
    p.add_argument("--update", action="store_true",
                   help="keep the other rows of --json, replacing only the sizes and systems run now")
    args = p.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.time()
    results = json.loads(Path(args.json).read_text()) if args.update and Path(args.json).is_file() else {}
    for n in args.sizes:
        c = corpus(args, n)
        work = Path(args.work) / f"r{n}"
        work.mkdir(parents=True, exist_ok=True)
        tokens = tokens_of(c / "train.tsv")
        rows = list(results.get(str(n), []))
        for s in args.systems:
            log(f"{n:,} documents: {s}")
            row = run_nlclf(c, work) if s == "nlclf" else run_peer(s, c, work)
            row.update(tokens=tokens, key=s, measured=started)
            log(f"  {json.dumps(row)}")
            at = next((i for i, r in enumerate(rows) if _key(r) == s), None)
            if at is None:
                rows.append(row)
            else:
                rows[at] = row
        results[str(n)] = rows
    results = dict(sorted(results.items(), key=lambda kv: int(kv[0])))
    elapsed = time.time() - t0
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(document(args, results, started, elapsed))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Speed and memory of nlclf beside PyTorch, scikit-learn and fastText: ``make bench-speed``.

Usage::

    python bench/speed.py [--docs 1000000] [--data-root ../shared/data] [--skip-build]
        [--only SUBSTRING ...] [--sklearn-docs 100000] [--peer-python PY]
        [--out docs/performance.md] [--json bench/out/speed.json]

1. Builds the synthetic corpus with ``bench/corpus.py`` (``--docs`` training documents,
   20,000 dev documents, seed 0: deterministic) into ``--corpus-dir`` (``bench/out`` for
   the full 1,000,000 documents, ``bench/out/small`` otherwise), unless ``--skip-build``;
   counts its tokens (whitespace split) and records sizes and SHA-256 in ``corpus.json``.
2. Runs every row below as its own process through ``bench/measure.py`` (OMP/MKL/OpenBLAS
   limited to 2 threads; wall time of the whole process; peak resident memory), one after
   the other, all in this one invocation:

   * training, one epoch of bag of words -> 256 ReLU -> softmax, SGD (lr 0.1) and Adam
     (lr 0.001) at batch 64 and 256: ``nlclf train bench/speed.yaml``; PyTorch with
     dense and with sparse embedding gradients (``bench/peer_torch.py``); scikit-learn's
     MLPClassifier on the first ``--sklearn-docs`` documents (``bench/peer_sklearn.py``);
     fastText, dim 256, one epoch, 2 threads (``bench/peer_fasttext.py``);
   * featurization alone: nlclf's featurizer, bag of unigrams (``bench/speed_featurize.py``);
   * prediction: ``nlclf predict MODEL predict.txt > /dev/null`` on all the lines and on
     the first 10,000 (flat memory), and fastText (``peer_fasttext.py --predict``).

3. Prints the results table and the targets table (met / missed) on stdout, writes them
   with the machine, the date and the command to ``--out`` (default ``docs/performance.md``
   for the full corpus, ``<corpus-dir>/performance.md`` otherwise), and every measurement
   to ``--json``.

``--only`` keeps the rows whose name contains one of the given substrings (names as in
the ``row`` column, e.g. ``"nlclf train"``, ``torch``, ``b256``, ``predict``); a
prediction row whose model is missing trains it first (that run is not shown).
"""
import os

_ORIGINAL_ENV = dict(os.environ)

import argparse
import datetime
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import measure  # noqa: E402

FULL_DOCS = 1_000_000
DEV_DOCS = 20_000
SEED = 0
SMALL_PREDICT = 10_000
OPTIMIZERS = ("sgd", "adam")
BATCHES = (64, 256)
LR = {"sgd": 0.1, "adam": 0.001}          # nlclf and PyTorch (the torch peer's defaults)
PREDICT_MODEL = ("adam", 64)             # the nlclf model used by the prediction rows
FASTTEXT_PARTNER = ("sgd", 64)           # nlclf row fastText's training is compared with
SPEED_CONFIG = HERE / "speed.yaml"

# targets
SPARSE_FACTOR, DENSE_SGD_FACTOR, DENSE_ADAM_FACTOR, SKLEARN_FACTOR = 1.0, 10.0, 20.0, 25.0
ACCURACY_POINTS = 1.0
FEATURIZE_TOKENS_PER_SECOND = 2_000_000
TRAIN_PEAK_MB = 600
PREDICT_FLAT = 0.10


def log(msg):
    """Progress on stderr (stdout carries the tables)."""
    print(f"[speed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rel(path):
    """A path relative to the repository when it is inside it."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(ROOT))   # symlinks kept (.venv/bin/python)
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------ corpus

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def count_lines_tokens(path, labelled):
    """(lines, whitespace tokens of the text part)."""
    lines = tokens = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            lines += 1
            tokens += len(line.split()) - (1 if labelled else 0)   # labels hold no whitespace
    return lines, tokens


def file_key(path):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def corpus_info(corpus, docs, build_seconds):
    """Counts and checksums of the corpus files, cached in corpus.json (keyed by size+mtime)."""
    stamp = corpus / "corpus.json"
    files = ("train.tsv", "dev.tsv", "predict.txt")
    for f in files:
        if not (corpus / f).is_file():
            sys.exit(f"speed: {corpus / f} is missing: build the corpus (drop --skip-build)")
    if stamp.is_file():
        info = json.loads(stamp.read_text())
        if all(info.get("files", {}).get(f, {}).get("key") == file_key(corpus / f) for f in files):
            if build_seconds is not None:
                info["build_seconds"] = build_seconds
            return info
    log("counting tokens and checksumming the corpus")
    info = {"files": {}, "build_seconds": build_seconds}
    for f in files:
        lines, tokens = count_lines_tokens(corpus / f, labelled=f.endswith(".tsv"))
        info["files"][f] = {"key": file_key(corpus / f), "lines": lines, "tokens": tokens,
                            "bytes": os.path.getsize(corpus / f), "sha256": sha256(corpus / f)}
    stamp.write_text(json.dumps(info, indent=1))
    return info


def build_corpus(args, corpus):
    log(f"building the corpus: {args.docs} docs into {rel(corpus)}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "corpus.py"), "--data-root", args.data_root,
                    "--docs", str(args.docs), "--dev-docs", str(DEV_DOCS), "--seed", str(SEED),
                    "--out-dir", str(corpus)], check=True)
    return round(time.perf_counter() - t0, 1)


def head_file(src, dst, n):
    """The first n lines of src into dst (rewritten only when missing or older)."""
    if dst.is_file() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns:
        return
    with open(src, "rb") as f, open(dst, "wb") as g:
        for i, line in enumerate(f):
            if i >= n:
                break
            g.write(line)


# ------------------------------------------------------------------------------ rows

class Row:
    """One measured process: name, command, and how to read its result."""

    def __init__(self, name, task, system, cmd, optimizer="", batch=None, read=None, needs=None):
        self.name, self.task, self.system, self.cmd = name, task, system, cmd
        self.optimizer, self.batch = optimizer, batch
        self.read = read or (lambda m: m)
        self.needs = needs                  # (path that must exist, row that makes it)
        self.result = None


def capped(args):
    """Whether the dense PyTorch rows train on fewer documents than the corpus has."""
    return bool(args.torch_dense_docs) and args.torch_dense_docs < args.docs


def nlclf_name(opt, b):
    return f"nlclf train {opt} b{b}"


def plan(args, corpus, info):
    """All the rows, in the order they run."""
    py, runs = args.peer_python, corpus / "speed-runs"
    train, dev = str(corpus / "train.tsv"), str(corpus / "dev.tsv")
    tokens = info["files"]["train.tsv"]["tokens"]
    nlclf = args.nlclf
    rows = {}

    def add(row):
        rows[row.name] = row
        return row

    def read_nlclf(out):
        def read(m):
            r = json.loads((out / "report.json").read_text())
            n = r["data"]["train"]
            return {**m, "docs": n, "tokens": tokens, "featurize_seconds": r["featurize_seconds"],
                    "train_seconds": r["train_seconds"], "docs_per_second": n / r["train_seconds"],
                    "tokens_per_second": tokens / r["train_seconds"],
                    "dev_accuracy": r["final"]["dev"]["accuracy"],
                    "nlclf_total_seconds": r["total_seconds"], "vocab": r["features"]["vocab_size"]}
        return read

    for opt in OPTIMIZERS:
        for b in BATCHES:
            out = runs / f"nlclf-{opt}-b{b}"
            add(Row(nlclf_name(opt, b), "train", "nlclf", [
                nlclf, "train", str(SPEED_CONFIG), "--data-root", str(corpus), "--out", str(out),
                "--overwrite", "-q", "--set", f"train.optimizer={opt}", "--set", f"train.lr={LR[opt]}",
                "--set", f"train.batch_size={b}"], opt, b, read_nlclf(out)))
    for variant in ("dense", "sparse"):
        for opt in OPTIMIZERS:
            for b in BATCHES:
                cmd = [py, str(HERE / "peer_torch.py"), "--train", train, "--dev", dev,
                       "--batch", str(b), "--optimizer", opt, "--lr", str(LR[opt]), "--threads", "2"]
                system = f"PyTorch, {variant} gradients"
                if variant == "sparse":
                    cmd.append("--sparse")
                elif capped(args):
                    cmd += ["--max-docs", str(args.torch_dense_docs)]
                    system += f" ({args.torch_dense_docs:,} docs)"
                add(Row(f"torch {variant} {opt} b{b}", "train", system, cmd, opt, b))
    sk_docs = min(args.sklearn_docs, args.docs)
    for opt in args.sklearn_optimizers:
        for b in args.sklearn_batches:
            add(Row(f"sklearn {opt} b{b}", "train", f"scikit-learn MLP ({sk_docs:,} docs)",
                    [py, str(HERE / "peer_sklearn.py"), "--train", train, "--dev", dev, "--batch", str(b),
                     "--optimizer", opt, "--max-docs", str(sk_docs)], opt, b))
    ft_model = runs / "fasttext.bin"
    ft_train = add(Row("fasttext train", "train", "fastText (dim 256, softmax)",
                       [py, str(HERE / "peer_fasttext.py"), "--train", train, "--dev", dev,
                        "--model-out", str(ft_model), "--threads", "2", "--tmp-dir", str(runs)],
                       "sgd", 1))
    add(Row("nlclf featurize", "featurize", "nlclf featurizer (unigrams)",
            [sys.executable, str(HERE / "speed_featurize.py"), "--train", train, "--workers", "2"],
            read=lambda m: {**m, "featurize_seconds": m["seconds"]}))

    model = runs / "nlclf-{}-b{}".format(*PREDICT_MODEL)
    model_row = rows[nlclf_name(*PREDICT_MODEL)]
    small = corpus / f"predict-{SMALL_PREDICT}.txt"
    for path, label in ((corpus / "predict.txt", "predict.txt"), (small, small.name)):
        n, ntok = ((info["files"]["predict.txt"]["lines"], info["files"]["predict.txt"]["tokens"])
                   if path.name == "predict.txt" else (None, None))

        def read(m, n=n, ntok=ntok, path=path):
            if n is None:
                n2, t2 = count_lines_tokens(path, labelled=False)
            else:
                n2, t2 = n, ntok
            return {**m, "docs": n2, "tokens": t2, "docs_per_second": n2 / m["wall_seconds"],
                    "tokens_per_second": t2 / m["wall_seconds"]}
        lines = (info["files"]["predict.txt"]["lines"] if path.name == "predict.txt"
                 else min(SMALL_PREDICT, info["files"]["predict.txt"]["lines"]))
        add(Row(f"nlclf predict {lines} lines", "predict", "nlclf predict",
                ["/bin/sh", "-c", f"exec {shlex.quote(nlclf)} predict {shlex.quote(str(model))} "
                 f"{shlex.quote(str(path))} > /dev/null"],
                read=read, needs=(model / "model.json", model_row)))

    def read_ft(m):
        return {**m, "predict_only_docs_per_second": m["docs_per_second"],
                "docs_per_second": m["docs"] / m["wall_seconds"]}
    add(Row("fasttext predict", "predict", "fastText predict",
            [py, str(HERE / "peer_fasttext.py"), "--predict", str(corpus / "predict.txt"),
             "--model", str(ft_model)], read=read_ft, needs=(ft_model, ft_train)))
    return list(rows.values()), small


def run_row(row, hidden=False):
    log(f"{'(dependency) ' if hidden else ''}{row.name}: {' '.join(shlex.quote(c) for c in row.cmd)}")
    m = measure.run(row.cmd)
    row.result = row.read(m)
    log(f"  wall {m['wall_seconds']:.1f} s, peak RSS {m['peak_rss_mb']:.0f} MB"
        + (f", {row.result['docs_per_second']:,.0f} docs/s" if "docs_per_second" in row.result else ""))


# ------------------------------------------------------------------------------ tables

def fmt(x, spec=",.0f", none="–"):
    return none if x is None else format(x, spec)


def by_name(rows):
    return {r.name: r.result for r in rows if r.result is not None}


def partner(row):
    """The nlclf row a peer row is compared with."""
    if row.task == "train" and row.system != "nlclf":
        if row.name.startswith("fasttext"):
            return nlclf_name(*FASTTEXT_PARTNER)
        return nlclf_name(row.optimizer, row.batch)
    return None


def results_table(rows, res, predict_rows):
    head = ("| row | task | system | optimizer | batch | docs | docs/s | tokens/s | loop s | "
            "featurize s | wall s | peak RSS MB | tree PSS MB | dev acc % | nlclf ÷ peer docs/s | "
            "peer ÷ nlclf wall |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    big_predict, _ = predict_rows
    for r in rows:
        m = r.result
        if m is None:
            continue
        docs_ratio = wall_ratio = None
        p = partner(r)
        if p in res:
            docs_ratio = res[p]["docs_per_second"] / m["docs_per_second"]
            if m.get("docs") == res[p].get("docs"):
                wall_ratio = m["wall_seconds"] / res[p]["wall_seconds"]
        if r.name == "fasttext predict" and big_predict in res:
            docs_ratio = res[big_predict]["docs_per_second"] / m["docs_per_second"]
            wall_ratio = m["wall_seconds"] / res[big_predict]["wall_seconds"]
        acc = m.get("dev_accuracy")
        lines.append("| " + " | ".join([
            r.name, r.task, r.system, r.optimizer or "–", fmt(r.batch, "d"), fmt(m.get("docs"), ","),
            fmt(m.get("docs_per_second")), fmt(m.get("tokens_per_second")),
            fmt(m.get("train_seconds"), ".2f"), fmt(m.get("featurize_seconds"), ".2f"),
            fmt(m["wall_seconds"], ".2f"), fmt(m["peak_rss_mb"]), fmt(m.get("tree_peak_pss_mb")),
            fmt(None if acc is None else 100 * acc, ".2f"),
            fmt(docs_ratio, ".2f", "–") + ("×" if docs_ratio else ""),
            fmt(wall_ratio, ".2f", "–") + ("×" if wall_ratio else "")]) + " |")
    return lines


def mem(m):
    """Peak memory used for the memory targets: the larger of the largest single process
    (ru_maxrss) and the sampled sum over the process tree (PSS)."""
    return max(m["peak_rss_mb"], m.get("tree_peak_pss_mb") or 0)


def targets_table(res, args, predict_rows):
    out = ["| target | measured | met |", "|---|---|---|"]

    def line(target, measured, ok):
        out.append(f"| {target} | {measured} | {'–' if ok is None else ('met' if ok else '**missed**')} |")

    def speed(opt, b, peer, factor, label):
        a, p = res.get(nlclf_name(opt, b)), res.get(peer)
        t = f"{label} (loop docs/s, {opt}, batch {b})"
        if not (a and p):
            return line(t, "not run", None)
        r = a["docs_per_second"] / p["docs_per_second"]
        line(t, f"{a['docs_per_second']:,.0f} vs {p['docs_per_second']:,.0f} docs/s: {r:.2f}×", r >= factor)

    for opt in OPTIMIZERS:
        for b in BATCHES:
            speed(opt, b, f"torch sparse {opt} b{b}", SPARSE_FACTOR, "≥ PyTorch sparse gradients")
    for b in BATCHES:
        speed("sgd", b, f"torch dense sgd b{b}", DENSE_SGD_FACTOR, "≥ 10× PyTorch dense SGD")
    for b in BATCHES:
        speed("adam", b, f"torch dense adam b{b}", DENSE_ADAM_FACTOR, "≥ 20× PyTorch dense Adam")
    sk_docs = min(args.sklearn_docs, args.docs)
    for opt in args.sklearn_optimizers:
        for b in args.sklearn_batches:
            speed(opt, b, f"sklearn {opt} b{b}", SKLEARN_FACTOR,
                  f"≥ 25× scikit-learn MLP (sklearn on {sk_docs:,} docs)")
    for opt in OPTIMIZERS:
        for b in BATCHES:
            a = res.get(nlclf_name(opt, b))
            d, s = res.get(f"torch dense {opt} b{b}"), res.get(f"torch sparse {opt} b{b}")
            t = f"dev accuracy at most {ACCURACY_POINTS:g} point below PyTorch's ({opt}, batch {b})"
            if not a or not (d or s):
                line(t, "not run", None)
                continue
            parts, ok = [f"nlclf {100 * a['dev_accuracy']:.2f}"], True
            for label, p in (("dense", d), ("sparse", s)):
                if p and p.get("docs") == a.get("docs"):
                    gap = 100 * (a["dev_accuracy"] - p["dev_accuracy"])
                    parts.append(f"{label} {100 * p['dev_accuracy']:.2f} ({gap:+.2f})")
                    ok = ok and gap >= -ACCURACY_POINTS      # never more than 1 point below
            if len(parts) == 1:
                line(t, "PyTorch trained on fewer documents: not comparable", None)
                continue
            line(t, ", ".join(parts), ok)
    ft = res.get("fasttext train")
    for opt in OPTIMIZERS:
        for b in BATCHES:
            a = res.get(nlclf_name(opt, b))
            t = f"whole process ≤ fastText's wall time (nlclf {opt}, batch {b})"
            if not (a and ft):
                line(t, "not run", None)
                continue
            line(t, f"{a['wall_seconds']:.1f} s vs {ft['wall_seconds']:.1f} s",
                 a["wall_seconds"] <= ft["wall_seconds"])
    f = res.get("nlclf featurize")
    line(f"featurization ≥ {FEATURIZE_TOKENS_PER_SECOND:,} tokens/s",
         f"{f['tokens_per_second']:,.0f} tokens/s" if f else "not run",
         f["tokens_per_second"] >= FEATURIZE_TOKENS_PER_SECOND if f else None)
    trained = [(n, m) for n, m in res.items() if n.startswith("nlclf train")]
    if trained:
        worst = max(trained, key=lambda nm: mem(nm[1]))
        line(f"training peak memory ≤ {TRAIN_PEAK_MB} MB ({args.docs:,} docs)",
             f"{mem(worst[1]):.0f} MB (largest of {len(trained)} runs: {worst[0]})",
             mem(worst[1]) <= TRAIN_PEAK_MB)
    else:
        line(f"training peak memory ≤ {TRAIN_PEAK_MB} MB", "not run", None)
    big, small = (res.get(n) for n in predict_rows)
    if big and small:
        r = mem(big) / mem(small) - 1
        line(f"predict memory flat ({small['docs']:,} vs {big['docs']:,} lines within {PREDICT_FLAT:.0%})",
             f"{mem(small):.0f} MB vs {mem(big):.0f} MB ({r:+.1%})", abs(r) <= PREDICT_FLAT)
    else:
        line("predict memory flat", "not run", None)
    fp = res.get("fasttext predict")
    if big and fp:
        line("nlclf predict docs/s ≥ fastText predict docs/s (whole process each)",
             f"{big['docs_per_second']:,.0f} vs {fp['docs_per_second']:,.0f} docs/s "
             f"(fastText's predict call alone: {fp['predict_only_docs_per_second']:,.0f})",
             big["docs_per_second"] >= fp["docs_per_second"])
    else:
        line("nlclf predict docs/s ≥ fastText predict docs/s", "not run", None)
    return out


# ------------------------------------------------------------------------------ machine

def machine(peer_python):
    import numpy
    import scipy
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, env={
            k: v for k, v in _ORIGINAL_ENV.items() if k != "OMP_NUM_THREADS"}).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    probe = ("import json, importlib.metadata as md\nout = {}\n"
             "for p in ('torch', 'scikit-learn', 'fasttext-numpy2', 'numpy', 'scipy'):\n"
             "    try: out[p] = md.version(p)\n    except md.PackageNotFoundError: out[p] = None\n"
             "print(json.dumps(out))")
    try:
        peers = json.loads(subprocess.run([peer_python, "-c", probe], capture_output=True,
                                          text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        peers = {}
    try:
        from importlib.metadata import version
        nlclf_version = version("nlclf")
    except Exception:  # noqa: BLE001
        nlclf_version = None
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "nlclf"],
                                capture_output=True, text=True).stdout.strip())
    return {"nproc": nproc, "cpu": cpu, "memory_gb": mem_gb, "python": platform.python_version(),
            "platform": platform.platform(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "peers": peers, "nlclf": nlclf_version, "commit": commit + (" (nlclf/ modified)" if dirty else "")}


def document(args, info, mach, rows, res, results, targets, started, elapsed, load):
    corpus = Path(args.corpus_dir)
    tr = info["files"]["train.tsv"]
    peers = mach["peers"]
    lines = ["# nlclf speed and memory", ""]
    deviations = []
    if args.docs != FULL_DOCS:
        deviations.append(f"{args.docs:,} training documents (the benchmark uses {FULL_DOCS:,})")
    if args.only:
        deviations.append(f"only the rows matching {', '.join(map(repr, args.only))}")
    if capped(args):
        deviations.append(f"the dense-gradient PyTorch rows trained on {args.torch_dense_docs:,} documents")
    if deviations:
        lines += [f"> **Not the full benchmark**: {'; '.join(deviations)}.", ""]
    lines += [
        "## Machine", "",
        f"- `nproc`: {mach['nproc']}; CPU: {mach['cpu']}; memory: {mach['memory_gb']:.1f} GiB",
        f"- {mach['platform']}",
        f"- Python {mach['python']}, numpy {mach['numpy']}, scipy {mach['scipy']}; "
        f"peers: torch {peers.get('torch')}, scikit-learn {peers.get('scikit-learn')}, "
        f"fasttext-numpy2 {peers.get('fasttext-numpy2')}",
        f"- nlclf {mach['nlclf']} at commit {mach['commit']}",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the whole benchmark took {elapsed / 60:.1f} min; "
        f"load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end",
        "", "Command:", "", "```sh", args.command, "```", "",
        f"Corpus: `{rel(corpus)}` built by `bench/corpus.py --docs {args.docs} --dev-docs {DEV_DOCS} "
        f"--seed {SEED}` from sst5, trec and mr ({tr['lines']:,} training documents, "
        f"{tr['tokens']:,} tokens, {tr['tokens'] / tr['lines']:.1f} a document; "
        f"{info['files']['dev.tsv']['lines']:,} dev documents; 13 classes); "
        f"`train.tsv` SHA-256 `{tr['sha256'][:16]}…`"
        + (f"; built in {info['build_seconds']:.0f} s." if info.get("build_seconds") else "."),
        "", "## Results", "", *results, "",
        "## Targets", "", *targets, "",
        "## How measured", "",
        "- Every row is its own process, started by `bench/measure.py` with `OMP_NUM_THREADS`, "
        "`MKL_NUM_THREADS` and `OPENBLAS_NUM_THREADS` set to 2, run one after the other in one "
        "invocation of `bench/speed.py` (nothing is carried over from earlier runs, except that "
        "a prediction row whose model is missing is preceded by the training run that makes it). "
        "PyTorch runs with `torch.set_num_threads(2)`, fastText with `thread 2`, nlclf's "
        "featurizer with 2 worker processes (`features.workers: 2`).",
        "- **docs/s, tokens/s, loop s** (training rows): the training loop alone, one epoch over "
        "the training documents, as each program times it: nlclf's `train_seconds` from "
        "`report.json` (the minibatch loop, dev evaluation excluded), the peers' own "
        "`train_seconds` (PyTorch: the batch loop; scikit-learn: `MLPClassifier(max_iter=1).fit`; "
        "fastText: `train_supervised`). Tokens are whitespace tokens of the training texts.",
        "- **featurize s**: nlclf: `featurize_seconds` of `report.json` (reads train and dev "
        "from disk, two streamed passes over train: vocabulary, then counts); PyTorch: vocabulary, "
        "token ids and the epoch's shuffle, file reading excluded; scikit-learn: "
        "`CountVectorizer.fit_transform`; fastText: converting the TSV to its `__label__` format. "
        "The `nlclf featurize` row is `bench/speed_featurize.py`: "
        "`features.make(FeatureSpec(tokenizer='whitespace', lowercase=False, ngrams=1, weighting='count', "
        "min_count=1, char_ngrams=(), normalize=False, workers=2)).fit_transform(texts)` "
        "on the training texts held in a list; its tokens/s is tokens ÷ that call's seconds, its "
        "memory includes the list of texts.",
        "- **wall s**: the whole process, from start to exit: interpreter start, imports, reading, "
        "featurizing, training, scoring dev, and (nlclf, fastText) saving the model; nlclf also "
        "writes its reports (and learning-curve PNGs when matplotlib is installed). The PyTorch "
        "and scikit-learn peers do not save a model.",
        "- **peak RSS MB**: `ru_maxrss` of the process from `wait4`: the largest resident set of "
        "the process or of any one of its child processes. **tree PSS MB**: the largest sum of "
        "the proportional set sizes of the process and its children, sampled every "
        f"{measure.SAMPLE_SECONDS:g} s (pages shared after a fork counted once); it matters "
        "where a program forks workers (nlclf's featurizer). The memory targets use the larger "
        "of the two.",
        "- **dev acc %**: accuracy on the 20,000 dev documents after the one epoch.",
        f"- **nlclf ÷ peer docs/s**: training-loop docs/s of the nlclf row with the same optimizer "
        f"and batch divided by the peer's (fastText, batch 1: compared with nlclf "
        f"{FASTTEXT_PARTNER[0]} batch {FASTTEXT_PARTNER[1]}); **peer ÷ nlclf wall**: the peer's "
        "whole-process time divided by nlclf's, only where both trained on the same documents. "
        "Above 1: nlclf is faster. scikit-learn trains on "
        f"{min(args.sklearn_docs, args.docs):,} documents"
        + (f", the dense-gradient PyTorch rows on {args.torch_dense_docs:,}" if capped(args) else "")
        + ": for those only docs/s is compared.",
        f"- Learning rates: SGD 0.1, Adam 0.001 for nlclf and PyTorch (plain SGD; PyTorch "
        "sparse+Adam uses `SparseAdam` for the bag, lazy like nlclf's row-wise Adam). "
        "scikit-learn keeps its peer defaults (SGD: lr 0.01 with Nesterov momentum 0.9, its "
        "`solver='sgd'` default; Adam: lr 0.001). fastText: lr 0.1, softmax loss, unigrams, "
        "`minCount 1`; it is a linear model (averaged embeddings -> softmax, no hidden ReLU).",
        "- **Prediction rows**: `nlclf predict MODEL FILE > /dev/null` (model: nlclf "
        f"{PREDICT_MODEL[0]} batch {PREDICT_MODEL[1]}), docs/s = lines ÷ whole-process wall time; "
        f"flat memory: the same command on the first {SMALL_PREDICT:,} lines. fastText: "
        "`peer_fasttext.py --predict` (loads the model, reads all lines into a list, "
        "`model.predict`, writes the labels to /dev/null); its docs/s here is also lines ÷ wall "
        "time, and the targets table adds its predict call alone.",
        "- One measurement per row, no repetition: figures on a busy machine are not reliable; "
        "check the load averages above.",
    ]
    return lines


# ------------------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=FULL_DOCS)
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--corpus-dir", help="default: bench/out for the full corpus, else bench/out/small")
    p.add_argument("--skip-build", action="store_true", help="use the corpus already in --corpus-dir")
    p.add_argument("--only", nargs="+", default=[], help="run only the rows whose name contains one of these")
    p.add_argument("--sklearn-docs", type=int, default=100_000)
    p.add_argument("--torch-dense-docs", type=int, default=0,
                   help="train the dense-gradient PyTorch rows on the first N documents only "
                        "(their docs/s stays comparable, their wall time and accuracy do not; "
                        "default 0: all documents)")
    p.add_argument("--sklearn-optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    p.add_argument("--sklearn-batches", nargs="+", type=int, default=list(BATCHES))
    p.add_argument("--peer-python", default=sys.executable,
                   help="python with torch, scikit-learn and fasttext (default: this one)")
    p.add_argument("--nlclf", default=str(Path(sys.executable).parent / "nlclf"),
                   help="the nlclf executable (default: beside this python)")
    p.add_argument("--out", help="markdown report (default: docs/performance.md for the full corpus, "
                                 "else <corpus-dir>/performance.md)")
    p.add_argument("--json", help="all measurements (default: <corpus-dir>/speed.json)")
    p.add_argument("--list", action="store_true", help="print the row names and exit")
    p.add_argument("--render", metavar="SPEED_JSON",
                   help="measure nothing: rewrite --out from the measurements of an earlier run")
    args = p.parse_args(argv)
    if args.render:
        return render(args)
    full = args.docs == FULL_DOCS
    corpus = Path(args.corpus_dir or (HERE / "out" if full else HERE / "out" / "small"))
    args.corpus_dir = str(corpus)
    out_md = Path(args.out or (ROOT / "docs" / "performance.md" if full else corpus / "performance.md"))
    out_json = Path(args.json or corpus / "speed.json")
    exe = rel(sys.executable) if rel(sys.executable) != sys.executable else sys.executable
    args.command = " ".join([exe, rel(__file__)] + [shlex.quote(a) for a in sys.argv[1:]])

    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    if not args.list:
        build_seconds = None
        if not args.skip_build:
            build_seconds = build_corpus(args, corpus)
        info = corpus_info(corpus, args.docs, build_seconds)
        have = info["files"]["train.tsv"]["lines"]
        if have != args.docs:
            sys.exit(f"speed: {corpus}/train.tsv has {have} documents, not --docs {args.docs}")
        (corpus / "speed-runs").mkdir(exist_ok=True)
    else:
        info = {"files": {f: {"lines": args.docs, "tokens": 0} for f in ("train.tsv", "dev.tsv", "predict.txt")}}
    rows, small = plan(args, corpus, info)
    predict_rows = [r.name for r in rows if r.task == "predict" and r.system == "nlclf predict"]
    if args.list:
        print("\n".join(r.name for r in rows))
        return
    head_file(corpus / "predict.txt", small, SMALL_PREDICT)
    selected = [r for r in rows if not args.only or any(s in r.name for s in args.only)]
    if not selected:
        sys.exit(f"speed: no row matches --only {' '.join(args.only)} (see --list)")
    log(f"{len(selected)} rows; corpus {rel(corpus)} ({args.docs:,} docs)")
    done = set()
    for r in selected:
        if r.needs and not Path(r.needs[0]).exists() and r.needs[1].name not in done:
            run_row(r.needs[1], hidden=r.needs[1] not in selected)
            done.add(r.needs[1].name)
        if r.name not in done:
            run_row(r)
            done.add(r.name)
    res = by_name(selected)
    results = results_table(selected, res, predict_rows)
    targets = targets_table(res, args, predict_rows)
    elapsed = time.perf_counter() - t_start
    load = (load0, os.getloadavg()[0])
    mach = machine(args.peer_python)
    doc = document(args, info, mach, selected, res, results, targets, started, elapsed, load)
    print("\n".join(["", *results, "", *targets]))
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(doc) + "\n" + predict_block(out_md), encoding="utf-8")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({
        "command": args.command, "date": started.isoformat(), "elapsed_seconds": round(elapsed, 1),
        "load_average": load, "machine": mach, "corpus": info, "docs": args.docs,
        "rows": {r.name: {"task": r.task, "system": r.system, "optimizer": r.optimizer,
                          "batch": r.batch, "cmd": r.cmd, **r.result} for r in selected},
    }, indent=1), encoding="utf-8")
    log(f"done in {elapsed / 60:.1f} min: {rel(out_md)}, {rel(out_json)}")


def predict_block(path: Path) -> str:
    """The sections other benchmarks keep in the same file (`make bench-predict`'s and
    `make bench-serve`'s, between their markers), as they are."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = []
    for begin, end in (("<!-- bench-predict: begin -->", "<!-- bench-predict: end -->"),
                       ("<!-- bench-serve:begin -->", "<!-- bench-serve:end -->")):
        if begin in old and end in old:
            kept.append(old[old.index(begin):old.index(end) + len(end)])
    return "".join("\n" + k + "\n" for k in kept)


def render(args):
    """The tables and the document again from an earlier run's JSON (same rows, same figures;
    the targets re-evaluated by this version of the script)."""
    saved = json.loads(Path(args.render).read_text(encoding="utf-8"))
    args.docs, args.command = saved["docs"], saved["command"]
    full = args.docs == FULL_DOCS
    corpus = Path(args.corpus_dir or (HERE / "out" if full else HERE / "out" / "small"))
    args.corpus_dir = str(corpus)
    out_md = Path(args.out or (ROOT / "docs" / "performance.md" if full else corpus / "performance.md"))
    rows, _ = plan(args, corpus, saved["corpus"])
    predict_rows = [r.name for r in rows if r.task == "predict" and r.system == "nlclf predict"]
    selected = [r for r in rows if r.name in saved["rows"]]
    for r in selected:
        r.result = {k: v for k, v in saved["rows"][r.name].items()
                    if k not in ("task", "system", "optimizer", "batch", "cmd")}
    res = by_name(selected)
    results = results_table(selected, res, predict_rows)
    targets = targets_table(res, args, predict_rows)
    started = datetime.datetime.fromisoformat(saved["date"])
    doc = document(args, saved["corpus"], saved["machine"], selected, res, results, targets, started,
                   saved["elapsed_seconds"], tuple(saved["load_average"]))
    doc += ["", f"(Tables rendered again from `{rel(args.render)}` by "
                f"`python bench/speed.py --render {rel(args.render)}`: the figures are that run's.)"]
    print("\n".join(["", *results, "", *targets]))
    out_md.write_text("\n".join(doc) + "\n" + predict_block(out_md), encoding="utf-8")


if __name__ == "__main__":
    main()

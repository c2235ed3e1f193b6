"""The command line: parse, call one pipeline function, map our errors to exit codes.

stdout carries only results; logs, progress and errors go to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import ConfigError, Interrupted, NlclfError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and apply text classifiers (a NumPy MLP with hand-derived gradients).")

EXIT_INTERRUPTED = 130

# Options several commands share, declared once.
SET = typer.Option([], "--set", help="Override a config key: --set train.lr=0.05 (repeatable).")
DATA_ROOT = typer.Option(None, "--data-root", help="Folder the config's data paths are relative to (default: $NLCLF_DATA_ROOT, else data/).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output folder.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or logs.")


def _logger(quiet: bool):
    return (lambda m: None) if quiet else (lambda m: _err(f"nlclf: {m}"))



def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fail(e: NlclfError):
    for i, line in enumerate(str(e).splitlines()):
        _err(("error: " if i == 0 else "       ") + line)
    raise typer.Exit(e.exit_code)


class _Progress:
    """tqdm bars on stderr, silent when stderr is not a terminal or with --quiet."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = None

    def __call__(self, event: str, info: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm
        if event == "epoch_start":
            self.bar = tqdm(total=info["batches"], desc=f"epoch {info['epoch']}", unit="batch",
                            leave=False, file=sys.stderr, dynamic_ncols=True)
        elif event == "batch" and self.bar is not None:
            self.bar.update(1)
            if self.bar.n % 20 == 0:
                self.bar.set_postfix(loss=f"{info['loss']:.4f}", refresh=False)
        elif event == "epoch_end":
            if self.bar is not None:
                self.bar.close()
            tqdm.write(f"epoch {info['epoch']}: train loss {info['train_loss']:.4f}, dev loss "
                       f"{info['dev_loss']:.4f}, dev accuracy {info['dev_accuracy']:.4f}, "
                       f"macro-F1 {info['dev_macro_f1']:.4f} ({info['seconds']:.1f} s)", file=sys.stderr)


def _version(value: bool):
    if value:
        print(f"nlclf {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")):
    pass


class _StopOnCtrlC:
    """The first Ctrl-C asks training to stop after the current batch (it then saves its state
    for --resume and exits 130); a second one interrupts at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        _err("\nnlclf: stopping after this batch and saving the training state (Ctrl-C again to abort)")

    def __call__(self) -> bool:
        return self.requested

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


@app.command()
def train(config: str = typer.Argument(..., help="YAML config file."),
          out: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: output.dir)."),
          set_: List[str] = SET,
          data_root: Optional[str] = DATA_ROOT,
          resume: Optional[str] = typer.Option(None, "--resume", help="Continue the interrupted run saved in this output folder."),
          overwrite: bool = OVERWRITE,
          quiet: bool = QUIET):
    """Train a classifier: writes the checkpoint, the effective config and reports into the output folder."""
    from . import config as config_mod
    log = _logger(quiet)
    try:
        cfg = config_mod.load(config, set_)
        if resume and out and Path(out) != Path(resume):
            raise ConfigError(f"--out {out} and --resume {resume} name different folders")
        from .pipeline import run_train
        with _StopOnCtrlC() as stop:
            r = run_train(cfg, data_root, resume or out, overwrite, _Progress(quiet), log,
                          resume=bool(resume), should_stop=stop)
    except Interrupted as e:
        _err(f"nlclf: {e}; the state is saved: continue with --resume {resume or out or cfg.output.dir}")
        raise typer.Exit(e.exit_code)
    except NlclfError as e:
        _fail(e)
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED)
    if r.get("members"):
        best = (f"ensemble of {len(r['members'])}, best epochs "
                + ", ".join(f"{m['best_epoch']}/{m['epochs']}" for m in r["members"]))
    else:
        best = f"best epoch {r['best_epoch']}/{len(r['history'])}"
    parts = [f"{r['out_dir']}: {best}", f"dev accuracy {r['final']['dev']['accuracy']:.4f}"]
    if "test" in r["final"]:
        parts.append(f"test accuracy {r['final']['test']['accuracy']:.4f}")
    parts.append(f"{r['total_seconds']:.1f} s")
    print(", ".join(parts))


FAIL_UNDER_METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")


def _fail_under(spec: str):
    name, sep, value = spec.partition("=")
    try:
        threshold = float(value)
    except ValueError:
        sep = ""
    if not sep or name not in FAIL_UNDER_METRICS:
        _err(f"error: --fail-under takes METRIC=VALUE with METRIC one of {', '.join(FAIL_UNDER_METRICS)}; got {spec}")
        raise typer.Exit(2)
    return name, threshold


def _metric_value(m: dict, name: str) -> float:
    if name in ("accuracy", "macro_f1"):
        return m[name]
    return m[f"{name.split('_')[0]}_avg"]["f1"]


@app.command("eval")
def eval_(model: str = typer.Argument(..., help="Model folder written by nlclf train."),
          data: str = typer.Argument(..., help="Labelled file (label<TAB>text)."),
          report: Optional[str] = typer.Option(None, "--report", help="Also write the metrics as JSON to this file."),
          errors: int = typer.Option(0, "--errors", min=0, help="Show the K misclassified texts with the highest probability."),
          fail_under: List[str] = typer.Option([], "--fail-under", help="METRIC=VALUE: exit 1 when the metric is below VALUE (accuracy, macro_f1, micro_f1, weighted_f1; repeatable)."),
          plots: Optional[str] = typer.Option(None, "--plots", help="Folder for a reliability diagram and a confusion-matrix heat map (needs the plot extra)."),
          bins: int = typer.Option(15, "--bins", min=2, help="Bins of the calibration error.")):
    """Evaluate a model: accuracy, macro-F1, per-class table, confusion matrix, calibration error."""
    from .pipeline import run_eval
    from .report import metrics_table, write_json
    gates = [_fail_under(f) for f in fail_under]
    try:
        m = run_eval(model, data, errors, bins, plots)
        if report:
            write_json(report, m)
    except NlclfError as e:
        _fail(e)
    print(f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  expected calibration error "
          f"{m['ece']:.4f}  (n = {m['n']})\n")
    print(metrics_table(m))
    if errors:
        print(f"\nMost confident mistakes ({len(m['errors'])}):\n")
        print("| line | true | predicted | probability | text |\n|---:|---|---|---:|---|")
        for e in m["errors"]:
            print(f"| {e['line']} | {e['label']} | {e['predicted']} | {e['proba']:.3f} | {e['text'].replace('|', '/')} |")
    if plots and not m["pictures"]:
        _err("nlclf: no pictures: install the plotting extra (pip install 'nlclf[plot]')")
    failed = [(n, t, _metric_value(m, n)) for n, t in gates if _metric_value(m, n) < t]
    for n, t, v in failed:
        _err(f"error: {n} {v:.4f} is below --fail-under {t}")
    if failed:
        raise typer.Exit(1)


@app.command()
def compare(model_a: str = typer.Argument(..., help="First model folder (A)."),
            model_b: str = typer.Argument(..., help="Second model folder (B)."),
            data: str = typer.Argument(..., help="Labelled file both are evaluated on."),
            resamples: int = typer.Option(10000, "--resamples", min=100, help="Paired bootstrap resamples."),
            seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
            report: Optional[str] = typer.Option(None, "--report", help="Also write the comparison as JSON.")):
    """Two models side by side on the same examples, with McNemar's test and a paired bootstrap."""
    from .pipeline import run_compare
    from .report import write_json
    try:
        r = run_compare(model_a, model_b, data, resamples, seed)
        if report:
            write_json(report, r)
    except NlclfError as e:
        _fail(e)
    a, b, mc, bs = r["a"], r["b"], r["mcnemar"], r["bootstrap"]
    print("| metric | A | B | B − A |\n|---|---:|---:|---:|")
    for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        print(f"| {name} | {a[key]:.4f} | {b[key]:.4f} | {r['b_minus_a'][key]:+.4f} |")
    print(f"\nA: {model_a}\nB: {model_b}\nn = {mc['n']} examples; A right and B wrong: {mc['b']}, "
          f"A wrong and B right: {mc['c']}")
    print(f"McNemar: exact p = {mc['p_exact']:.4g} (chi-square {mc['chi2']:.3f}, p = {mc['p_chi2']:.4g})")
    print(f"paired bootstrap ({bs['resamples']} resamples): accuracy difference B − A = {bs['difference']:+.4f}, "
          f"95% interval [{bs['ci_low']:+.4f}, {bs['ci_high']:+.4f}], P(B ≤ A) = {bs['p_value']:.4g}")
    verdict = "a real difference" if mc["p_exact"] < 0.05 else "not distinguishable from noise"
    print(f"at the 5% level: {verdict}")


@app.command()
def inspect(model: str = typer.Argument(..., help="Model folder written by nlclf train."),
            data: Optional[str] = typer.Option(None, "--data", help="Text file (one text a line) for the unknown-word rate."),
            word: List[str] = typer.Option([], "--word", "-w", help="Show the nearest neighbours of this word in the embedding table (repeatable)."),
            top: int = typer.Option(10, "--top", min=1, help="How many features, unknown words and neighbours to list."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")):
    """What a model is: shape, parameters, vocabulary, the features most tied to each label,
    the unknown-word rate on a file, nearest neighbours in the embedding table."""
    from .pipeline import run_inspect
    try:
        r = run_inspect(model, data, word, top)
    except NlclfError as e:
        _fail(e)
    if as_json:
        print(json.dumps(r, ensure_ascii=False, indent=2))
        return
    ens = (f" = an ensemble of {r['ensemble']} networks of hidden {r['member_hidden']}, side by side"
           if r["ensemble"] > 1 else "")
    print(f"{r['model']}: {r['kind']} features, hidden {r['hidden']}{ens} ({r['activation']}), "
          f"{len(r['labels'])} labels, {r['n_parameters']:,} parameters")
    print("parameters: " + ", ".join(f"{k} {tuple(v)}" for k, v in r["parameters"].items()))
    print(f"vocabulary: {r['vocab_size']:,} entries, {r['n_features']:,} input features, temperature {r['temperature']:.3g}")
    if "unknown_rate" in r:
        print(f"unknown words in {data}: {r['unknown_rate']:.2%} of {r['tokens']:,} tokens; most frequent: " +
              ", ".join(f"{w} ({n})" for w, n in r["frequent_unknown"]))
    print("\nfeatures most associated with each label (P(label | that feature alone)):")
    for label, feats in r["top_features"].items():
        print(f"  {label}: " + ", ".join(f"{f} {p:.2f}" for f, p in feats))
    for w, nn in r.get("neighbours", {}).items():
        print(f"\nnearest neighbours of '{w}': " + ("not in the vocabulary" if nn is None else
                                                   ", ".join(f"{t} {c:.3f}" for t, c in nn)))


def _explanation(e: dict, fmt: str) -> str:
    if fmt == "jsonl":
        return json.dumps({"label": e["label"], "proba": round(e["proba"], 6),
                           "toward": [[f, round(v, 6)] for f, v in e["toward"]],
                           "against": [[f, round(v, 6)] for f, v in e["against"]]}, ensure_ascii=False)
    sep = "\t" if fmt == "tsv" else " "
    fmt_list = lambda xs: ", ".join(f"{f} {v:+.3f}" for f, v in xs)
    return sep.join([e["label"], f"{e['proba']:.4f}", fmt_list(e["toward"]) or "-", fmt_list(e["against"]) or "-"])


@app.command()
def predict(model: str = typer.Argument(..., help="Model folder written by nlclf train."),
            files: List[str] = typer.Argument(None, help="Text files, one text a line; '-' or none: stdin."),
            proba: bool = typer.Option(False, "--proba", help="Add the probability of each label."),
            top_k: int = typer.Option(1, "--top-k", min=1, help="Print the K most probable labels."),
            fmt: str = typer.Option("text", "--format", help="text, tsv or jsonl."),
            batch_size: int = typer.Option(1024, "--batch-size", min=1, help="Texts per batch."),
            explain: int = typer.Option(0, "--explain", min=0, help="Show the K tokens/n-grams that pushed each prediction most toward and against its label (gradient × input); tsv or jsonl."),
            workers: int = typer.Option(0, "--workers", min=0, help="Processes computing batches (0: one per core; 1: this process only). The output does not depend on it.")):
    """Label each input line: one result a line on stdout, in input order, streamed."""
    from .pipeline import run_predict
    if fmt not in ("text", "tsv", "jsonl"):
        _err(f"error: --format must be one of text, tsv, jsonl; got {fmt}")
        raise typer.Exit(2)
    out = sys.stdout
    sep = " " if fmt == "text" else "\t"
    try:
        for batch in run_predict(model, files or ["-"], top_k, batch_size, explain_k=explain, workers=workers):
            if explain:
                lines = [_explanation(e, fmt) for e in batch]
            elif fmt == "jsonl":
                lines = [json.dumps({"label": top[0][0], "proba": round(top[0][1], 6),
                                     **({"top": [{"label": l, "proba": round(p, 6)} for l, p in top]}
                                        if top_k > 1 else {})}, ensure_ascii=False) for top in batch]
            elif proba:
                lines = [sep.join(f"{l}{sep}{p:.4f}" for l, p in top) for top in batch]
            else:
                lines = [sep.join(l for l, _ in top) for top in batch]
            out.write("\n".join(lines) + "\n")
            out.flush()                 # each batch as soon as it is ready: the output streams
    except NlclfError as e:
        _fail(e)
    except BrokenPipeError:
        # the reader went away (e.g. `| head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED)


def _out_folder(path: str, overwrite: bool) -> Path:
    from .pipeline import prepare_output
    out = Path(path)
    prepare_output(out, overwrite)
    return out


@app.command()
def cv(config: str = typer.Argument(..., help="YAML config file (its data.train is split into folds)."),
       folds: int = typer.Option(10, "--folds", "-k", min=2, help="Number of stratified folds."),
       seeds: int = typer.Option(1, "--seeds", min=1, help="Repeat with this many seeds (seed, seed+1, ...)."),
       jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Parallel processes (default: the number of cores)."),
       out: str = typer.Option("runs/cv", "--out", "-o", help="Folder for cv.json and cv.md."),
       set_: List[str] = SET,
       data_root: Optional[str] = DATA_ROOT,
       scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run folds on a Dask cluster: tcp://HOST:PORT."),
       overwrite: bool = OVERWRITE,
       quiet: bool = QUIET):
    """Stratified K-fold cross-validation: accuracy and macro-F1 per fold, mean ± std."""
    from . import config as config_mod
    from .report import write_json, write_text
    from .search import cv_markdown, run_cv
    log = _logger(quiet)
    try:
        cfg = config_mod.load(config, set_)
        dest = _out_folder(out, overwrite)
        r = run_cv(cfg, folds, seeds, jobs, data_root, scheduler, log)
        write_json(dest / "cv.json", r)
        md = cv_markdown(r)
        write_text(dest / "cv.md", md)
    except NlclfError as e:
        _fail(e)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED)
    print(md, end="")


@app.command()
def tune(config: str = typer.Argument(..., help="YAML config file: the starting point of the search."),
         space: str = typer.Option(..., "--space", help="YAML search space: dotted key -> list, or {uniform|loguniform|int|logint: [lo, hi]}."),
         trials: int = typer.Option(20, "--trials", "-n", min=1, help="Random-search trials (ignored for a grid)."),
         jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Parallel processes (default: the number of cores)."),
         cv_folds: int = typer.Option(0, "--cv", min=0, help="Score each trial by K-fold cross-validation instead of the dev set."),
         metric: Optional[str] = typer.Option(None, "--metric", help="accuracy or macro_f1 (default: train.metric)."),
         halving: bool = typer.Option(False, "--halving", help="Successive halving: weak trials stop early (by epochs)."),
         scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run trials on a Dask cluster: tcp://HOST:PORT."),
         out: str = typer.Option("runs/tune", "--out", "-o", help="Folder for leaderboard.md/.json and best.yaml."),
         set_: List[str] = SET,
         data_root: Optional[str] = DATA_ROOT,
         overwrite: bool = OVERWRITE,
         quiet: bool = QUIET):
    """Hyperparameter search (random, or grid when the space is all lists); writes the best config."""
    from . import config as config_mod
    from .report import write_json, write_text
    from .search import load_space, run_tune, tune_markdown, validate_space
    log = _logger(quiet)
    if metric not in (None, "accuracy", "macro_f1"):
        _err(f"error: --metric must be accuracy or macro_f1; got {metric}")
        raise typer.Exit(2)
    try:
        cfg = config_mod.load(config, set_)
        sp = load_space(space)
        validate_space(cfg, sp, space)
        dest = _out_folder(out, overwrite)
        r = run_tune(cfg, sp, trials, jobs, cv_folds, halving, scheduler, data_root, metric, log)
        write_json(dest / "leaderboard.json", r)
        md = tune_markdown(r)
        write_text(dest / "leaderboard.md", md)
        if r["best_config"]:
            write_text(dest / "best.yaml", config_mod.dump(config_mod.from_dict(r["best_config"])))
    except NlclfError as e:
        _fail(e)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED)
    print(md, end="")
    if not r["best_config"]:
        _err("error: every trial failed (see the leaderboard)")
        raise typer.Exit(1)


config_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Check a config file, or show it with every default filled in.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: str = typer.Argument(..., help="YAML config file."),
                set_: List[str] = SET):
    """Print the effective config (file + --set overrides + defaults) as YAML."""
    from . import config as config_mod
    try:
        cfg = config_mod.load(config, set_)
    except NlclfError as e:
        _fail(e)
    print(config_mod.dump(cfg), end="")


@config_app.command("check")
def config_check(config: str = typer.Argument(..., help="YAML config file."),
                 set_: List[str] = SET):
    """Validate a config: every problem is listed, with its line, key, rule and value."""
    from . import config as config_mod
    try:
        config_mod.load(config, set_)
    except NlclfError as e:
        _fail(e)
    print(f"{config}: ok")


def main():
    app()


if __name__ == "__main__":
    main()

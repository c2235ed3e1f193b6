"""The command line: parse, call one pipeline function, map our errors to exit codes.

stdout carries only results; logs, progress and errors go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import ConfigError, Interrupted, NlclfError, OutputError, SignalInterrupt

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and apply text classifiers (a NumPy MLP with hand-derived gradients).")

EXIT_INTERRUPTED = 130
EXIT_OUT_OF_MEMORY = 1

# Options several commands share, declared once.
SET = typer.Option([], "--set", help="Override a config key: --set train.lr=0.05 (repeatable).")
DATA_ROOT = typer.Option(None, "--data-root", help="Folder the config's data paths are relative to (default: $NLCLF_DATA_ROOT, else data/).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace what an earlier nlclf command wrote in the output folder (nothing else).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or logs.")
JOBS = typer.Option(None, "--jobs", "-j", min=1, max=256, help="Parallel processes (default: the number of cores).")


def _logger(quiet: bool):
    return (lambda m: None) if quiet else (lambda m: _err(f"nlclf: {m}"))


def _err(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):       # stderr closed or full: nothing more to do
        pass


_STDOUT_CLOSED = False


def _emit(text: str) -> None:
    """Write results to stdout and flush, so that a full device or a closed stream is reported
    here, as one message (OutputError), and not as a traceback at exit."""
    try:
        if _STDOUT_CLOSED or sys.stdout is None:
            raise OSError(9, "standard output is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise                                           # the reader went away: handled by _errors
    except OSError as e:
        _silence_stdout()
        raise OutputError(f"cannot write the results to standard output: {e.strerror or e}") from None


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null: what is still buffered can then be flushed at exit harmlessly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def _exit_now(code: int) -> None:
    """Leave at once, without the interpreter's shutdown, after flushing what can be flushed: a
    thread still reading stdin (an interactive terminal, `tail -f | nlclf predict`) would
    otherwise abort the shutdown with 'Fatal Python error: _enter_buffered_busy'."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


@contextlib.contextmanager
def _errors():
    """The one place where our errors become a message and an exit code: NlclfError → its
    code; Ctrl-C or SIGTERM → 130 / 143; the reader of stdout gone → 0, quietly; out of
    memory → one line naming what to lower."""
    try:
        yield
    except Interrupted as e:
        _err(f"nlclf: {e}")
        _exit_now(e.exit_code)
    except NlclfError as e:
        for i, line in enumerate(str(e).splitlines()):
            _err(("error: " if i == 0 else "       ") + line)
        raise typer.Exit(e.exit_code)
    except BrokenPipeError:
        _silence_stdout()
        _exit_now(0)
    except MemoryError:
        _err("error: out of memory; lower what takes it: features.max_size or min_count (the vocabulary), "
             "model.hidden, train.batch_size, --batch-size, or features.workers")
        _exit_now(EXIT_OUT_OF_MEMORY)
    except KeyboardInterrupt as e:
        code = getattr(e, "exit_code", EXIT_INTERRUPTED)
        _err("nlclf: interrupted" if code == EXIT_INTERRUPTED else f"nlclf: stopped by signal {code - 128}")
        _exit_now(code)


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


class _StopOnSignal:
    """Ctrl-C or SIGTERM (kill, systemd, Slurm, docker stop) during the training loop asks it to
    stop after the current batch: it then saves its state for --resume and exits 130 (Ctrl-C) or
    143 (SIGTERM). A second signal, or one outside the loop (reading, featurizing), stops at once."""

    def __init__(self):
        from .train import StopRequest
        self.request = StopRequest()

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        return self.request

    def _handle(self, signum, frame):
        if self.request.signum or not self.request.in_loop:
            raise SignalInterrupt(signum)
        self.request.signum = signum
        what = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}.get(signum, "signal")
        _err(f"\nnlclf: {what}: stopping after this batch and saving the training state (again to abort)")

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)


@app.command()
def train(config: str = typer.Argument(..., help="YAML config file."),
          out: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: output.dir)."),
          set_: List[str] = SET,
          data_root: Optional[str] = DATA_ROOT,
          resume: Optional[str] = typer.Option(None, "--resume", help="Continue the interrupted run saved in this output folder."),
          force: bool = typer.Option(False, "--force", help="With --resume: continue even though a data file changed since the interrupted run."),
          overwrite: bool = OVERWRITE,
          quiet: bool = QUIET):
    """Train a classifier: writes the checkpoint, the effective config and reports into the output folder."""
    from . import config as config_mod
    log = _logger(quiet)
    with _errors():
        cfg = config_mod.load(config, set_)
        if resume and out and Path(out) != Path(resume):
            raise ConfigError(f"--out {out} and --resume {resume} name different folders")
        if force and not resume:
            raise ConfigError("--force goes with --resume (continue on changed data)")
        from .pipeline import run_train
        where = resume or out or cfg.output.dir
        with _StopOnSignal() as stop:
            try:
                r = run_train(cfg, data_root, where, overwrite, _Progress(quiet), log,
                              resume=bool(resume), should_stop=stop, force=force)
            except Interrupted as e:
                raise Interrupted(f"{e}; the state is saved: continue with --resume {where}", e.exit_code) from None
        if r.get("members"):
            best = (f"ensemble of {len(r['members'])}, best epochs "
                    + ", ".join(f"{m['best_epoch']}/{m['epochs']}" for m in r["members"]))
        else:
            best = f"best epoch {r['best_epoch']}/{len(r['history'])}"
        parts = [f"{r['out_dir']}: {best}", f"dev accuracy {r['final']['dev']['accuracy']:.4f}"]
        if "test" in r["final"]:
            parts.append(f"test accuracy {r['final']['test']['accuracy']:.4f}")
        parts.append(f"{r['total_seconds']:.1f} s")
        _emit(", ".join(parts) + "\n")


FAIL_UNDER_METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")


def _fail_under(spec: str):
    name, sep, value = spec.partition("=")
    try:
        threshold = float(value)
    except ValueError:
        sep = ""
    if not sep or name not in FAIL_UNDER_METRICS or not (math.isfinite(threshold) and 0 <= threshold <= 1):
        _err(f"error: --fail-under takes METRIC=VALUE with METRIC one of {', '.join(FAIL_UNDER_METRICS)} "
             f"and VALUE a number from 0 to 1; got {spec}")
        raise typer.Exit(2)
    return name, threshold


def _metric_value(m: dict, name: str) -> float:
    if name in ("accuracy", "macro_f1"):
        return m[name]
    return m[f"{name.split('_')[0]}_avg"]["f1"]


def _write_report(path: str, obj) -> None:
    """--report FILE: the JSON, written atomically; --report -: the JSON on stdout."""
    from .report import write_json
    if path == "-":
        _emit(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    else:
        if Path(path).is_dir():
            raise OutputError(f"{path}: --report names a file to write; this is a folder")
        from .rundir import refuse_if_owned
        refuse_if_owned(path, "--report")
        write_json(path, obj)


@app.command("eval")
def eval_(model: str = typer.Argument(..., help="Model folder written by nlclf train."),
          data: str = typer.Argument(..., help="Labelled file (label<TAB>text)."),
          report: Optional[str] = typer.Option(None, "--report", help="Also write the metrics as JSON to this file."),
          errors: int = typer.Option(0, "--errors", min=0, max=100000, help="Show the K misclassified texts with the highest probability."),
          fail_under: List[str] = typer.Option([], "--fail-under", help="METRIC=VALUE: exit 1 when the metric is below VALUE (accuracy, macro_f1, micro_f1, weighted_f1; repeatable)."),
          plots: Optional[str] = typer.Option(None, "--plots", help="Folder for a reliability diagram and a confusion-matrix heat map (needs the plot extra)."),
          bins: int = typer.Option(15, "--bins", min=2, max=1000, help="Bins of the calibration error.")):
    """Evaluate a model: accuracy, macro-F1, per-class table, confusion matrix, calibration error."""
    from .pipeline import run_eval
    from .report import metrics_table
    gates = [_fail_under(f) for f in fail_under]
    with _errors():
        m = run_eval(model, data, errors, bins, plots)
        if report:
            _write_report(report, m)
        lines = [f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  expected calibration error "
                 f"{m['ece']:.4f}  (n = {m['n']})\n", metrics_table(m)]
        if errors:
            lines += [f"\nMost confident mistakes ({len(m['errors'])}):\n",
                      "| line | true | predicted | probability | text |\n|---:|---|---|---:|---|"]
            lines += [f"| {e['line']} | {e['label']} | {e['predicted']} | {e['proba']:.3f} | "
                      f"{e['text'].replace('|', '/')} |" for e in m["errors"]]
        if report != "-":
            _emit("\n".join(lines) + "\n")
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
            resamples: int = typer.Option(10000, "--resamples", min=100, max=1_000_000, help="Paired bootstrap resamples."),
            seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap."),
            report: Optional[str] = typer.Option(None, "--report", help="Also write the comparison as JSON.")):
    """Two models side by side on the same examples, with McNemar's test and a paired bootstrap."""
    from .pipeline import run_compare
    with _errors():
        r = run_compare(model_a, model_b, data, resamples, seed)
        if report:
            _write_report(report, r)
        if report == "-":
            return
        a, b, mc, bs = r["a"], r["b"], r["mcnemar"], r["bootstrap"]
        lines = ["| metric | A | B | B − A |", "|---|---:|---:|---:|"]
        for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            lines.append(f"| {name} | {a[key]:.4f} | {b[key]:.4f} | {r['b_minus_a'][key]:+.4f} |")
        lines += ["", f"A: {model_a}", f"B: {model_b}",
                  f"n = {mc['n']} examples; A right and B wrong: {mc['b']}, A wrong and B right: {mc['c']}",
                  f"McNemar: exact p = {mc['p_exact']:.4g} (chi-square {mc['chi2']:.3f}, p = {mc['p_chi2']:.4g})",
                  f"paired bootstrap ({bs['resamples']} resamples): accuracy difference B − A = "
                  f"{bs['difference']:+.4f}, 95% interval [{bs['ci_low']:+.4f}, {bs['ci_high']:+.4f}], "
                  f"P(B ≤ A) = {bs['p_value']:.4g}",
                  f"at the 5% level: {'a real difference' if mc['p_exact'] < 0.05 else 'not distinguishable from noise'}"]
        for note in r.get("notes", []):
            _err(f"nlclf: {note}")
        _emit("\n".join(lines) + "\n")


@app.command()
def inspect(model: str = typer.Argument(..., help="Model folder written by nlclf train."),
            data: Optional[str] = typer.Option(None, "--data", help="Text file (one text a line) for the unknown-word rate."),
            word: List[str] = typer.Option([], "--word", "-w", help="Show the nearest neighbours of this word in the embedding table (repeatable)."),
            top: int = typer.Option(10, "--top", min=1, max=10000, help="How many features, unknown words and neighbours to list."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")):
    """What a model is: shape, parameters, vocabulary, the features most tied to each label,
    the unknown-word rate on a file, nearest neighbours in the embedding table."""
    from .pipeline import run_inspect
    with _errors():
        r = run_inspect(model, data, word, top)
        if as_json:
            _emit(json.dumps(r, ensure_ascii=False, indent=2) + "\n")
            return
        ens = (f" = an ensemble of {r['ensemble']} networks of hidden {r['member_hidden']}, side by side"
               if r["ensemble"] > 1 else "")
        lines = [f"{r['model']}: {r['kind']} features, hidden {r['hidden']}{ens} ({r['activation']}), "
                 f"{len(r['labels'])} labels, {r['n_parameters']:,} parameters",
                 "parameters: " + ", ".join(f"{k} {tuple(v)}" for k, v in r["parameters"].items()),
                 f"vocabulary: {r['vocab_size']:,} entries, {r['n_features']:,} input features, "
                 f"temperature {r['temperature']:.3g}"]
        if "unknown_rate" in r:
            lines.append(f"unknown words in {data}: {r['unknown_rate']:.2%} of {r['tokens']:,} tokens; most "
                         f"frequent: " + ", ".join(f"{w} ({n})" for w, n in r["frequent_unknown"]))
        lines.append("\nfeatures most associated with each label (P(label | that feature alone)):")
        for label, feats in r["top_features"].items():
            lines.append(f"  {label}: " + ", ".join(f"{f} {p:.2f}" for f, p in feats))
        for w, nn in r.get("neighbours", {}).items():
            lines.append(f"\nnearest neighbours of '{w}': " + ("not in the vocabulary" if nn is None else
                                                              ", ".join(f"{t} {c:.3f}" for t, c in nn)))
        _emit("\n".join(lines) + "\n")


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
            top_k: int = typer.Option(1, "--top-k", min=1, max=100000, help="Print the K most probable labels."),
            fmt: str = typer.Option("text", "--format", help="text, tsv or jsonl."),
            batch_size: int = typer.Option(1024, "--batch-size", min=1, max=1_000_000, help="Texts per batch."),
            explain: int = typer.Option(0, "--explain", min=0, max=1000, help="Show the K tokens/n-grams that pushed each prediction most toward and against its label (gradient × input); tsv or jsonl."),
            workers: int = typer.Option(0, "--workers", min=0, max=256, help="Processes computing batches (0: one per core; 1: this process only). The output does not depend on it.")):
    """Label each input line: one result a line on stdout, in input order, streamed."""
    from .pipeline import run_predict
    if fmt not in ("text", "tsv", "jsonl"):
        _err(f"error: --format must be one of text, tsv, jsonl; got {fmt}")
        raise typer.Exit(2)
    sep = " " if fmt == "text" else "\t"
    with _errors():
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
            _emit("\n".join(lines) + "\n")            # each batch as soon as it is ready: the output streams


@app.command()
def cv(config: str = typer.Argument(..., help="YAML config file (its data.train is split into folds)."),
       folds: int = typer.Option(10, "--folds", "-k", min=2, max=1000, help="Number of stratified folds."),
       seeds: int = typer.Option(1, "--seeds", min=1, max=1000, help="Repeat with this many seeds (seed, seed+1, ...)."),
       jobs: Optional[int] = JOBS,
       out: str = typer.Option("runs/cv", "--out", "-o", help="Folder for cv.json and cv.md."),
       set_: List[str] = SET,
       data_root: Optional[str] = DATA_ROOT,
       scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run folds on a Dask cluster: tcp://HOST:PORT (trusted: Dask unpickles what it sends)."),
       overwrite: bool = OVERWRITE,
       quiet: bool = QUIET):
    """Stratified K-fold cross-validation: accuracy and macro-F1 per fold, mean ± std."""
    from . import config as config_mod
    from .search import cv_into, cv_markdown
    log = _logger(quiet)
    with _errors():
        cfg = config_mod.load(config, set_)
        r = cv_into(out, overwrite, cfg, folds, seeds, jobs, data_root, scheduler, log)
        _emit(cv_markdown(r))
        if r["failed"]:
            _err(f"error: {r['failed']} of {r['planned']} fold runs failed (see {Path(out) / 'cv.md'})")
            raise typer.Exit(1)


@app.command()
def tune(config: str = typer.Argument(..., help="YAML config file: the starting point of the search."),
         space: str = typer.Option(..., "--space", help="YAML search space: dotted key -> list, or {uniform|loguniform|int|logint: [lo, hi]}."),
         trials: int = typer.Option(20, "--trials", "-n", min=1, max=100000, help="Random-search trials (ignored for a grid)."),
         jobs: Optional[int] = JOBS,
         cv_folds: int = typer.Option(0, "--cv", min=0, max=1000, help="Score each trial by K-fold cross-validation instead of the dev set."),
         metric: Optional[str] = typer.Option(None, "--metric", help="accuracy or macro_f1 (default: train.metric)."),
         halving: bool = typer.Option(False, "--halving", help="Successive halving: weak trials stop early (by epochs)."),
         scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run trials on a Dask cluster: tcp://HOST:PORT (trusted: Dask unpickles what it sends)."),
         out: str = typer.Option("runs/tune", "--out", "-o", help="Folder for leaderboard.md/.json and best.yaml."),
         resume: bool = typer.Option(False, "--resume", help="Continue the interrupted search saved in --out (same config, space and options)."),
         set_: List[str] = SET,
         data_root: Optional[str] = DATA_ROOT,
         overwrite: bool = OVERWRITE,
         quiet: bool = QUIET):
    """Hyperparameter search (random, or grid when the space is all lists); writes the best config."""
    from . import config as config_mod
    from .search import load_space, tune_into, tune_markdown, validate_space
    log = _logger(quiet)
    if metric not in (None, "accuracy", "macro_f1"):
        _err(f"error: --metric must be accuracy or macro_f1; got {metric}")
        raise typer.Exit(2)
    with _errors():
        if resume and overwrite:
            raise ConfigError("--resume continues the search in --out; --overwrite would start it again: choose one")
        cfg = config_mod.load(config, set_)
        sp = load_space(space)
        validate_space(cfg, sp, space)
        r = tune_into(out, overwrite, resume, cfg, sp, trials, jobs, cv_folds, halving, scheduler, data_root,
                      metric, log)
        _emit(tune_markdown(r))
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
    with _errors():
        _emit(config_mod.dump(config_mod.load(config, set_)))


@config_app.command("check")
def config_check(config: str = typer.Argument(..., help="YAML config file."),
                 set_: List[str] = SET):
    """Validate a config: every problem is listed, with its line, key, rule and value."""
    from . import config as config_mod
    with _errors():
        config_mod.load(config, set_)
        _emit(f"{config}: ok\n")


def _guard_standard_streams() -> None:
    """A closed stdin, stdout or stderr (`>&-`) is given /dev/null, so that no file nlclf opens
    later takes its number (a model file written through fd 1 would receive the results);
    writing results to a closed stdout is then reported as an error."""
    global _STDOUT_CLOSED
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:                         # pragma: no cover - lower fds were open
                os.dup2(opened, fd)
                os.close(opened)
            if fd == 1:
                _STDOUT_CLOSED = True


def _on_sigterm(signum, frame):
    raise SignalInterrupt(signum)


def main():
    _guard_standard_streams()
    for s in (signal.SIGTERM, signal.SIGHUP):        # like Ctrl-C: unwind, clean up, exit 143 / 129
        signal.signal(s, _on_sigterm)
    with _errors():
        app()


if __name__ == "__main__":
    main()

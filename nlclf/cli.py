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
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import ConfigError, Interrupted, NlclfError, OutputError, SignalInterrupt

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train, evaluate and apply text classifiers (a NumPy MLP with hand-derived gradients).")

EXIT_INTERRUPTED = 130
EXIT_OUT_OF_MEMORY = 1

# Options several commands share, declared once.
SET = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config key: --set train.lr=0.05 (repeatable).")
DATA_ROOT = typer.Option(None, "--data-root", metavar="DIR", help="Folder the config's data paths are relative to (default: data.root, $NLCLF_DATA_ROOT, else data/).")
OVERWRITE = typer.Option(False, "--overwrite", metavar="", help="Replace what an earlier nlclf command wrote in the output folder (nothing else).")
QUIET = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars or logs.")
JOBS = typer.Option(None, "--jobs", "-j", metavar="N", min=1, max=256, help="Parallel processes (default: the number of cores).")
SCHEDULER = typer.Option(None, "--scheduler", metavar="tcp://HOST:PORT", help="Run on a Dask cluster (trusted: Dask unpickles what the scheduler sends).")


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


class _Reporter:
    """Progress and notes on stderr. On a terminal: bars (a counting spinner while reading and
    featurizing, one bar an epoch with the ETA of the whole run) and a line per finished
    epoch; elsewhere (CI, nohup, Slurm, `2> log`) one plain line per epoch and per data stage;
    with --log-format json the same events as JSON Lines; with --quiet nothing."""

    def __init__(self, quiet: bool = False, fmt: str = "text"):
        self.mode = "quiet" if quiet else "json" if fmt == "json" else "tty" if _isatty(sys.stderr) else "plain"
        self.bar = None
        self.t_loop = None

    def note(self, message: str) -> None:
        if self.mode == "json":
            _err(json.dumps({"event": "note", "message": message}, ensure_ascii=False))
        elif self.mode != "quiet":
            self._write(f"nlclf: {message}")

    def _write(self, line: str) -> None:
        if self.bar is not None:
            from tqdm import tqdm
            tqdm.write(line, file=sys.stderr)
        else:
            _err(line)

    def __call__(self, event: str, info: dict) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "json":
            if event != "batch":
                _err(json.dumps(dict(info, event=event), ensure_ascii=False, default=str))
            return
        from .report import duration, event_line
        if self.mode == "tty":
            self._bars(event, info, duration)
        line = event_line(event, info)
        if line is not None:
            self._write(line)
        if event in ("stage_end", "epoch_end") and self.bar is not None:
            self.bar.close()
            self.bar = None

    def _bars(self, event: str, info: dict, duration) -> None:
        from tqdm import tqdm
        if event == "lines":
            if self.bar is None:
                self.bar = _bar(desc={"read": "reading", "vocabulary": "counting", "featurize": "featurizing"}
                                .get(info["stage"], info["stage"]), unit=" texts")
            self.bar.update(info["lines"] - self.bar.n)
        elif event == "epoch_start":
            if self.bar is not None:
                self.bar.close()
            if self.t_loop is None:
                import time
                self.t_loop, self.step0 = time.perf_counter(), info["step"]
            self.total_steps, self.step = info["total_steps"], info["step"]
            self.bar = _bar(total=info["batches"], initial=info["done"], desc=f"epoch {info['epoch']}/{info['epochs']}",
                            unit="batch")
        elif event == "batch" and self.bar is not None:
            self.bar.update(1)
            self.step += 1
            if self.bar.n % 20 == 0:
                import time
                rate = (self.step - self.step0) / max(time.perf_counter() - self.t_loop, 1e-9)
                eta = (self.total_steps - self.step) / rate if rate > 0 else 0.0
                self.bar.set_postfix_str(f"loss {info['loss']:.4f}, run ETA {duration(eta)} at most")


def _bar(**kw):
    """A tqdm bar on stderr that disappears when done; 80 × 24 when the terminal does not say
    its size (a bare pty reports 0 × 0, and tqdm would draw nothing)."""
    from tqdm import tqdm
    try:
        wide = os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        wide = False
    sizes = {} if wide else {"ncols": 80, "nrows": 24}
    return tqdm(file=sys.stderr, leave=False, dynamic_ncols=wide, **sizes, **kw)


def _isatty(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):
        return False


LOG_FORMAT = typer.Option("text", "--log-format", metavar="text|json", help="text (bars on a terminal, plain lines elsewhere) or json (JSON Lines on stderr).")


def _reporter(quiet: bool, log_format: str) -> _Reporter:
    if log_format not in ("text", "json"):
        raise ConfigError(f"--log-format must be text or json; got {log_format}")
    return _Reporter(quiet, log_format)


def _version(value: bool):
    if value:
        print(f"nlclf {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                              help="Print the version and exit.")):
    pass


def _examples(*lines: str) -> str:
    """An --help epilog: real commands, kept on their own lines."""
    return "\b\nExamples:\n" + "\n".join(f"  {l}" for l in lines)


class _StopOnSignal:
    """Ctrl-C or SIGTERM (kill, systemd, Slurm, docker stop) during the training loop asks it to
    stop after the current batch: it then saves its state for --resume and exits 130 (Ctrl-C) or
    143 (SIGTERM). A second signal, or one outside the loop (reading, featurizing), stops at once."""

    def __init__(self):
        from .training import StopRequest
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


CONFIG_ARG = typer.Argument(None, metavar="[CONFIG]", help="YAML config file (optional: --train FILE and the defaults do without one).")
TRAIN_FILE = typer.Option(None, "--train", metavar="FILE", help="Training file, relative to the working directory (overrides data.train).")
DEV_FILE = typer.Option(None, "--dev", metavar="FILE", help="Dev file (overrides data.dev).")
TEST_FILE = typer.Option(None, "--test", metavar="FILE", help="Test file (overrides data.test).")


@app.command(epilog=_examples(
    "nlclf train --train train.tsv --dev dev.tsv --out runs/mine",
    "nlclf train configs/sst5.yaml --data-root ../shared/data --set train.lr=0.001"))
def train(config: Optional[str] = CONFIG_ARG,
          train_file: Optional[str] = TRAIN_FILE,
          dev_file: Optional[str] = DEV_FILE,
          test_file: Optional[str] = TEST_FILE,
          out: Optional[str] = typer.Option(None, "--out", "-o", metavar="DIR", help="Output folder (default: output.dir)."),
          set_: List[str] = SET,
          data_root: Optional[str] = DATA_ROOT,
          resume: Optional[str] = typer.Option(None, "--resume", metavar="DIR", help="Continue the unfinished run saved in this output folder."),
          force: bool = typer.Option(False, "--force", metavar="", help="With --resume: continue even though a data file changed since the interrupted run."),
          overwrite: bool = OVERWRITE,
          quiet: bool = QUIET,
          log_format: str = LOG_FORMAT):
    """Train a classifier: writes the checkpoint, the effective config and reports into the output folder."""
    from . import config as config_mod
    with _errors():
        report = _reporter(quiet, log_format)
        cfg = config_mod.assemble(config, set_, train_file, dev_file, test_file)
        if resume and out and Path(out) != Path(resume):
            raise ConfigError(f"--out {out} and --resume {resume} name different folders")
        if force and not resume:
            raise ConfigError("--force goes with --resume (continue on changed data)")
        from .api import train as run_train
        where = resume or out or cfg.output.dir
        with _StopOnSignal() as stop:
            try:
                r = run_train(cfg, where, data_root=data_root, overwrite=overwrite, load_model=False,
                              on_progress=report, log=report.note, resume=bool(resume), should_stop=stop,
                              force=force, command=list(sys.argv)).report
            except Interrupted as e:
                raise Interrupted(f"{e}; the state is saved: continue with --resume {where}", e.exit_code) from None
        from .report import train_summary
        _emit(train_summary(r))


FAIL_UNDER_METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")
EXIT_BELOW_BAR = 7              # --fail-under: a metric below its bar (not a crash)

MODEL_ARG = typer.Argument(..., metavar="MODEL", help="Model folder written by nlclf train.")
DATA_ARG = typer.Argument(..., metavar="DATA", help="Labelled data: label<TAB>text lines, CSV, JSON Lines, fastText or a folder per label.")


class Format(str, Enum):
    text = "text"
    tsv = "tsv"
    jsonl = "jsonl"


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
    if m.get("multi_label"):                        # several labels a text: accuracy is the subset accuracy
        return m["subset_accuracy" if name == "accuracy" else name]
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


REPORT = typer.Option(None, "--report", metavar="FILE", help="Also write the results as JSON to FILE ('-': to stdout, instead of the table).")


@app.command("eval", epilog=_examples(
    "nlclf eval runs/sst5 ../shared/data/sst5/test.tsv --top-k 2",
    "nlclf eval runs/sst5 test.tsv --fail-under accuracy=0.40 --report -"))
def eval_(model: str = MODEL_ARG,
          data: str = DATA_ARG,
          report: Optional[str] = REPORT,
          errors: int = typer.Option(0, "--errors", min=0, max=100000, metavar="K", help="Show the K misclassified texts with the highest probability."),
          top_k: int = typer.Option(1, "--top-k", min=1, max=1000, metavar="K", help="Also top-K accuracy, and P@K and R@K as fastText's test prints them."),
          fail_under: List[str] = typer.Option([], "--fail-under", metavar="METRIC=VALUE", help=f"Exit {EXIT_BELOW_BAR} when the metric is below VALUE (accuracy, macro_f1, micro_f1, weighted_f1; repeatable)."),
          plots: Optional[str] = typer.Option(None, "--plots", metavar="DIR", help="Folder for a reliability diagram and a confusion-matrix heat map (needs the plot extra)."),
          bins: int = typer.Option(15, "--bins", metavar="N", min=2, max=1000, help="Bins of the calibration error.")):
    """Evaluate a model: accuracy, macro-F1, per-class table, confusion matrix, calibration error."""
    from .evaluate import run_eval
    from .report import eval_text
    gates = [_fail_under(f) for f in fail_under]
    with _errors():
        m = run_eval(model, data, errors, bins, plots, top_k)
        if report:
            _write_report(report, m)
        if report != "-":
            _emit(eval_text(m))
        if plots and not m["pictures"]:
            _err("nlclf: no pictures: install the plotting extra (pip install 'nlclf[plot]')")
        failed = [(n, t, _metric_value(m, n)) for n, t in gates if _metric_value(m, n) < t]
        for n, t, v in failed:
            _err(f"error: {n} {v:.4f} is below --fail-under {t}")
        if failed:
            raise typer.Exit(EXIT_BELOW_BAR)


@app.command(epilog=_examples("nlclf compare runs/baseline runs/new ../shared/data/sst5/test.tsv"))
def compare(model_a: str = typer.Argument(..., metavar="MODEL_A", help="First model folder (A)."),
            model_b: str = typer.Argument(..., metavar="MODEL_B", help="Second model folder (B)."),
            data: str = DATA_ARG,
            resamples: int = typer.Option(10000, "--resamples", metavar="N", min=100, max=1_000_000, help="Paired bootstrap resamples."),
            seed: int = typer.Option(0, "--seed", metavar="N", min=0, help="Seed of the bootstrap."),
            report: Optional[str] = REPORT):
    """Two models side by side on the same examples, with McNemar's test and a paired bootstrap."""
    from .evaluate import run_compare
    from .report import compare_text
    with _errors():
        r = run_compare(model_a, model_b, data, resamples, seed)
        for note in r.get("notes", []):
            _err(f"nlclf: {note}")
        if report:
            _write_report(report, r)
        if report != "-":
            _emit(compare_text(r))


@app.command(epilog=_examples(
    "nlclf compress runs/sst5 --out runs/sst5-small",
    "nlclf compress runs/sst5 --out runs/sst5-4mb --max-size 4MB --check ../shared/data/sst5/test.tsv --agreement 0.98"))
def compress(model: str = MODEL_ARG,
             out: str = typer.Option(..., "--out", metavar="DIR", help="Folder for the compressed model (new, empty, or one nlclf wrote, with --overwrite)."),
             max_size: str = typer.Option("8MB", "--max-size", metavar="SIZE", help="Largest size of the two model files together: 8MB (10^6 bytes), 8MiB, 500kB, or bytes."),
             bits: int = typer.Option(8, "--bits", metavar="N", help="Bits a stored first-layer value (8)."),
             rank: int = typer.Option(0, "--rank", metavar="R", min=0, max=1_000_000, help="Width of the first layer's low-rank basis (0: the widest that fits; at least 8 unless given)."),
             agreement: float = typer.Option(0.99, "--agreement", metavar="P", min=0.0, max=1.0, help=f"Refuse (exit {EXIT_BELOW_BAR}, nothing written) when the compressed model predicts the original's label on less than this share of the check texts; 0: no check."),
             check: Optional[str] = typer.Option(None, "--check", metavar="FILE", help="Texts (labelled or not) to measure the agreement on; default: the run's dev file, else its test file."),
             overwrite: bool = OVERWRITE):
    """Shrink a bag-of-words model to at most --max-size: int8 first-layer rows in a low-rank basis, float16 dense layers."""
    from .pipeline import run_compress
    from .report import compress_text
    with _errors():
        _emit(compress_text(run_compress(model, out, max_size, bits, agreement, check, overwrite, rank)))


@app.command(epilog=_examples("nlclf inspect runs/sst5 --data new.txt", "nlclf inspect runs/embed --word good --word bad"))
def inspect(model: str = MODEL_ARG,
            data: Optional[str] = typer.Option(None, "--data", metavar="FILE", help="Text file (one text a line) for the unknown-word rate."),
            word: List[str] = typer.Option([], "--word", "-w", metavar="WORD", help="Show the nearest neighbours of this word in the embedding table (repeatable; embedding models)."),
            top: int = typer.Option(10, "--top", metavar="N", min=1, max=10000, help="How many features, unknown words and neighbours to list."),
            as_json: bool = typer.Option(False, "--json", metavar="", help="Print JSON instead of text.")):
    """What a model is: shape, parameters, vocabulary, the features most tied to each label,
    the unknown-word rate on a file, nearest neighbours in the embedding table."""
    from .inspection import run_inspect
    from .report import inspect_text
    with _errors():
        r = run_inspect(model, data, word, top)
        _emit(json.dumps(r, ensure_ascii=False, indent=2) + "\n" if as_json else inspect_text(r, data))


@app.command(epilog=_examples(
    "cat new.txt | nlclf predict runs/sst5 --proba",
    "nlclf predict runs/sst5 items.jsonl --id-field id --format jsonl --top-k -1",
    "nlclf predict runs/demo --explain 3 --format tsv < texts.txt",
    "nlclf predict runs/sst5 day1.txt day2.txt --out-dir preds/ --scheduler tcp://10.0.0.5:8786"))
def predict(model: str = MODEL_ARG,
            files: List[str] = typer.Argument(None, metavar="[FILE]...", help="Text files, one text a line (or JSON Lines, CSV, a folder, as the model's data.format says); '-' or none: stdin."),
            proba: bool = typer.Option(False, "--proba", metavar="", help="Add the probability of each label."),
            top_k: Optional[int] = typer.Option(None, "--top-k", min=-1, max=100000, metavar="K", help="The K most probable labels; -1: all, with their probabilities. Default 1 (several labels a text: every label at or above the model's thresholds)."),
            threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, metavar="P", help="Only labels with a probability of at least P (all such labels unless --top-k is given; possibly none, or several labels a text: the top one unless --allow-empty)."),
            allow_empty: bool = typer.Option(False, "--allow-empty", metavar="", help="Several labels a text: a text no label reaches the threshold of gets none (an empty line), not its most probable label."),
            fmt: Format = typer.Option(Format.text, "--format", help="Output format."),
            with_text: bool = typer.Option(False, "--with-text", metavar="", help="Echo each input text after its labels (tsv, jsonl)."),
            id_field: Optional[str] = typer.Option(None, "--id-field", metavar="FIELD", help="Echo this field of JSON Lines or CSV input before the labels (tsv, jsonl)."),
            batch_size: int = typer.Option(1024, "--batch-size", metavar="N", min=1, max=1_000_000, help="Texts per batch."),
            explain: int = typer.Option(0, "--explain", min=0, max=1000, metavar="K", help="Show the K tokens/n-grams that pushed each prediction most toward and against its label (gradient × input)."),
            workers: int = typer.Option(0, "--workers", metavar="N", min=0, max=256, help="Processes computing batches (0: one per core; 1: this process only). The output does not depend on it."),
            out_dir: Optional[str] = typer.Option(None, "--out-dir", metavar="DIR", help="Write one file per input FILE into DIR (reviews.txt -> DIR/reviews.pred; .pred.tsv, .pred.jsonl), each atomically, instead of stdout."),
            scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="tcp://HOST:PORT", help="With --out-dir: predict on a Dask cluster, whose workers read the FILEs and the model at the same paths (trusted: Dask unpickles what the scheduler sends)."),
            overwrite: bool = OVERWRITE):
    """Label each input line: one result a line on stdout, in input order, streamed."""
    from .digest import prefetch
    prefetch(model)                     # the model's checksum, hashed on another core while the rest is imported
    from .predict import Request, is_several, predict_files, run_predict
    from .report import prediction_lines
    fmt = fmt.value
    with _errors():
        if out_dir is None and (scheduler or overwrite):
            raise ConfigError(f"{'--scheduler' if scheduler else '--overwrite'} goes with --out-dir DIR "
                              f"(predictions into files); on stdout, use --workers")
        if out_dir is not None and not files:
            raise ConfigError("--out-dir writes one file per input FILE: name the files to predict")
        for f in files or []:
            if f.lower() in ("true", "false", "yes", "no", "on", "off") and not Path(f).exists():
                raise ConfigError(f"{f}: not a file; boolean options are flags and take no value "
                                  f"(write --proba, not --proba {f})")
        if with_text and fmt == "text":
            raise ConfigError("--with-text needs --format tsv or jsonl (a text may hold spaces)")
        if top_k == 0:
            raise ConfigError("--top-k takes K >= 1, or -1 for all labels")
        if is_several(model):           # several labels a text: the model's thresholds unless --top-k/--threshold
            k = top_k
            show_proba, many = proba or (top_k is not None and top_k < 0) or threshold is not None, True
        else:
            top_k = 1 if top_k is None else top_k
            k = top_k if top_k != 1 or threshold is None else -1
            show_proba, many = proba or top_k < 0 or threshold is not None, k != 1 or threshold is not None
        if out_dir is not None:
            req = Request(top_k=k, threshold=threshold, allow_empty=allow_empty, explain_k=explain, id_field=id_field,
                          with_text=with_text, batch_size=batch_size, fmt=fmt, proba=show_proba, many=many)
            r = predict_files(model, files, out_dir, req, overwrite, workers, scheduler)
            total = sum(f["bytes"] for f in r["files"])
            _err(f"wrote {len(r['files'])} file{'s' if len(r['files']) != 1 else ''} into {out_dir} "
                 f"({total:,} bytes) in {r['seconds']:.1f} s")
            return
        for batch in run_predict(model, files or ["-"], k, batch_size, explain_k=explain, workers=workers,
                                 threshold=threshold, id_field=id_field, with_text=with_text,
                                 allow_empty=allow_empty):
            _emit(prediction_lines(batch, fmt, show_proba, many, bool(explain)))


@app.command(epilog=_examples(
    "nlclf serve runs/sst5",
    "curl -s localhost:8000/predict -d '{\"texts\": [\"a gripping film\"], \"k\": 2}'",
    "nlclf serve runs/sst5 --host 0.0.0.0 --port 8080 --workers 2 --quiet"))
def serve(model: str = MODEL_ARG,
          host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on; the default is loopback only (this machine). 0.0.0.0: every interface."),
          port: int = typer.Option(8000, "--port", "-p", metavar="PORT", min=0, max=65535, help="TCP port (0: any free one, printed at start)."),
          workers: int = typer.Option(1, "--workers", metavar="N", min=1, max=256, help="Server processes sharing the port (and the model's pages)."),
          max_texts: int = typer.Option(1000, "--max-texts", metavar="N", min=1, max=10_000_000, help="Most texts in one request (more: 413)."),
          max_bytes: int = typer.Option(1 << 20, "--max-bytes", metavar="BYTES", min=64, max=1 << 31, help="Largest request body (larger: 413)."),
          drain_seconds: float = typer.Option(30.0, "--drain-seconds", metavar="S", min=0.0, help="On SIGTERM or Ctrl-C, how long the requests in flight may take to finish."),
          quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No line per request on stderr.")):
    """Serve a model over HTTP: POST /predict, GET /health, /labels, /metadata, POST /reload, docs at /docs."""
    from .serve import Settings, serve as run_serve
    with _errors():
        code = run_serve(Settings(model, host, port, workers, max_texts, max_bytes, quiet, drain_seconds))
    raise typer.Exit(code)


CV_EXAMPLES = _examples("nlclf cv --train train.tsv --folds 10", "nlclf cv configs/trec.yaml --folds 5 --seeds 2 --data-root ../shared/data")


@app.command(epilog=CV_EXAMPLES)
def cv(config: Optional[str] = typer.Argument(None, metavar="[CONFIG]", help="YAML config file (its data.train is split into folds); optional with --train."),
       train_file: Optional[str] = TRAIN_FILE,
       folds: int = typer.Option(10, "--folds", "-k", metavar="N", min=2, max=1000, help="Number of stratified folds."),
       seeds: int = typer.Option(1, "--seeds", metavar="N", min=1, max=1000, help="Repeat with this many seeds (seed, seed+1, ...)."),
       jobs: Optional[int] = JOBS,
       out: str = typer.Option("runs/cv", "--out", "-o", metavar="DIR", help="Folder for cv.json and cv.md."),
       set_: List[str] = SET,
       data_root: Optional[str] = DATA_ROOT,
       scheduler: Optional[str] = SCHEDULER,
       overwrite: bool = OVERWRITE,
       quiet: bool = QUIET,
       log_format: str = LOG_FORMAT):
    """Stratified K-fold cross-validation: accuracy and macro-F1 per fold, mean ± std (several labels a text: shuffled folds, micro-F1, macro-F1 and P@1)."""
    from . import config as config_mod
    from .report import cv_markdown
    from .search import cv_into
    with _errors():
        report = _reporter(quiet, log_format)
        cfg = config_mod.assemble(config, set_, train_file)
        r = cv_into(out, overwrite, cfg, folds, seeds, jobs, data_root, scheduler, report.note)
        _emit(cv_markdown(r))
        if r["failed"]:
            _err(f"error: {r['failed']} of {r['planned']} fold runs failed (see {Path(out) / 'cv.md'})")
            raise typer.Exit(1)


def _duration(text: Optional[str]) -> Optional[float]:
    """'90s', '10m', '1h30m', '2h' or plain seconds -> seconds."""
    if text is None:
        return None
    import re
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", t)
    if not t or not parts or not any(parts.groups()):
        raise ConfigError(f"--time-budget takes a duration like 90s, 10m or 1h30m; got {text}")
    h, m, sec = (int(g) if g else 0 for g in parts.groups())
    return float(h * 3600 + m * 60 + sec)


@app.command(epilog=_examples(
    "nlclf tune --train train.tsv --dev dev.tsv --space configs/spaces/bow.yaml --trials 40 --time-budget 30m",
    "nlclf tune configs/trec.yaml --space space.yaml --cv 5 --data-root ../shared/data"))
def tune(config: Optional[str] = typer.Argument(None, metavar="[CONFIG]", help="YAML config file: the starting point of the search; optional with --train."),
         train_file: Optional[str] = TRAIN_FILE,
         dev_file: Optional[str] = DEV_FILE,
         space: str = typer.Option(..., "--space", metavar="SPACE", help="YAML search space: dotted key -> list, or {uniform|loguniform|int|logint: [lo, hi]}."),
         trials: int = typer.Option(20, "--trials", "-n", metavar="N", min=1, max=100000, help="Random-search trials (ignored for a grid)."),
         time_budget: Optional[str] = typer.Option(None, "--time-budget", metavar="DURATION", help="Start no trial once this long has passed (90s, 10m, 1h30m); the running ones finish."),
         jobs: Optional[int] = JOBS,
         cv_folds: int = typer.Option(0, "--cv", min=0, max=1000, metavar="K", help="Score each trial by K-fold cross-validation (the same folds for every trial) instead of the dev set."),
         metric: Optional[str] = typer.Option(None, "--metric", metavar="accuracy|macro_f1", help="accuracy or macro_f1 (default: train.metric)."),
         halving: bool = typer.Option(False, "--halving", metavar="", help="Successive halving: weak trials stop early (by epochs)."),
         scheduler: Optional[str] = SCHEDULER,
         out: str = typer.Option("runs/tune", "--out", "-o", metavar="DIR", help="Folder for leaderboard.md/.json and best.yaml."),
         resume: bool = typer.Option(False, "--resume", metavar="", help="Continue the interrupted search saved in --out (same config, space and options)."),
         set_: List[str] = SET,
         data_root: Optional[str] = DATA_ROOT,
         overwrite: bool = OVERWRITE,
         quiet: bool = QUIET,
         log_format: str = LOG_FORMAT):
    """Hyperparameter search (random, or grid when the space is all lists); writes the best config."""
    from . import config as config_mod
    from .report import tune_markdown
    from .search import load_space, tune_into, validate_space
    if metric not in (None, "accuracy", "macro_f1"):
        _err(f"error: --metric must be accuracy or macro_f1; got {metric}")
        raise typer.Exit(2)
    with _errors():
        report = _reporter(quiet, log_format)
        budget = _duration(time_budget)
        if resume and overwrite:
            raise ConfigError("--resume continues the search in --out; --overwrite would start it again: choose one")
        cfg = config_mod.assemble(config, set_, train_file, dev_file)
        sp = load_space(space)
        validate_space(cfg, sp, space)
        r = tune_into(out, overwrite, resume, cfg, sp, trials, jobs, cv_folds, halving, scheduler, data_root,
                      metric, report.note, budget)
        _emit(tune_markdown(r))
        if not r["best_config"]:
            _err("error: every trial failed (see the leaderboard)")
            raise typer.Exit(1)


config_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                         help="Write a starter config, check one, or show it with every default filled in.")
app.add_typer(config_app, name="config")


@config_app.command("init", epilog=_examples("nlclf config init > my.yaml", "nlclf config init --kind embed_mean > embed.yaml"))
def config_init(kind: str = typer.Option("bow", "--kind", metavar="bow|embed_mean|embed_concat", help="bow, embed_mean or embed_concat: the defaults of that kind."),
                train_file: str = typer.Option("train.tsv", "--train", metavar="FILE", help="data.train to write."),
                dev_file: str = typer.Option("dev.tsv", "--dev", metavar="FILE", help="data.dev to write ('' for none)."),
                test_file: str = typer.Option("", "--test", metavar="FILE", help="data.test to write.")):
    """Print a commented starter config: every key, its default and one line on what it does."""
    from . import config as config_mod
    from .nn.mlp import INPUT_KINDS
    with _errors():
        if kind not in INPUT_KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(INPUT_KINDS)}; got {kind}")
        _emit(config_mod.starter(kind, train_file, dev_file, test_file))


@config_app.command("show", epilog=_examples("nlclf config show configs/sst5.yaml --set train.lr=0.001"))
def config_show(config: str = typer.Argument(..., metavar="CONFIG", help="YAML config file."),
                set_: List[str] = SET):
    """Print the effective config (file + --set overrides + defaults) as YAML."""
    from . import config as config_mod
    with _errors():
        _emit(config_mod.dump(config_mod.load(config, set_)))


@config_app.command("check", epilog=_examples("nlclf config check configs/sst5.yaml"))
def config_check(config: str = typer.Argument(..., metavar="CONFIG", help="YAML config file."),
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

"""Cross-validation and hyperparameter search, run in parallel processes or on a Dask cluster.

Each unit of work (a fold, a trial) is a top-level function of plain arguments, so it can be
shipped to a worker process or to a ``distributed`` worker unchanged (cluster.py runs them).
Nothing here prints or writes files; the CLI writes the reports this module returns.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import traceback
from pathlib import Path

import numpy as np
import yaml

from . import config as config_mod
from . import data, parallel, report, rundir, runtime
from .cluster import executor
from .config import Config
from .errors import ConfigError, DataError, Interrupted, NlclfError, OutputError
from .evaluate import score
from .pipeline import data_root, fit_lists, several_label_sets, with_root

HALVING_ETA = 3


def _eta(t0: float, done: int, total: int) -> str:
    """'; ETA 3m10s' from the pace so far (the tasks run side by side, so the pace is theirs)."""
    from .report import duration
    if done <= 0 or done >= total:
        return ""
    return f"; ETA {duration((time.perf_counter() - t0) / done * (total - done))}"


def _error_text(e: BaseException) -> str:
    if isinstance(e, (NlclfError, parallel.WorkerLost)):
        return str(e)
    return "".join(traceback.format_exception_only(type(e), e)).strip()


# --- cross-validation -----------------------------------------------------------------

def several(labels: list) -> bool:
    """Whether ``labels`` are label tuples (several labels a text: data.read_multilabelled)."""
    return bool(labels) and isinstance(labels[0], tuple)


def folds(labels: list, k: int, seed: int) -> list:
    """Stratified K folds as (train indices, test indices); the same seed gives the same folds.
    Label tuples (several labels a text) have no classes to stratify by: shuffled K folds."""
    if several(labels):
        from sklearn.model_selection import KFold
        if k < 2 or len(labels) < k:
            raise DataError(f"cannot make {k} folds of {len(labels)} examples")
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels))))
    from sklearn.model_selection import StratifiedKFold
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    if k < 2 or counts.min() < k:
        raise DataError(f"cannot make {k} stratified folds: the smallest class has {counts.min()} examples")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(labels)), labels))


def _subset(pair: tuple, idx) -> tuple:
    labels, texts = pair
    return [labels[i] for i in idx], [texts[i] for i in idx]


def fold_split(examples: tuple, train_idx, test_idx, dev_fraction: float, seed: int):
    """(train, dev, test) for one fold: dev is a stratified share of the fold's training part."""
    train = _subset(examples, train_idx)
    is_dev = dev_split(train[0], dev_fraction, seed)
    return (_subset(train, np.flatnonzero(~is_dev)), _subset(train, np.flatnonzero(is_dev)),
            _subset(examples, test_idx))


def dev_split(labels: list, fraction: float, seed: int):
    """data.stratified_split; for label tuples a seeded random share (no classes to stratify by)."""
    if not several(labels):
        return data.stratified_split(labels, fraction, seed)
    n = len(labels)
    if n < 2:
        raise DataError("need at least 2 training examples to split off a dev set")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:max(1, int(round(fraction * n)))]] = True
    return mask


def headline(labels: list) -> str:
    """The metric a cross-validation reports first: accuracy, or micro-F1 for several labels a text."""
    return "micro_f1" if several(labels) else "accuracy"


def run_fold(examples: tuple, cfg_dict: dict, train_idx, test_idx, root) -> dict:
    """Train on one fold, score its held-out part: accuracy (micro-F1 and P@1 for several labels
    a text), macro-F1, best epoch, seconds."""
    t0 = time.perf_counter()
    cfg = config_mod.from_dict(cfg_dict)
    train, dev, test = fold_split(examples, train_idx, test_idx, cfg.data.dev_fraction, cfg.seed)
    model, result = fit_lists(cfg, train, dev, root)
    m = score(model, *test)
    keys = ("micro_f1", "macro_f1", "p_at_1") if model.several else ("accuracy", "macro_f1")
    return dict({k: m[k] for k in keys}, best_epoch=result.best_epoch, dev_score=result.best_score,
                seconds=time.perf_counter() - t0)


def _mean_std(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def _training_examples(cfg: Config, root) -> tuple:
    path = data.resolve(cfg.data.train, data_root(root, cfg))
    if not path.exists():
        raise DataError(f"{path}: file not found (paths in the config are relative to the data root "
                        f"{data_root(root, cfg)}; set --data-root or NLCLF_DATA_ROOT)")
    if several_label_sets(cfg, path, lambda msg: None) is not None:
        return data.read_multilabelled(path, cfg.data)                   # (label tuples, texts)
    return data.read_labelled(path, cfg.data)


def _cv_summary(cfg: Config, k: int, seeds: int, n: int, rows: list, t0: float, planned: int,
                metric: str = "accuracy") -> dict:
    """The report of a cross-validation; ``metric``: its headline (accuracy, or micro_f1 for
    several labels a text, with P@1 beside it), mean ± std over runs and per seed."""
    ok = [r for r in rows if "error" not in r]
    per_seed: dict = {}
    for r in ok:
        per_seed.setdefault(r["seed"], []).append(r[metric])
    out = {"folds": k, "seeds": [cfg.seed + s for s in range(seeds)], "n": n,
           "runs": sorted(rows, key=lambda r: (r["seed"], r["fold"])), "planned": planned,
           "finished": len(rows), "failed": len(rows) - len(ok), "metric": metric}
    for key in (metric, "macro_f1") + (("p_at_1",) if metric == "micro_f1" else ()):
        out[key] = _mean_std([r[key] for r in ok])
    out[f"{metric}_per_seed"] = {str(s): float(np.mean(v)) for s, v in per_seed.items()}
    out.update(seconds=time.perf_counter() - t0, config=config_mod.to_dict(cfg))
    return out


def run_cv(cfg: Config, k: int, seeds: int = 1, jobs: int | None = None, root=None,
           scheduler: str | None = None, log=lambda msg: None, on_update=None) -> dict:
    """K-fold stratified cross-validation of ``cfg`` on its training file, for ``seeds`` seeds
    (cfg.seed, cfg.seed + 1, ...: each seed its own folds and initialisation). Folds run in
    parallel; ``on_update(report so far)`` is called as each one finishes. A fold that fails
    (its error, or its worker process lost) is recorded with the error; the others go on."""
    cfg = with_root(cfg, data_root(root, cfg))
    pool = executor(jobs, scheduler)
    try:
        examples = _training_examples(cfg, root)
    except BaseException:
        pool.close()
        raise
    if cfg.data.dev or cfg.data.test:
        log("cross-validation uses data.train only; each fold's dev set is split off its training part")
    metric = headline(examples[0])
    t0 = time.perf_counter()
    infos, tasks = [], []
    for s in range(seeds):
        seed = cfg.seed + s
        cfg_dict = dict(config_mod.to_dict(cfg), seed=seed)
        for f, (tr, te) in enumerate(folds(examples[0], k, seed), start=1):
            infos.append({"seed": seed, "fold": f, "n_test": len(te)})
            tasks.append((cfg_dict, tr, te, root))
    rows: list = []
    try:
        for i, res in pool.results(run_fold, examples, tasks):
            if isinstance(res, BaseException):
                row = dict(infos[i], error=_error_text(res))
            else:
                row = dict(infos[i], **res)
            rows.append(row)
            ok = [x[metric] for x in rows if "error" not in x]
            what = (f"failed: {row['error'].splitlines()[0]}" if "error" in row else
                    f"{metric.replace('_', '-').replace('f1', 'F1')} {row[metric]:.4f}")
            log(f"seed {row['seed']} fold {row['fold']} [{len(rows)}/{len(tasks)}]: {what}; mean so far "
                + (f"{np.mean(ok):.4f}" if ok else "none") + _eta(t0, len(rows), len(tasks)))
            if on_update is not None:
                on_update(_cv_summary(cfg, k, seeds, len(examples[0]), rows, t0, len(tasks), metric))
    finally:
        pool.close()
    return _cv_summary(cfg, k, seeds, len(examples[0]), rows, t0, len(tasks), metric)


CV_WRITES = ("cv.json", "cv.md")
TUNE_WRITES = ("leaderboard.json", "leaderboard.md", "best.yaml")


def _interrupted(e: KeyboardInterrupt, what: str) -> Interrupted:
    return Interrupted(what, getattr(e, "exit_code", 130))


def cv_into(out, overwrite: bool, cfg: Config, k: int, seeds: int = 1, jobs: int | None = None, root=None,
            scheduler: str | None = None, log=lambda msg: None) -> dict:
    """run_cv, writing cv.json and cv.md into the output folder ``out`` as each fold finishes
    (so an interruption keeps every finished fold); returns the report."""
    folder = rundir.RunFolder.claim(out, overwrite, CV_WRITES)
    wrote = []

    def write(r):
        with runtime.signals_deferred():
            folder.write("cv.json", (json.dumps(r, indent=2) + "\n").encode())
            folder.write("cv.md", report.cv_markdown(r).encode())
            wrote.append(r)

    try:
        r = run_cv(cfg, k, seeds, jobs, root, scheduler, log, write)
    except KeyboardInterrupt as e:
        done = wrote[-1]["finished"] if wrote else 0
        folder.release(failed=not wrote)
        raise _interrupted(e, f"interrupted: {done} fold run(s) finished" +
                           (f", saved in {Path(out) / 'cv.md'}" if wrote else "")) from None
    except BaseException:
        folder.release(failed=not wrote)
        raise
    write(r)
    folder.release()
    return r


# --- hyperparameter search ----------------------------------------------------------

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "logint")


def load_space(path) -> dict:
    """A search space: dotted config key -> list of choices, or {DIST: [low, high]} / {choice: [...]}."""
    path = Path(path)
    raw, _ = config_mod.read_yaml(config_mod.read_small_text(path, "search space"), str(path))
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: the search space must be a mapping of dotted config keys to ranges")
    space, problems = {}, []
    for key, spec in raw.items():
        if isinstance(spec, list):
            spec = {"choice": spec}
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
            problems.append(f"{path}: {key}: must be a list of choices or one of "
                            f"{{{', '.join(DISTRIBUTIONS)}}}: [low, high]; got {spec!r}")
            continue
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            ok = isinstance(args, list) and len(args) > 0
        else:
            ok = (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args)
                  and args[0] <= args[1] and (kind not in ("loguniform", "logint") or args[0] > 0))
        if not ok:
            problems.append(f"{path}: {key}: {kind} needs {'a non-empty list' if kind == 'choice' else '[low, high] with low <= high' + (' and low > 0' if kind.startswith('log') else '')}; got {args!r}")
            continue
        space[str(key)] = (kind, args)
    if problems:
        raise ConfigError("\n".join(problems))
    return space


def validate_space(cfg: Config, space: dict, source: str = "search space") -> None:
    """Every key of the space must be a config key, and its choices or bounds valid values."""
    probes = []
    for key, (kind, args) in space.items():
        values = args if kind == "choice" else [args[0], args[1]]
        if kind in ("int", "logint"):
            values = [int(v) for v in values]
        probes.extend({key: v} for v in values)
    for probe in probes:
        try:
            trial_config(cfg, probe, cfg.seed)
        except ConfigError as e:
            raise ConfigError(str(e).replace("--set ", f"{source}: ")) from None


def sample(space: dict, rng: np.random.Generator) -> dict:
    out = {}
    for key, (kind, args) in space.items():
        if kind == "choice":
            v = args[int(rng.integers(len(args)))]
        elif kind == "uniform":
            v = float(rng.uniform(args[0], args[1]))
        elif kind == "loguniform":
            v = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
        elif kind == "int":
            v = int(rng.integers(int(args[0]), int(args[1]) + 1))
        else:
            v = int(round(math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))))
        out[key] = v
    return out


def grid(space: dict) -> list | None:
    """Every combination, when the space is all lists of choices; otherwise None."""
    if not all(kind == "choice" for kind, _ in space.values()):
        return None
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k][1] for k in keys))]


def trial_config(cfg: Config, settings: dict, seed: int, epochs: int | None = None) -> Config:
    """cfg with a trial's settings and seed applied, validated like --set overrides."""
    raw = config_mod.to_dict(cfg)
    overrides = [(k, v) for k, v in settings.items()] + [("seed", seed)]
    if epochs:
        overrides.append(("train.epochs", epochs))
    return config_mod.load_text(yaml.safe_dump(raw), "<search>", overrides)


def run_trial(examples: tuple, cfg_dict: dict, cv: int, root, fold_seed: int = 0) -> dict:
    """One trial: the best dev score (examples = (train, dev)), or the cross-validated mean
    accuracy (cv > 1, examples = the training pairs, folds from ``fold_seed``: the same folds for
    every trial of a search). Errors are returned, not raised."""
    t0 = time.perf_counter()
    try:
        cfg = config_mod.from_dict(cfg_dict)
        if cv > 1:
            scores = []
            for tr, te in folds(examples[0], cv, fold_seed):
                train, dev, test = fold_split(examples, tr, te, cfg.data.dev_fraction, cfg.seed)
                model, _ = fit_lists(cfg, train, dev, root)
                m = score(model, *test)
                scores.append(m["micro_f1" if model.several and cfg.train.metric == "accuracy" else cfg.train.metric])
            return {"score": float(np.mean(scores)), "best_epoch": None, "seconds": time.perf_counter() - t0}
        model, result = fit_lists(cfg, examples[0], examples[1], root)
        return {"score": float(result.best_score), "best_epoch": result.best_epoch,
                "seconds": time.perf_counter() - t0}
    except Exception as e:                      # one failing trial must not end the search
        return {"score": None, "error": _error_text(e), "seconds": time.perf_counter() - t0}


def _search_examples(cfg: Config, root, cv: int):
    examples = _training_examples(cfg, root)
    if cv > 1:
        return examples
    if cfg.data.dev:
        read = data.read_multilabelled if several(examples[0]) else data.read_labelled
        dev = read(data.resolve(cfg.data.dev, data_root(root, cfg)), cfg.data)
        return examples, dev
    is_dev = dev_split(examples[0], cfg.data.dev_fraction, cfg.seed)
    return _subset(examples, np.flatnonzero(~is_dev)), _subset(examples, np.flatnonzero(is_dev))


def _rungs(max_epochs: int, n_trials: int, halving: bool) -> list:
    if not halving:
        return [max_epochs]
    n_rungs = max(1, min(int(math.log(max_epochs, HALVING_ETA)) + 1,
                         int(math.log(max(n_trials, 1), HALVING_ETA)) + 1))
    return [max(1, round(max_epochs / HALVING_ETA ** (n_rungs - 1 - r))) for r in range(n_rungs)]


def search_signature(cfg: Config, space: dict, trials: int, cv: int, halving: bool, metric) -> dict:
    """What defines a search: a resumed one must have the same."""
    plain = config_mod.to_dict(cfg)
    plain["data"] = {k: v for k, v in plain["data"].items() if k != "root"}    # the same data may move
    return {"config": plain, "space": {k: [kind, args] for k, (kind, args) in space.items()},
            "trials": trials, "cv": cv, "halving": halving, "metric": metric}


def _plan(cfg: Config, space: dict, trials: int, log) -> tuple:
    """(settings, seeds) of every trial: a grid when the space is all lists, else ``trials``
    random draws; the seeds from the search's generator, each trial validated first."""
    rng = np.random.default_rng(cfg.seed)
    combos = grid(space)
    if combos is not None:
        settings = combos
        log(f"the space is all lists: grid search over {len(combos)} combinations")
    else:
        settings = [sample(space, rng) for _ in range(trials)]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=len(settings))]
    for st, sd in zip(settings, seeds):
        trial_config(cfg, st, sd)
    return settings, seeds


def _planned(n_trials: int, rungs: list) -> int:
    """Trial runs of the whole search, rung by rung (each rung keeps a third)."""
    planned, n = 0, n_trials
    for _ in rungs:
        planned, n = planned + n, max(1, math.ceil(n / HALVING_ETA))
    return planned


class _Board:
    """The leaderboard of a search as it fills: a row per trial (its latest rung), a result per
    trial run; ``as_dict`` is what leaderboard.json holds."""

    def __init__(self, cfg: Config, settings: list, seeds: list, rungs: list, cv: int, signature: dict):
        self.cfg, self.rungs, self.cv, self.signature = cfg, rungs, cv, signature
        self.rows = [{"trial": i + 1, "settings": st, "seed": sd, "score": None, "epochs": None, "seconds": 0.0}
                     for i, (st, sd) in enumerate(zip(settings, seeds))]
        self.results: list = []
        self.t0 = time.perf_counter()

    def record(self, i: int, r: int, res) -> dict:
        """Trial i's result at rung r (an exception: a failed run, its worker maybe lost)."""
        if isinstance(res, BaseException):
            lost = isinstance(res, parallel.WorkerLost) or type(res).__name__ == "KilledWorker"
            res = {"score": None, "error": _error_text(res), "seconds": 0.0, "lost": lost}
        row = self.rows[i]
        row.update(score=res["score"], epochs=self.rungs[r], rung=r + 1, best_epoch=res.get("best_epoch"),
                   seconds=row["seconds"] + res["seconds"])
        row.pop("error", None)
        if "error" in res:
            row["error"] = res["error"]
        self.results.append(dict(res, trial=i + 1, rung=r + 1))
        return res

    def done(self, i: int, r: int) -> bool:
        return any(x["trial"] == i + 1 and x["rung"] == r + 1 for x in self.results)

    def best(self):
        return max((x for x in self.rows if x["score"] is not None), key=lambda x: x["score"], default=None)

    def line(self, i: int, res: dict, planned: int) -> str:
        """The log line of a finished trial run: its score, the best so far, an ETA."""
        best = self.best()
        what = (f"failed: {res['error'].splitlines()[0]}" if "error" in res
                else f"{res['score']:.4f} ({self.rows[i]['epochs']} epochs)")
        return (f"trial {i + 1} [{len(self.results)}/{planned}]: {what}; best so far "
                + (f"{best['score']:.4f} (trial {best['trial']})" if best else "none")
                + _eta(self.t0, len(self.results), planned))

    def survivors(self, alive: list) -> list:
        """Successive halving: the best third of the trials of a rung go on."""
        ok = sorted((i for i in alive if self.rows[i]["score"] is not None), key=lambda i: -self.rows[i]["score"])
        return ok[:max(1, math.ceil(len(alive) / HALVING_ETA))]

    def as_dict(self) -> dict:
        ordered = sorted(self.rows, key=lambda x: (x["score"] is None, -(x.get("rung") or 0),
                                                   -(x["score"] if x["score"] is not None else 0), x["trial"]))
        best = next((x for x in ordered if x["score"] is not None), None)
        best_cfg = trial_config(self.cfg, best["settings"], best["seed"]) if best else None
        return {"objective": f"{'cv' + str(self.cv) + ' mean ' if self.cv > 1 else 'dev '}{self.cfg.train.metric}",
                "trials": ordered, "best": best, "best_config": config_mod.to_dict(best_cfg) if best_cfg else None,
                "rungs": self.rungs, "seconds": time.perf_counter() - self.t0, "finished": len(self.results),
                "search": self.signature, "results": list(self.results)}


def run_tune(cfg: Config, space: dict, trials: int = 20, jobs: int | None = None, cv: int = 0,
             halving: bool = False, scheduler: str | None = None, root=None, metric: str | None = None,
             log=lambda msg: None, on_update=None, done: list | None = None,
             time_budget: float | None = None) -> dict:
    """Random (or grid) search over ``space``; returns the leaderboard and the best config.

    Trials run in parallel; ``on_update(leaderboard so far)`` is called as each one finishes. A
    trial that fails (its error, or its worker process lost) is recorded with the error and the
    search goes on. ``done``: the "results" of an earlier, interrupted run of the same search,
    which are taken as they are instead of being run again (except those whose worker was lost).
    ``time_budget`` (seconds): no trial is started once it is spent; the running ones finish.
    With ``cv``, every trial is scored on the same folds (drawn from cfg.seed)."""
    cfg = with_root(cfg, data_root(root, cfg))
    signature = search_signature(cfg, space, trials, cv, halving, metric)
    if metric:
        cfg = trial_config(cfg, {"train.metric": metric}, cfg.seed)
    settings, seeds = _plan(cfg, space, trials, log)
    pool = executor(jobs, scheduler)
    try:
        examples = _search_examples(cfg, root, cv)
    except BaseException:
        pool.close()
        raise
    rungs = _rungs(cfg.train.epochs, len(settings), halving)
    board = _Board(cfg, settings, seeds, rungs, cv, signature)
    planned = _planned(len(settings), rungs)
    previous = {(d["trial"], d["rung"]): d for d in (done or []) if not d.get("lost")}
    in_budget = (lambda: True) if time_budget is None else (lambda: time.perf_counter() - board.t0 < time_budget)
    alive = list(range(len(settings)))
    try:
        for r, epochs in enumerate(rungs):
            todo = [i for i in alive if (i + 1, r + 1) not in previous]
            for i in alive:
                if (i + 1, r + 1) in previous:
                    board.record(i, r, previous[(i + 1, r + 1)])
            if len(todo) < len(alive):
                log(f"rung {r + 1}: {len(alive) - len(todo)} trial(s) taken from the interrupted search")
            tasks = [(config_mod.to_dict(trial_config(cfg, settings[i], seeds[i], epochs)), cv, root, cfg.seed)
                     for i in todo]
            for j, res in pool.results(run_trial, examples, tasks, in_budget):
                log(board.line(todo[j], board.record(todo[j], r, res), planned))
                if on_update is not None:
                    on_update(board.as_dict())
            if not in_budget():
                skipped = [i + 1 for i in todo if not board.done(i, r)]
                if skipped:
                    log(f"time budget of {time_budget:.0f} s spent: {len(skipped)} trial(s) not started "
                        f"(trials {', '.join(map(str, skipped[:10]))}{' ...' if len(skipped) > 10 else ''})")
                break
            alive = board.survivors(alive)
    finally:
        pool.close()
    return board.as_dict()


def tune_into(out, overwrite: bool, resume: bool, cfg: Config, space: dict, trials: int = 20,
              jobs: int | None = None, cv: int = 0, halving: bool = False, scheduler: str | None = None,
              root=None, metric: str | None = None, log=lambda msg: None, time_budget: float | None = None) -> dict:
    """run_tune, rewriting leaderboard.json, leaderboard.md and best.yaml in the output folder
    ``out`` (atomically) after every trial, so an interruption keeps every finished trial;
    ``resume`` continues the interrupted search saved there."""
    done = None
    folder = rundir.RunFolder.claim(out, overwrite, TUNE_WRITES, resume)
    try:
        if resume:
            done = _saved_results(folder, search_signature(cfg, space, trials, cv, halving, metric))
            log(f"resuming the search in {out}: {len([d for d in done if not d.get('lost')])} trial run(s) done")
    except BaseException:
        folder.release()
        raise
    wrote = []

    def write(r):
        with runtime.signals_deferred():
            folder.write("leaderboard.json", (json.dumps(r, indent=2, ensure_ascii=False) + "\n").encode())
            folder.write("leaderboard.md", report.tune_markdown(r).encode())
            if r["best_config"]:
                folder.write("best.yaml", config_mod.dump(config_mod.from_dict(r["best_config"])).encode())
            wrote.append(r)

    try:
        r = run_tune(cfg, space, trials, jobs, cv, halving, scheduler, root, metric, log, write, done, time_budget)
    except KeyboardInterrupt as e:
        n = wrote[-1]["finished"] if wrote else 0
        folder.release(failed=not wrote and not resume)
        raise _interrupted(e, f"interrupted: {n} trial run(s) finished" +
                           (f" and saved in {Path(out) / 'leaderboard.md'}; continue with --resume {out}"
                            if wrote else "")) from None
    except BaseException:
        folder.release(failed=not wrote and not resume)
        raise
    write(r)
    folder.release()
    return r


def _saved_results(folder: rundir.RunFolder, signature: dict) -> list:
    path = folder.path / "leaderboard.json"
    if not folder.owns("leaderboard.json") or not path.is_file():
        raise OutputError(f"{folder.path}: no search to resume (no leaderboard.json written by nlclf tune)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise OutputError(f"{path}: damaged leaderboard ({e})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("results"), list) or "search" not in saved:
        raise OutputError(f"{path}: not a leaderboard nlclf tune can resume")
    old = saved["search"]
    diff = sorted(k for k in set(old) | set(signature) if old.get(k) != signature.get(k))
    if diff:
        raise ConfigError(f"{folder.path}: the search differs from the interrupted one ({', '.join(diff)}); "
                          f"resume with the same config, --set, --space, --trials, --cv, --halving and --metric")
    return [d for d in saved["results"] if isinstance(d, dict) and "trial" in d and "rung" in d]

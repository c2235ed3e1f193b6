"""Cross-validation and hyperparameter search, run in parallel processes or on a Dask cluster.

Each unit of work (a fold, a trial) is a top-level function of plain arguments, so it can be
shipped to a worker process or to a ``distributed`` worker unchanged. Nothing here prints or
writes files; the CLI writes the reports this module returns.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from . import config as config_mod
from . import data
from .config import Config
from .errors import ConfigError, DataError, NlclfError
from .pipeline import data_root, fit_lists, score

HALVING_ETA = 3


# --- where the work runs ---------------------------------------------------------

class _Local:
    """Worker processes on this machine (each limited to one BLAS thread)."""

    def __init__(self, jobs: int):
        self.pool = ProcessPoolExecutor(max_workers=jobs, initializer=_one_thread)

    def scatter(self, obj):
        return obj

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def close(self):
        self.pool.shutdown(cancel_futures=True)


class _Dask:
    """A Dask ``distributed`` scheduler: ``tcp://HOST:PORT``. Data files must be readable by the
    workers at the same paths (they receive the data itself, scattered once)."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--scheduler needs the 'distributed' package: pip install 'nlclf[distributed]'") from None
        try:
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise ConfigError(f"--scheduler {address}: cannot connect ({e})") from None

    def scatter(self, obj):
        return self.client.scatter(obj, broadcast=True)

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def close(self):
        self.client.close()


def _one_thread():
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:          # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def executor(jobs: int | None = None, scheduler: str | None = None):
    if scheduler:
        return _Dask(scheduler)
    return _Local(jobs or os.cpu_count() or 1)


# --- cross-validation -----------------------------------------------------------------

def folds(labels: list, k: int, seed: int) -> list:
    """Stratified K folds as (train indices, test indices); the same seed gives the same folds."""
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
    is_dev = data.stratified_split(train[0], dev_fraction, seed)
    return (_subset(train, np.flatnonzero(~is_dev)), _subset(train, np.flatnonzero(is_dev)),
            _subset(examples, test_idx))


def run_fold(cfg_dict: dict, examples: tuple, train_idx, test_idx, root) -> dict:
    """Train on one fold, score its held-out part: accuracy, macro-F1, best epoch, seconds."""
    t0 = time.perf_counter()
    cfg = config_mod.from_dict(cfg_dict)
    train, dev, test = fold_split(examples, train_idx, test_idx, cfg.data.dev_fraction, cfg.seed)
    model, result = fit_lists(cfg, train, dev, root)
    m = score(model, *test)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "best_epoch": result.best_epoch,
            "dev_score": result.best_score, "seconds": time.perf_counter() - t0}


def _mean_std(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def _training_examples(cfg: Config, root) -> tuple:
    path = data.resolve(cfg.data.train, data_root(root))
    if not path.exists():
        raise DataError(f"{path}: file not found (paths in the config are relative to the data root "
                        f"{data_root(root)}; set --data-root or NLCLF_DATA_ROOT)")
    return data.read_labelled(path, cfg.data)


def run_cv(cfg: Config, k: int, seeds: int = 1, jobs: int | None = None, root=None,
           scheduler: str | None = None, log=lambda msg: None) -> dict:
    """K-fold stratified cross-validation of ``cfg`` on its training file, for ``seeds`` seeds
    (cfg.seed, cfg.seed + 1, ...: each seed its own folds and initialisation)."""
    examples = _training_examples(cfg, root)
    if cfg.data.dev or cfg.data.test:
        log("cross-validation uses data.train only; each fold's dev set is split off its training part")
    t0 = time.perf_counter()
    pool = executor(jobs, scheduler)
    try:
        shared = pool.scatter(examples)
        runs = []
        for s in range(seeds):
            seed = cfg.seed + s
            cfg_dict = config_mod.to_dict(cfg)
            cfg_dict["seed"] = seed
            for f, (tr, te) in enumerate(folds(examples[0], k, seed), start=1):
                runs.append(({"seed": seed, "fold": f, "n_test": len(te)},
                             pool.submit(run_fold, cfg_dict, shared, tr, te, root)))
        rows = []
        for info, fut in runs:
            row = dict(info, **fut.result())
            rows.append(row)
            log(f"seed {row['seed']} fold {row['fold']}: accuracy {row['accuracy']:.4f}")
    finally:
        pool.close()
    per_seed = {}
    for r in rows:
        per_seed.setdefault(r["seed"], []).append(r["accuracy"])
    return {"folds": k, "seeds": [cfg.seed + s for s in range(seeds)], "n": len(examples[0]),
            "runs": rows,
            "accuracy": _mean_std([r["accuracy"] for r in rows]),
            "macro_f1": _mean_std([r["macro_f1"] for r in rows]),
            "accuracy_per_seed": {str(s): float(np.mean(v)) for s, v in per_seed.items()},
            "seconds": time.perf_counter() - t0, "config": config_mod.to_dict(cfg)}


def cv_markdown(r: dict) -> str:
    out = [f"# Cross-validation: {r['folds']} folds × {len(r['seeds'])} seed(s), {r['n']} examples", "",
           f"**accuracy {r['accuracy']['mean']:.4f} ± {r['accuracy']['std']:.4f}**, "
           f"macro-F1 {r['macro_f1']['mean']:.4f} ± {r['macro_f1']['std']:.4f} (mean ± std over runs)", "",
           "| seed | fold | test examples | accuracy | macro-F1 | best epoch | seconds |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["runs"]:
        out.append(f"| {x['seed']} | {x['fold']} | {x['n_test']} | {x['accuracy']:.4f} | {x['macro_f1']:.4f} "
                   f"| {x['best_epoch']} | {x['seconds']:.1f} |")
    return "\n".join(out) + "\n"


# --- hyperparameter search ----------------------------------------------------------

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "logint")


def load_space(path) -> dict:
    """A search space: dotted config key -> list of choices, or {DIST: [low, high]} / {choice: [...]}."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: search space file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the search space: {e}") from None
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


def run_trial(cfg_dict: dict, examples: tuple, cv: int, root) -> dict:
    """One trial: the best dev score (examples = (train, dev)), or the cross-validated mean
    accuracy (cv > 1, examples = the training pairs). Errors are returned, not raised."""
    t0 = time.perf_counter()
    try:
        cfg = config_mod.from_dict(cfg_dict)
        if cv > 1:
            scores = []
            for tr, te in folds(examples[0], cv, cfg.seed):
                train, dev, test = fold_split(examples, tr, te, cfg.data.dev_fraction, cfg.seed)
                model, _ = fit_lists(cfg, train, dev, root)
                m = score(model, *test)
                scores.append(m[cfg.train.metric])
            return {"score": float(np.mean(scores)), "best_epoch": None, "seconds": time.perf_counter() - t0}
        model, result = fit_lists(cfg, examples[0], examples[1], root)
        return {"score": float(result.best_score), "best_epoch": result.best_epoch,
                "seconds": time.perf_counter() - t0}
    except Exception as e:                      # one failing trial must not end the search
        detail = str(e) if isinstance(e, NlclfError) else "".join(
            traceback.format_exception_only(type(e), e)).strip()
        return {"score": None, "error": detail, "seconds": time.perf_counter() - t0}


def _search_examples(cfg: Config, root, cv: int):
    examples = _training_examples(cfg, root)
    if cv > 1:
        return examples
    if cfg.data.dev:
        dev = data.read_labelled(data.resolve(cfg.data.dev, data_root(root)), cfg.data)
        return examples, dev
    is_dev = data.stratified_split(examples[0], cfg.data.dev_fraction, cfg.seed)
    return _subset(examples, np.flatnonzero(~is_dev)), _subset(examples, np.flatnonzero(is_dev))


def run_tune(cfg: Config, space: dict, trials: int = 20, jobs: int | None = None, cv: int = 0,
             halving: bool = False, scheduler: str | None = None, root=None, metric: str | None = None,
             log=lambda msg: None) -> dict:
    """Random (or grid) search over ``space``; returns the leaderboard and the best config."""
    if metric:
        cfg = trial_config(cfg, {"train.metric": metric}, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    combos = grid(space)
    if combos is not None:
        settings = combos
        log(f"the space is all lists: grid search over {len(combos)} combinations")
    else:
        settings = [sample(space, rng) for _ in range(trials)]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=len(settings))]
    configs = [trial_config(cfg, st, sd) for st, sd in zip(settings, seeds)]      # validates every trial first
    examples = _search_examples(cfg, root, cv)
    t0 = time.perf_counter()
    max_epochs = cfg.train.epochs
    rungs = [max_epochs]
    if halving:
        n_rungs = max(1, min(int(math.log(max_epochs, HALVING_ETA)) + 1,
                             int(math.log(max(len(configs), 1), HALVING_ETA)) + 1))
        rungs = [max(1, round(max_epochs / HALVING_ETA ** (n_rungs - 1 - r))) for r in range(n_rungs)]
    rows = [{"trial": i + 1, "settings": st, "seed": sd, "score": None, "epochs": None, "seconds": 0.0}
            for i, (st, sd) in enumerate(zip(settings, seeds))]
    alive = list(range(len(rows)))
    pool = executor(jobs, scheduler)
    try:
        shared = pool.scatter(examples)
        for r, epochs in enumerate(rungs):
            futures = [(i, pool.submit(run_trial, config_mod.to_dict(trial_config(cfg, settings[i], seeds[i], epochs)),
                                       shared, cv, root)) for i in alive]
            for i, fut in futures:
                res = fut.result()
                row = rows[i]
                row.update(score=res["score"], epochs=epochs, rung=r + 1, best_epoch=res.get("best_epoch"),
                           seconds=row["seconds"] + res["seconds"])
                if "error" in res:
                    row["error"] = res["error"]
                    log(f"trial {row['trial']}: failed: {res['error'].splitlines()[0]}")
                else:
                    log(f"trial {row['trial']} ({epochs} epochs): {res['score']:.4f}")
            if r < len(rungs) - 1:
                ok = sorted((i for i in alive if rows[i]["score"] is not None), key=lambda i: -rows[i]["score"])
                alive = ok[:max(1, math.ceil(len(alive) / HALVING_ETA))]
    finally:
        pool.close()
    board = sorted(rows, key=lambda x: (x["score"] is None, -(x.get("rung") or 0),
                                        -(x["score"] if x["score"] is not None else 0), x["trial"]))
    best = next((x for x in board if x["score"] is not None), None)
    best_cfg = trial_config(cfg, best["settings"], best["seed"]) if best else None
    return {"objective": f"{'cv' + str(cv) + ' mean ' if cv > 1 else 'dev '}{cfg.train.metric}",
            "trials": board, "best": best, "best_config": config_mod.to_dict(best_cfg) if best_cfg else None,
            "rungs": rungs, "seconds": time.perf_counter() - t0}


def tune_markdown(r: dict) -> str:
    keys = sorted({k for t in r["trials"] for k in t["settings"]})
    out = [f"# Hyperparameter search: objective {r['objective']}", "",
           f"{len(r['trials'])} trials, epochs per rung {r['rungs']}, {r['seconds']:.0f} s", "",
           "| rank | trial | " + " | ".join(keys) + " | seed | epochs | score | seconds |",
           "|---:|---:|" + "---|" * len(keys) + "---:|---:|---:|---:|"]
    for rank, t in enumerate(r["trials"], start=1):
        vals = [(f"{t['settings'][k]:.4g}" if isinstance(t["settings"].get(k), float) else str(t["settings"].get(k, "")))
                for k in keys]
        sc = f"{t['score']:.4f}" if t["score"] is not None else f"error: {t.get('error', '').splitlines()[0][:60]}"
        out.append(f"| {rank} | {t['trial']} | " + " | ".join(vals) +
                   f" | {t['seed']} | {t['epochs']} | {sc} | {t['seconds']:.1f} |")
    return "\n".join(out) + "\n"

"""Dev and test accuracy of one config under the benchmark protocol, over several seeds.

Usage::

    python bench/seeds.py SET CONFIG [--set KEY=VALUE ...] [--seeds 0 1 2] [--jobs 2] [--data-root DIR]

CONFIG is a YAML file or ``default`` (nothing set but the data). Each seed s gives the
protocol's splits for s (``splits.protocol_splits``: trec's dev split and mr's folds follow
it) and the model seed 1000·s. One line is printed: the mean over seeds of dev accuracy (the
best epoch's, which is what selection may look at) and of test accuracy, test per seed,
the mean best epoch and seconds per run. Choose configs by the dev figure; the test figure
is for the record.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy: one BLAS thread per worker

import argparse
import concurrent.futures as cf
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import accuracy  # noqa: E402  (its run_unit: the benchmark's own run of one config)


def run(unit):
    """One (seed, fold) through accuracy.run_unit: (seed, dev score, test accuracy, best epoch,
    seconds). The dev score is the best epoch's (train.metric, accuracy unless set)."""
    name, cfg_path, overrides, seed, fold, root = unit
    system = ({"label": "default", "group": "default", "kind": "bow"} if cfg_path == "default"
              else {"label": cfg_path, "group": "best", "paths": {name: cfg_path}})
    r = accuracy.run_unit((system, name, seed, fold, root, [("seed", 1000 * seed)] + overrides))
    return seed, r["dev_score"], r["accuracy"], r["best_epoch"], r["fit_seconds"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", choices=["sst5", "sst2", "trec", "mr"])
    ap.add_argument("config", help="a YAML config, or 'default'")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"))
    a = ap.parse_args(argv)
    from nlclf.config import parse_override
    overrides = [parse_override(o) for o in a.overrides]
    folds = 10 if a.set == "mr" else 1
    units = [(a.set, a.config, overrides, s, f, a.data_root) for s in a.seeds for f in range(folds)]
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(a.jobs, initializer=accuracy._init_worker) as ex:
        rows = list(ex.map(run, units))
    per_seed = {s: [r for r in rows if r[0] == s] for s in a.seeds}
    dev = [np.mean([r[1] for r in rs]) for rs in per_seed.values()]        # run_unit gives %
    test = [np.mean([r[2] for r in rs]) for rs in per_seed.values()]
    print(f"{a.set} {a.config} {' '.join(a.overrides)} | dev {np.mean(dev):.2f} test {np.mean(test):.2f} "
          f"[{' '.join(f'{t:.2f}' for t in test)}] | best epoch {np.mean([r[3] for r in rows]):.1f}, "
          f"{np.mean([r[4] for r in rows]):.1f} s a run, {time.perf_counter() - t0:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()

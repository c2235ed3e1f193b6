"""Same config and seed, same model: train every config with one checkout of nlclf and record
what it wrote, to compare two checkouts byte for byte (a refactoring must not change a model).

    python bench/identity.py --code . --out bench/out/identity-after.json
    python bench/identity.py --code /tmp/before --out bench/out/identity-before.json
    python bench/identity.py --compare bench/out/identity-before.json bench/out/identity-after.json

For each config (configs/demo.yaml and configs/xor.yaml on data/, every other configs/*.yaml on
--data-root), the record is the SHA-256 of each array in the model's arrays file and the
run's dev and test metrics. model.json may change with a format bump; the arrays and the
metrics may not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OWN_DATA = {"demo.yaml", "xor.yaml"}


def configs() -> list:
    return sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.is_file())


def train_one(code: Path, cfg: Path, data_root: Path, work: Path) -> dict:
    out = work / cfg.stem
    root = ROOT / "data" if cfg.name in OWN_DATA else data_root
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("NLCLF_DATA_ROOT", None)
    p = subprocess.run([sys.executable, "-m", "nlclf.cli", "train", str(cfg), "--data-root", str(root),
                        "--out", str(out), "--quiet", "--set", "features.workers=1"],
                       cwd=code, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-500:]}
    meta = json.loads((out / "model.json").read_text())
    with np.load(out / meta["arrays_file"], allow_pickle=False) as z:
        arrays = {k: hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest() for k in sorted(z.files)}
    report = json.loads((out / "report.json").read_text())
    final = {split: {k: report["final"][split][k] for k in ("accuracy", "macro_f1")} for split in report["final"]}
    return {"arrays": arrays, "final": final, "best_epoch": report["best_epoch"], "labels": report["labels"]}


def record(code: Path, data_root: Path, jobs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            futures = {cfg.name: ex.submit(train_one, code, cfg, data_root, Path(tmp)) for cfg in configs()}
        return {name: f.result() for name, f in futures.items()}


def compare(before: dict, after: dict) -> int:
    bad = 0
    print("| config | arrays | dev accuracy | test accuracy | verdict |\n|---|---|---:|---:|---|")
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name, {}), after.get(name, {})
        if "error" in a or "error" in b or not a or not b:
            print(f"| {name} | - | - | - | not comparable: {a.get('error') or b.get('error') or 'missing'} |")
            bad += 1
            continue
        same_arrays = a["arrays"] == b["arrays"]
        same_metrics = a["final"] == b["final"]
        dev = lambda r: f"{r['final']['dev']['accuracy']:.4f}"
        test = lambda r: f"{r['final']['test']['accuracy']:.4f}" if "test" in r["final"] else "-"
        verdict = "identical" if same_arrays and same_metrics else "DIFFERENT"
        bad += verdict != "identical"
        print(f"| {name} | {len(b['arrays'])} arrays {'identical' if same_arrays else 'differ'} | "
              f"{dev(a)} → {dev(b)} | {test(a)} → {test(b)} | {verdict} |")
    print(f"\n{len(set(before) | set(after)) - bad} of {len(set(before) | set(after))} configs identical")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose nlclf package trains (PYTHONPATH)")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, help="write the record here")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        return compare(*(json.loads(p.read_text()) for p in args.compare))
    rec = record(args.code.resolve(), args.data_root.resolve(), args.jobs)
    text = json.dumps(rec, indent=1, sort_keys=True) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

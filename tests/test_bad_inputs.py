"""Bad inputs, part two: data files, configs, command lines and checkpoints that must fail cleanly.

Extends the 18-case table of test_cli.py (none repeated here). Every case is a real
``python -m nlclf.cli ...`` subprocess (repository as working directory, no
NLCLF_DATA_ROOT, stdin from /dev/null) and must end with the documented exit code
(ConfigError and usage errors 2, DataError 3, CheckpointError 4, OutputError 5), one
message on stderr naming the culprit (file, ``file:line``, key or option), no traceback,
nothing on stdout, and no partial output left behind.

The shared model is trained in-process once per module; each case gets its own folder,
and the cases run concurrently.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import yaml

from nlclf import checkpoint, config, pipeline
from conftest import BASE_CONFIG, ENV, PREDICT_TEXT, REPO, TIMEOUT, show, write_tsv

WORKERS = 4


# ---------------------------------------------------------------- helpers

def run(args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlclf.cli", *map(str, args)], cwd=REPO, env=ENV,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=TIMEOUT)


def leftovers(folder: Path) -> list:
    """What a failed command left in its output folder: nothing is allowed (no model.json,
    model.*.npz, temporary files, nor a config.yaml that would make the corrected rerun
    need --overwrite)."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def config_dict(**sections) -> dict:
    """BASE_CONFIG with sections updated (dicts merged, anything else replaces)."""
    cfg = copy.deepcopy(BASE_CONFIG)
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name].update(value)
        else:
            cfg[name] = value
    return cfg


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` containing ``needle``."""
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {text!r}")


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@dataclass
class World:
    root: Path
    data: Path
    config: Path
    model: Path
    eval_file: Path
    input_file: Path


@dataclass
class Bad:
    args: list
    code: int
    needles: list                                       # each must occur in stderr
    clean: list = field(default_factory=list)           # folders that must hold no output files afterwards
    absent: list = field(default_factory=list)          # paths that must not exist afterwards
    stdout_empty: bool = True
    after: Optional[Callable[[], Optional[str]]] = None  # returns a complaint, or None


# ---------------------------------------------------------------- train cases

def train_bad(d: Path, w: World, text, code: int, needles, *extra, data_root=None) -> Bad:
    """``train CFG --out d/out`` where CFG holds ``text`` (str or bytes; None: no file written)."""
    cfg = d / "cfg.yaml"
    if text is not None:
        write(cfg, text)
    out = d / "out"
    needles = needles(cfg) if callable(needles) else needles
    return Bad(["train", cfg, "--out", out, "--data-root", data_root or w.data, "--quiet", *extra],
               code, needles, clean=[out])


def config_bad(make_text: Callable[[], str], needles: Callable[[Path, str], list], *extra):
    """A config case: exit 2; ``needles(cfg_path, text)``."""
    def build(d, w):
        text = make_text()
        return train_bad(d, w, text, 2, lambda p: needles(p, text), *extra)
    return build


def data_bad(files: dict, data: dict, needles: Callable[[Path], list], features: Optional[dict] = None):
    """A data case: the world's data copied, ``files`` (name -> content) added; exit 3;
    ``needles(data_root)``."""
    def build(d, w):
        root = d / "data"
        shutil.copytree(w.data, root)
        for name, content in files.items():
            write(root / name, content)
        sections = {"data": data} | ({"features": features} if features else {})
        return train_bad(d, w, dump(config_dict(**sections)), 3, needles(root), data_root=root)
    return build


def keyed(key: str, *more: str):
    """needles for a config case: 'file:line' of the key, the dotted key, and more."""
    def needles(p: Path, text: str) -> list:
        return [f"{p}:{line_of(text, key.split('.')[-1] + ':')}", key, *more]
    return needles


def with_config(**sections):
    return lambda: dump(config_dict(**sections))


TRAIN_LINES = "sport\tgoal match team\nfood\tpasta sauce oven\ntech\tlaptop compiler server\n"
UNDECODABLE = [b"sport\tgoal match\n", b"food\tpasta sauce\n", b"tech\tlaptop \xff server\n", b"sport\tteam coach\n"]
UNDECODABLE_OFFSET = len(UNDECODABLE[0]) + len(UNDECODABLE[1]) + len(b"tech\tlaptop ")


def case_folder_single_label(d, w):
    root = d / "data"
    shutil.copytree(w.data, root)
    for i, text in enumerate(["goal match team", "coach league score", "stadium player goal"]):
        write(root / "corpus" / "sport" / f"{i}.txt", text + "\n")
    text = dump(config_dict(data={"train": "corpus"}))
    return train_bad(d, w, text, 3, [str(root / "corpus"), "only one class", "sport"], data_root=root)


def case_train_path_is_folder(d, w):
    root = d / "data"
    shutil.copytree(w.data, root)
    (root / "sub").mkdir()
    write(root / "sub" / "a.tsv", TRAIN_LINES)
    text = dump(config_dict(data={"train": "sub", "format": "tsv"}))
    return train_bad(d, w, text, 3, [str(root / "sub"), "folder"], data_root=root)


def case_multiple_problems(d, w):
    text = dump(config_dict(model={"dropout": 2.0, "widht": 3}, train={"batch_size": -3}))
    p = d / "cfg.yaml"
    return train_bad(d, w, text, 2, [f"{p}:{line_of(text, 'dropout:')}", "model.dropout",
                                     f"{p}:{line_of(text, 'widht:')}", "model.widht",
                                     f"{p}:{line_of(text, 'batch_size:')}", "train.batch_size"])


def case_out_is_a_file(d, w):
    target = write(d / "out-file", "not a folder\n")
    c = Bad(["train", w.config, "--out", target, "--data-root", w.data, "--quiet"], 5, [str(target)])
    c.after = lambda: None if target.read_text() == "not a folder\n" else f"{target} was changed"
    return c


def case_resume_without_state(d, w):
    run_dir = d / "run"
    run_dir.mkdir()
    return Bad(["train", w.config, "--resume", run_dir, "--data-root", w.data, "--quiet"], 4,
               [str(run_dir), "resume"], clean=[run_dir])


def case_resume_finished_run(d, w):
    run_dir = d / "run"
    shutil.copytree(w.model, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    c = Bad(["train", w.config, "--resume", run_dir, "--data-root", w.data, "--quiet"], 4,
            [str(run_dir), "finished"])
    c.after = lambda: None if {p.name: p.read_bytes() for p in run_dir.iterdir()} == before \
        else f"a refused --resume changed {run_dir}"
    return c


def case_resume_with_other_out(d, w):
    a, b = d / "a", d / "b"
    return Bad(["train", w.config, "--resume", a, "--out", b, "--data-root", w.data, "--quiet"], 2,
               ["--out", "--resume", str(a), str(b)], absent=[a, b])


def case_unknown_option(d, w):
    out = d / "out"
    return Bad(["train", w.config, "--out", out, "--data-root", w.data, "--bogus"], 2, ["--bogus"], absent=[out])


def case_set_unknown_key(d, w):
    return train_bad(d, w, dump(config_dict()), 2, ["--set", "train.lrr", "did you mean 'lr'"],
                     "--set", "train.lrr=0.1")


def case_set_unknown_section(d, w):
    return train_bad(d, w, dump(config_dict()), 2, ["--set", "modle", "did you mean 'model'"],
                     "--set", "modle.hidden=[8]")


def case_set_invalid_yaml(d, w):
    return train_bad(d, w, dump(config_dict()), 2, ["--set", "model.hidden", "YAML"],
                     "--set", "model.hidden=[1,")


# ---------------------------------------------------------------- eval / predict / tune / cv cases


def case_eval_bad_line(d, w):
    f = write(d / "eval.tsv", "sport\tgoal match\nfood pasta sauce\ntech\tlaptop\n")
    report = d / "r.json"
    return Bad(["eval", w.model, f, "--report", report], 3, [f"{f}:2", "tab"], absent=[report])


def case_eval_report_unwritable(d, w):
    report = d / "no-such-folder" / "r.json"
    return Bad(["eval", w.model, w.eval_file, "--report", report], 5, [str(report)], absent=[report])


def case_fail_under_not_a_number(d, w):
    return Bad(["eval", w.model, w.eval_file, "--fail-under", "accuracy=abc"], 2, ["--fail-under", "accuracy=abc"])


def case_predict_undecodable_input(d, w):
    f = write(d / "in.txt", b"goal match\npasta \xfe sauce\nlaptop\n")
    return Bad(["predict", w.model, f], 3, [f"{f}:2", "byte 17"], stdout_empty=False)


def tune_bad(space_text: Optional[str], needles: Callable[[Path], list]):
    """``tune CFG --space d/space.yaml`` (holding ``space_text``; None: no file); exit 2."""
    def build(d, w):
        space = d / "space.yaml"
        if space_text is not None:
            write(space, space_text)
        out = d / "tune"
        args = ["tune", w.config, "--space", space, "--out", out, "--data-root", w.data, "--quiet", "--jobs", "1"]
        return Bad(args, 2, needles(space), clean=[out])
    return build


def case_cv_one_fold(d, w):
    out = d / "cv"
    return Bad(["cv", w.config, "--folds", "1", "--out", out, "--data-root", w.data, "--quiet"], 2,
               ["--folds"], absent=[out])


# ---------------------------------------------------------------- checkpoint cases

class _Unpickled:
    """Loading a pickle of this creates ``marker``: proof that a checkpoint was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def read_meta(m: Path) -> dict:
    return json.loads((m / "model.json").read_text(encoding="utf-8"))


def write_meta(m: Path, meta: dict) -> None:
    (m / "model.json").write_text(json.dumps(meta), encoding="utf-8")


def read_arrays(m: Path) -> dict:
    with np.load(m / read_meta(m)["arrays_file"], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def first_weight(arrays: dict) -> str:
    """The name of the first weight matrix (a 2-D parameter)."""
    return sorted(k for k, v in arrays.items() if k.startswith("param.") and v.ndim == 2)[0]


def damaged(damage: Callable[[Path, Path], object], needles: Callable[[Path], list], command: str = "eval"):
    """A copy of the world's model, damaged by ``damage(model_dir, case_dir)`` (which may return
    an ``after`` check), then used by ``command``; exit 4."""
    def build(d, w):
        m = d / "model"
        shutil.copytree(w.model, m)
        after = damage(m, d)
        arrays_file = m / read_meta(w.model)["arrays_file"]       # the name before any damage
        args = {"eval": ["eval", m, w.eval_file],
                "predict": ["predict", m, w.input_file],
                "inspect": ["inspect", m],
                "compare": ["compare", w.model, m, w.eval_file, "--resamples", "100"]}[command]
        return Bad(args, 4, [n.replace("{arrays}", str(arrays_file)) for n in needles(m)], after=after)
    return build


def edit_meta(change: Callable[[dict], None]):
    def damage(m, d):
        meta = read_meta(m)
        change(meta)
        write_meta(m, meta)
    return damage


def rewrite_arrays(change: Callable[[dict], None], update_listing: bool = False):
    """Change the arrays and rewrite the arrays file under a name of its new checksum; update the
    metadata's checksum (and its per-array listing) so that only later checks can catch it."""
    def damage(m, d):
        meta = read_meta(m)
        arrays = read_arrays(m)
        change(arrays)
        sha = checkpoint.checksum(arrays)
        (m / meta["arrays_file"]).unlink()
        meta["sha256"] = sha
        meta["arrays_file"] = f"model.{sha[:16]}.npz"
        if update_listing:
            meta["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()}
        (m / meta["arrays_file"]).write_bytes(checkpoint.npz_bytes(arrays))
        write_meta(m, meta)
    return damage


def _transpose_first_weight(arrays):
    k = first_weight(arrays)
    arrays[k] = np.ascontiguousarray(arrays[k].T)


def _first_weight_as_int(arrays):
    k = first_weight(arrays)
    arrays[k] = np.round(arrays[k] * 1000).astype(np.int32)


def damage_one_float(m, d):
    """Change one weight, keep the metadata (and its checksum)."""
    meta = read_meta(m)
    arrays = read_arrays(m)
    k = first_weight(arrays)
    arrays[k].flat[0] += 1.0
    (m / meta["arrays_file"]).write_bytes(checkpoint.npz_bytes(arrays))


def damage_object_array(m, d):
    """The arrays file rewritten (np.savez, pickling allowed) with an object array whose
    unpickling would create a folder."""
    marker = d / "UNPICKLED"
    meta = read_meta(m)
    arrays = read_arrays(m)
    evil = np.empty(1, dtype=object)
    evil[0] = _Unpickled(str(marker))
    arrays[first_weight(arrays)] = evil
    with open(m / meta["arrays_file"], "wb") as f:
        np.savez(f, **arrays)
    return lambda: f"the checkpoint was unpickled: {marker} exists" if marker.exists() else None


def damage_truncate_arrays(m, d):
    f = m / read_meta(m)["arrays_file"]
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) * 2 // 3])


def damage_delete_arrays(m, d):
    (m / read_meta(m)["arrays_file"]).unlink()


def damage_traversal(m, d):
    """arrays_file points outside the model folder, at a perfectly good arrays file."""
    meta = read_meta(m)
    shutil.copy(m / meta["arrays_file"], d / "x.npz")
    meta["arrays_file"] = "../x.npz"
    write_meta(m, meta)


def damage_bad_config(meta):
    meta["config"]["model"]["activation"] = "bogus"


def write_model_json(content):
    def damage(m, d):
        write(m / "model.json", content)
    return damage


MJ = lambda m: str(m / "model.json")        # noqa: E731


# ---------------------------------------------------------------- the table

BAD_CASES = {
    # --- data files (exit 3)
    "csv-missing-label-column": data_bad(
        {"train.csv": "text,stars\ngoal match team,5\npasta sauce,3\n"}, {"train": "train.csv"},
        lambda r: [f"{r / 'train.csv'}:1", "'label'", "data.label_field"]),
    "csv-unclosed-quote": data_bad(
        {"train.csv": 'text,label\ngoal match,sport\n"pasta sauce,food\nlaptop,tech\n'}, {"train": "train.csv"},
        lambda r: [f"{r / 'train.csv'}:3", "CSV"]),
    "jsonl-invalid-json": data_bad(
        {"train.jsonl": '{"text": "goal match", "label": "sport"}\n{"text": "pasta", "label": \n'},
        {"train": "train.jsonl"}, lambda r: [f"{r / 'train.jsonl'}:2", "JSON"]),
    "jsonl-non-string-label": data_bad(
        {"train.jsonl": '{"text": "goal", "label": "sport"}\n\n{"text": "pasta", "label": 5}\n'},
        {"train": "train.jsonl"}, lambda r: [f"{r / 'train.jsonl'}:3", "'label'"]),
    "fasttext-several-labels": data_bad(
        {"train.ft": "__label__sport goal\n__label__food pasta\n\n__label__tech __label__food laptop\n"},
        {"train": "train.ft", "multi_label": False}, lambda r: [f"{r / 'train.ft'}:4", "data.multi_label"]),
    "folder-single-label": case_folder_single_label,
    "tsv-path-is-a-folder": case_train_path_is_folder,
    "undecodable-byte": data_bad(
        {"bad.tsv": b"".join(UNDECODABLE)}, {"train": "bad.tsv"},
        lambda r: [f"{r / 'bad.tsv'}:3", f"byte {UNDECODABLE_OFFSET}", "0xff"]),
    "empty-train-file": data_bad({"empty.tsv": ""}, {"train": "empty.tsv"},
                                 lambda r: [str(r / "empty.tsv"), "no usable examples"]),
    "empty-text": data_bad({"t.tsv": "sport\tgoal\nfood\tpasta\ntech\tlaptop\nfood\t   \n"}, {"train": "t.tsv"},
                           lambda r: [f"{r / 't.tsv'}:4", "empty text"]),
    "dev-label-not-in-train": data_bad(
        {"dev2.tsv": "sport\tgoal match\nweather\train wind\n"}, {"dev": "dev2.tsv"},
        lambda r: [f"{r / 'dev2.tsv'}:2", "weather"]),
    "pretrained-vectors-wrong-width": data_bad(
        {"vec.txt": "2 8\ngoal 0.1 0.2 0.3 0.4 0.5\n"}, {},
        lambda r: [f"{r / 'vec.txt'}:2", "features.embed_dim"],
        features={"kind": "embed_mean", "embed_dim": 8, "pretrained": "vec.txt"}),
    "eval-line-without-tab": case_eval_bad_line,
    "predict-input-undecodable": case_predict_undecodable_input,

    # --- configs (exit 2)
    "config-empty": config_bad(lambda: "", lambda p, t: [str(p), "data.train", "required"]),
    "config-is-a-list": config_bad(lambda: "- data\n- model\n", lambda p, t: [str(p), "mapping"]),
    "config-tab-indented": config_bad(lambda: "data:\n\ttrain: train.tsv\n", lambda p, t: [f"{p}:2"]),
    "config-not-utf8": config_bad(lambda: b"seed: 1\ndata: {train: \xe9t\xe9.tsv}\n", lambda p, t: [str(p)]),
    "section-misspelt": config_bad(lambda: dump(config_dict()).replace("model:", "modle:"),
                                   keyed("modle", "did you mean 'model'")),
    "embed-concat-with-ngrams": config_bad(with_config(features={"kind": "embed_concat", "ngrams": 2}),
                                           keyed("features.ngrams", "embed_concat")),
    "embed-concat-with-char-ngrams": config_bad(
        with_config(features={"kind": "embed_concat", "char_ngrams": [2, 4]}),
        keyed("features.char_ngrams", "embed_concat")),
    "ensemble-of-none": config_bad(with_config(train={"ensemble": 0}), keyed("train.ensemble", "0")),
    "char-ngrams-min-above-max": config_bad(with_config(features={"char_ngrams": [5, 2]}),
                                            keyed("features.char_ngrams", "[5, 2]")),
    "char-weight-zero": config_bad(with_config(features={"char_weight": 0}), keyed("features.char_weight", "0")),
    "encoding-utf16": config_bad(with_config(data={"encoding": "utf-16"}), keyed("data.encoding", "utf-16")),
    "seed-negative": config_bad(with_config(seed=-1), keyed("seed", "-1")),
    "several-problems-at-once": case_multiple_problems,

    # --- command lines (exit 2, or 4/5 where the folder is the problem)
    "unknown-option": case_unknown_option,
    "set-unknown-key": case_set_unknown_key,
    "set-unknown-section": case_set_unknown_section,
    "set-invalid-yaml": case_set_invalid_yaml,
    "out-is-a-file": case_out_is_a_file,
    "resume-without-state": case_resume_without_state,
    "resume-finished-run": case_resume_finished_run,
    "resume-with-other-out": case_resume_with_other_out,
    "eval-report-unwritable": case_eval_report_unwritable,
    "fail-under-not-a-number": case_fail_under_not_a_number,
    "tune-space-missing": tune_bad(None, lambda s: [str(s)]),
    "tune-space-bad-distribution": tune_bad("train.lr: {gaussian: [0.0, 1.0]}\n",
                                            lambda s: [str(s), "train.lr", "gaussian"]),
    "tune-space-unknown-key": tune_bad("train.lrr: [0.01, 0.1]\n", lambda s: [str(s), "train.lrr"]),
    "cv-one-fold": case_cv_one_fold,

    # --- checkpoints (exit 4)
    "model-json-a-list": damaged(write_model_json("[1, 2, 3]\n"), lambda m: [MJ(m), "object"]),
    "vocab-of-numbers": damaged(edit_meta(lambda meta: meta.update(vocab=list(range(len(meta["vocab"]))))),
                                lambda m: [MJ(m), "vocab"], "inspect"),
    "config-in-model-invalid": damaged(edit_meta(damage_bad_config), lambda m: [MJ(m), "model.activation"]),
    "arrays-file-path-traversal": damaged(damage_traversal, lambda m: [MJ(m), "arrays_file", "../x.npz"]),
    "arrays-file-missing": damaged(damage_delete_arrays, lambda m: ["{arrays}", "missing"]),
    "arrays-object-array-not-unpickled": damaged(damage_object_array, lambda m: ["{arrays}"], "predict"),
    "arrays-shape-differs-from-listing": damaged(rewrite_arrays(_transpose_first_weight),
                                                 lambda m: [str(m / "model."), first_weight(read_arrays(m))]),
    "arrays-shape-differs-from-network": damaged(rewrite_arrays(_transpose_first_weight, update_listing=True),
                                                 lambda m: [str(m / "model."), "shape"], "compare"),
    "arrays-integer-weights": damaged(rewrite_arrays(_first_weight_as_int, update_listing=True),
                                      lambda m: [str(m / "model."), "floating point"]),
    "arrays-truncated": damaged(damage_truncate_arrays, lambda m: ["{arrays}"], "predict"),
    "arrays-checksum-mismatch": damaged(damage_one_float, lambda m: ["{arrays}", "checksum"]),
}


# ---------------------------------------------------------------- the run

@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad-inputs")
    data = root / "data"
    data.mkdir()
    write_tsv(data / "train.tsv", 12, seed=1)
    write_tsv(data / "dev.tsv", 4, seed=2)
    write_tsv(data / "test.tsv", 4, seed=3)
    eval_file = write_tsv(root / "eval.tsv", 4, seed=4)
    input_file = write(root / "input.txt", PREDICT_TEXT)
    cfg_path = write(root / "base.yaml", dump(config_dict()))
    pipeline.run_train(config.load(cfg_path), data, root / "model")
    return World(root, data, cfg_path, root / "model", eval_file, input_file)


@pytest.fixture(scope="module")
def results(world, tmp_path_factory) -> dict:
    cases = {name: build(tmp_path_factory.mktemp(name), world) for name, build in BAD_CASES.items()}
    with ThreadPoolExecutor(max_workers=WORKERS) as ex:
        done = list(ex.map(lambda c: run(c.args), cases.values()))
    return {name: (c, r) for (name, c), r in zip(cases.items(), done)}


def test_the_two_tables_hold_at_least_48_distinct_cases():
    from test_cli import BAD_CASES as FIRST
    assert not set(FIRST) & set(BAD_CASES)
    assert len(FIRST) + len(BAD_CASES) >= 48


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_fails_cleanly(results, name):
    case, r = results[name]
    assert r.returncode == case.code, f"expected exit {case.code}" + show(r)
    assert "Traceback" not in r.stderr, show(r)
    assert r.stderr.strip(), "no message on stderr" + show(r)
    for needle in case.needles:
        assert needle in r.stderr, f"stderr does not name {needle!r}" + show(r)
    if case.stdout_empty:
        assert r.stdout == "", "a failed command printed results" + show(r)
    for folder in case.clean:
        assert leftovers(folder) == [], f"a failed run left {leftovers(folder)} in {folder}" + show(r)
    for path in case.absent:
        assert not path.exists(), f"a failed run left {path}" + show(r)
    if case.after is not None:
        complaint = case.after()
        assert complaint is None, complaint + show(r)

"""End-to-end tests of the command line, run as real subprocesses.

Every command is ``python -m nlclf.cli ...`` with the repository as the working
directory, an environment without NLCLF_DATA_ROOT (and without PYTHONUNBUFFERED, so
stdout is buffered as in a user's shell), and ``--data-root`` pointing at tiny data
written by the tests (the XOR tests use the repository's configs/xor.yaml and data/).

Starting the CLI costs a second or more (NumPy, SciPy, scikit-learn imports), so
independent commands are launched concurrently from module-scoped fixtures and the
tests only check their results.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml

from nlclf.checkpoint import model_files as checkpoint_files

from conftest import (BASE_CONFIG, ENV, KEYWORDS, LABELS, PREDICT_LINES, PREDICT_TEXT, REPO, TIMEOUT,
                      assert_ok, show, texts_for, write_tsv)

WORKERS = 6


# ---------------------------------------------------------------- helpers

def run_cli(*args, input: Optional[str] = None, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlclf.cli", *map(str, args)], cwd=REPO,
                          env=env or ENV, input=input, capture_output=True, text=True,
                          encoding="utf-8", timeout=TIMEOUT)


def run_many(calls: list) -> list:
    """Run (args, stdin text or None) pairs concurrently; results in the same order."""
    with ThreadPoolExecutor(max_workers=WORKERS) as ex:
        return list(ex.map(lambda c: run_cli(*c[0], input=c[1]), calls))


def write_config(path: Path, **sections) -> Path:
    cfg = json.loads(json.dumps(BASE_CONFIG))
    for name, value in sections.items():
        if isinstance(value, dict):
            cfg[name].update(value)
        else:
            cfg[name] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def model_files(d: Path) -> list:
    return sorted(p.name for p in d.glob("model.*")) if d.is_dir() else []


# ---------------------------------------------------------------- the shared world

@dataclass
class World:
    root: Path
    data: Path
    config: Path
    model: Path
    eval_file: Path
    input_file: Path
    train_result: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    data = root / "data"
    data.mkdir()
    write_tsv(data / "train.tsv", 20, seed=1)
    write_tsv(data / "dev.tsv", 6, seed=2)
    write_tsv(data / "test.tsv", 6, seed=3)
    eval_file = write_tsv(root / "eval.tsv", 7, seed=4)
    input_file = root / "input.txt"
    input_file.write_text(PREDICT_TEXT, encoding="utf-8")
    config = write_config(root / "base.yaml")
    model = root / "model"
    r = run_cli("train", config, "--out", model, "--data-root", data, "--quiet")
    assert_ok(r)
    return World(root, data, config, model, eval_file, input_file, r)


# ---------------------------------------------------------------- 1. XOR

def test_xor_hidden_layer_fits_and_linear_model_cannot(tmp_path):
    xor_data = REPO / "data" / "xor" / "train.tsv"
    mlp_dir, lin_dir = tmp_path / "mlp", tmp_path / "linear"
    trains = run_many([
        (["train", "configs/xor.yaml", "--out", mlp_dir, "--data-root", REPO / "data", "--quiet"], None),
        (["train", "configs/xor.yaml", "--out", lin_dir, "--data-root", REPO / "data", "--quiet",
          "--set", "model.hidden=[]"], None),
    ])
    for r in trains:
        assert_ok(r)
    mlp_report, lin_report = tmp_path / "mlp.json", tmp_path / "linear.json"
    evals = run_many([(["eval", mlp_dir, xor_data, "--report", mlp_report], None),
                      (["eval", lin_dir, xor_data, "--report", lin_report], None)])
    for r in evals:
        assert_ok(r)
    mlp_acc = json.loads(mlp_report.read_text())["accuracy"]
    lin_acc = json.loads(lin_report.read_text())["accuracy"]
    assert mlp_acc == 1.0, show(evals[0])
    assert lin_acc <= 0.75, show(evals[1])


# ---------------------------------------------------------------- 2. determinism

def test_same_config_and_seed_give_byte_identical_model_files(world, tmp_path):
    again = tmp_path / "again"
    r = run_cli("train", world.config, "--out", again, "--data-root", world.data, "--quiet")
    assert_ok(r)
    assert [f.name for f in checkpoint_files(again)] == [f.name for f in checkpoint_files(world.model)]
    for a, b in zip(checkpoint_files(again), checkpoint_files(world.model)):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between two runs of the same config and seed"


# ---------------------------------------------------------------- 3. round trip

def test_train_writes_model_folder_and_report(world):
    r = world.train_result
    assert r.stderr == "", "train --quiet wrote to stderr" + show(r)
    assert len(r.stdout.splitlines()) == 1, "train should print one summary line" + show(r)
    for name in ("model.json", "config.yaml", "report.json", "report.md"):
        assert (world.model / name).is_file(), f"{name} missing from the model folder"
    assert len(list(world.model.glob("model.*.npz"))) == 1 and all(f.is_file() for f in checkpoint_files(world.model))
    assert (world.model / "report.md").read_text(encoding="utf-8").strip()
    saved = yaml.safe_load((world.model / "config.yaml").read_text(encoding="utf-8"))
    assert saved["seed"] == BASE_CONFIG["seed"]
    assert saved["model"]["hidden"] == BASE_CONFIG["model"]["hidden"]
    rep = json.loads((world.model / "report.json").read_text(encoding="utf-8"))
    assert isinstance(rep["history"], list) and rep["history"]
    assert len(rep["history"]) <= BASE_CONFIG["train"]["epochs"]
    assert 1 <= rep["best_epoch"] <= len(rep["history"])
    for split in ("dev", "test"):
        assert 0.0 <= rep["final"][split]["accuracy"] <= 1.0
    assert sorted(rep["labels"]) == LABELS
    meta = json.loads((world.model / "model.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 2
    assert sorted(meta["labels"]) == LABELS
    assert not (REPO / BASE_CONFIG["output"]["dir"]).exists(), "--out was ignored"


PREDICT_RUNS = {
    "file": (["{input}"], None),
    "stdin_dash": (["-"], PREDICT_TEXT),
    "stdin_no_file": ([], PREDICT_TEXT),
    "proba": (["{input}", "--proba"], None),
    "top_k": (["{input}", "--top-k", "2"], None),
    "jsonl": (["{input}", "--format", "jsonl"], None),
    "tsv": (["{input}", "--format", "tsv", "--proba"], None),
    "bad_format": (["{input}", "--format", "xml"], None),
}


@pytest.fixture(scope="module")
def roundtrip(world):
    """eval and every predict variant against the shared model, run concurrently."""
    report = world.root / "eval-report.json"
    calls = [(["eval", world.model, world.eval_file, "--report", report], None)]
    for args, stdin in PREDICT_RUNS.values():
        args = [a.replace("{input}", str(world.input_file)) for a in args]
        calls.append((["predict", world.model, *args], stdin))
    results = run_many(calls)
    out = dict(zip(PREDICT_RUNS, results[1:]))
    out["eval"] = results[0]
    out["eval_report"] = report
    return out


def test_eval_prints_accuracy_and_writes_a_consistent_report(world, roundtrip):
    r = roundtrip["eval"]
    assert_ok(r)
    assert "accuracy" in r.stdout, show(r)
    m = json.loads(roundtrip["eval_report"].read_text(encoding="utf-8"))
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "labels"):
        assert key in m, f"--report JSON lacks {key!r}"
    n = len([l for l in world.eval_file.read_text(encoding="utf-8").splitlines() if l.strip()])
    assert sorted(m["labels"]) == LABELS
    cm = m["confusion_matrix"]
    assert len(cm) == len(m["labels"]) and all(len(row) == len(m["labels"]) for row in cm)
    assert sum(map(sum, cm)) == n
    trace = sum(cm[i][i] for i in range(len(cm)))
    assert m["accuracy"] == pytest.approx(trace / n)
    assert f"{m['accuracy']:.4f}" in r.stdout, "stdout accuracy disagrees with the report" + show(r)
    assert set(m["per_class"]) == set(m["labels"])
    for i, lab in enumerate(m["labels"]):
        assert m["per_class"][lab]["support"] == sum(cm[i])
    assert m["macro_f1"] == pytest.approx(sum(c["f1"] for c in m["per_class"].values()) / len(LABELS))
    assert m["accuracy"] >= 0.8, "the model did not learn three disjoint keyword sets"


def check_one_line_per_input(r, n_fields=1):
    """One output line per input line, in order; returns the split lines."""
    assert_ok(r)
    assert r.stdout.endswith("\n"), show(r)
    lines = r.stdout.splitlines()
    assert len(lines) == len(PREDICT_LINES), "not one output line per input line" + show(r)
    return lines


def check_labels(labels, r):
    for got, (text, want) in zip(labels, PREDICT_LINES):
        assert got in LABELS, f"unknown label {got!r} for {text!r}" + show(r)
        if want is not None:
            assert got == want, f"{text!r} -> {got!r}, expected {want!r} (wrong order?)" + show(r)


@pytest.mark.parametrize("variant", ["file", "stdin_dash", "stdin_no_file"])
def test_predict_prints_one_known_label_per_input_line_in_order(roundtrip, variant):
    r = roundtrip[variant]
    lines = check_one_line_per_input(r)
    check_labels(lines, r)


def test_predict_proba(roundtrip):
    r = roundtrip["proba"]
    lines = check_one_line_per_input(r)
    labels = []
    for line in lines:
        parts = line.split(" ")
        assert len(parts) == 2, f"expected 'label probability', got {line!r}" + show(r)
        assert 0.0 <= float(parts[1]) <= 1.0, line
        labels.append(parts[0])
    check_labels(labels, r)


def test_predict_top_k(roundtrip):
    r = roundtrip["top_k"]
    lines = check_one_line_per_input(r)
    for line in lines:
        parts = line.split(" ")
        assert len(parts) == 2 and parts[0] != parts[1], f"expected two labels, got {line!r}" + show(r)
        assert set(parts) <= set(LABELS), line
    check_labels([l.split(" ")[0] for l in lines], r)


def test_predict_jsonl(roundtrip):
    r = roundtrip["jsonl"]
    lines = check_one_line_per_input(r)
    labels = []
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict) and "label" in obj, line
        if "proba" in obj:
            assert 0.0 <= obj["proba"] <= 1.0, line
        labels.append(obj["label"])
    check_labels(labels, r)


def test_predict_tsv(roundtrip):
    r = roundtrip["tsv"]
    lines = check_one_line_per_input(r)
    labels = []
    for line in lines:
        parts = line.split("\t")
        assert len(parts) == 2, f"expected 'label<TAB>probability', got {line!r}" + show(r)
        assert 0.0 <= float(parts[1]) <= 1.0, line
        labels.append(parts[0])
    check_labels(labels, r)


def test_predict_invalid_format_exits_2(roundtrip):
    r = roundtrip["bad_format"]
    assert r.returncode == 2, show(r)
    assert "Traceback" not in r.stderr, show(r)
    assert "--format" in r.stderr and "xml" in r.stderr, show(r)
    assert r.stdout == "", show(r)


# ---------------------------------------------------------------- 4. streaming

def test_predict_answers_a_line_while_stdin_is_still_open(world):
    proc = subprocess.Popen([sys.executable, "-m", "nlclf.cli", "predict", str(world.model), "-"],
                            cwd=REPO, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    got: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: got.put(proc.stdout.readline()), daemon=True)
    reader.start()
    try:
        proc.stdin.write(b"goal match team\n")
        proc.stdin.flush()
        try:
            first = got.get(timeout=20)
        except queue.Empty:
            first = None
        proc.stdin.close()
        rest = proc.stdout.read() if first is not None else b""
        code = proc.wait(timeout=TIMEOUT)
        late = got.get(timeout=5) if first is None else b""
        err = proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first is not None, (f"no output within 20 s with stdin still open (the answer came only "
                               f"after stdin was closed: {late!r}); exit {code}; stderr: {err}")
    assert first.decode().strip() == "sport", first
    assert rest == b"", rest
    assert code == 0, err
    assert "Traceback" not in err, err


def test_predict_into_head_stops_quietly(world, tmp_path):
    big = tmp_path / "big.txt"
    rng = random.Random(5)
    lines = [" ".join(rng.sample(KEYWORDS[LABELS[i % 3]], 3)) for i in range(300)]
    big.write_text("".join(lines[i % 300] + "\n" for i in range(200_000)), encoding="utf-8")
    script = ('set +o pipefail; "$1" -m nlclf.cli predict "$2" "$3" | head -1; '
              'echo "predict-exit=${PIPESTATUS[0]}"')
    r = subprocess.run(["bash", "-c", script, "bash", sys.executable, str(world.model), str(big)],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    out = r.stdout.splitlines()
    assert r.stderr == "", f"stderr of `predict | head -1`:\n{r.stderr}"
    assert len(out) == 2, r.stdout
    assert out[0] in LABELS, r.stdout
    assert out[1] == "predict-exit=0", r.stdout


# ---------------------------------------------------------------- 5. bad inputs

@dataclass
class Case:
    args: list
    code: int
    needles: list                               # each must occur in stderr
    after: Optional[Callable[[], Optional[str]]] = None    # returns a complaint, or None
    stdin: Optional[str] = None


def _no_model_written(out: Path):
    def check():
        files = model_files(out)
        return f"a failed run left {files} in {out}" if files else None
    return check


def _train_with(d: Path, w: World, config_text: Optional[str] = None, *extra, data_root=None) -> Case:
    cfg = d / "cfg.yaml"
    if config_text is not None:
        cfg.write_text(config_text, encoding="utf-8")
    out = d / "out"
    return Case(["train", cfg, "--out", out, "--data-root", data_root or w.data, "--quiet", *extra],
                0, [], _no_model_written(out))


def config_case(text: str, needles_fn, *extra):
    """A train command on a config file whose text is ``text``; exit 2 (ConfigError)."""
    def build(d: Path, w: World) -> Case:
        c = _train_with(d, w, text, *extra)
        c.code, c.needles = 2, needles_fn(d / "cfg.yaml")
        return c
    return build


VALID = yaml.safe_dump(BASE_CONFIG, sort_keys=False)


def case_missing_config(d, w):
    c = _train_with(d, w, None)
    c.code, c.needles = 2, [str(d / "cfg.yaml")]
    return c


def case_missing_data(d, w):
    c = _train_with(d, w, VALID.replace("train: train.tsv", "train: no-such-file.tsv"))
    c.code, c.needles = 3, [str(w.data / "no-such-file.tsv")]
    return c


def case_no_tab(d, w):
    data = d / "data"
    shutil.copytree(w.data, data)
    lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = "sport goal match team\n"                  # line 3: a space, no tab
    (data / "train.tsv").write_text("".join(lines), encoding="utf-8")
    c = _train_with(d, w, VALID, data_root=data)
    c.code, c.needles = 3, [f"{data / 'train.tsv'}:3"]
    return c


def case_single_class(d, w):
    data = d / "data"
    data.mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        write_tsv(data / name, 10, seed=len(name), labels=["sport"])
    c = _train_with(d, w, VALID, data_root=data)
    c.code, c.needles = 3, [str(data / "train.tsv"), "sport"]
    return c


def case_unseen_label(d, w):
    f = d / "eval.tsv"
    f.write_text("sport\tgoal match team\nweather\train wind cloud\nfood\tpasta sauce\n", encoding="utf-8")
    return Case(["eval", w.model, f], 3, [str(f), "weather"])


def case_eval_no_model(d, w):
    return Case(["eval", d / "no-model", w.eval_file], 4, [str(d / "no-model")])


def case_predict_no_model(d, w):
    return Case(["predict", d / "no-model", w.input_file], 4, [str(d / "no-model")])


def _damaged(d, w, damage) -> Path:
    m = d / "model"
    shutil.copytree(w.model, m)
    damage(m)
    return m


def case_truncated_json(d, w):
    def damage(m):
        raw = (m / "model.json").read_bytes()
        (m / "model.json").write_bytes(raw[: len(raw) // 2])
    m = _damaged(d, w, damage)
    return Case(["eval", m, w.eval_file], 4, [str(m / "model.json")])


def case_corrupted_npz(d, w):
    def damage(m):
        npz = checkpoint_files(m)[1]
        raw = bytearray(npz.read_bytes())
        mid = len(raw) // 2
        raw[mid:mid + 64] = b"\xff" * 64
        npz.write_bytes(bytes(raw))
    m = _damaged(d, w, damage)
    return Case(["predict", m, w.input_file], 4, [str(m / "model.")])


def case_future_format(d, w):
    def damage(m):
        meta = json.loads((m / "model.json").read_text(encoding="utf-8"))
        meta["format_version"] = 999
        (m / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    m = _damaged(d, w, damage)
    return Case(["eval", m, w.eval_file], 4, ["999", "newer", "upgrade"])


BAD_CASES = {
    "missing-config": case_missing_config,
    "invalid-yaml": config_case("seed: 1\ndata: {train: train.tsv}\nmodel:\n  hidden: [8]: oops\n",
                                lambda p: [f"{p}:4"]),
    "unknown-key-misspelt": config_case(VALID.replace("hidden:", "hiden:"),
                                        lambda p: [str(p), "model.hiden", "did you mean 'hidden'"]),
    "wrong-type": config_case(VALID.replace("lr: 0.05", "lr: abc"), lambda p: [str(p), "train.lr", "abc"]),
    "lr-out-of-range": config_case(VALID.replace("lr: 0.05", "lr: -1"), lambda p: [str(p), "train.lr", "-1"]),
    "dropout-out-of-range": config_case(VALID.replace("activation: relu", "activation: relu\n  dropout: 1.5"),
                                        lambda p: [str(p), "model.dropout", "1.5"]),
    "bad-choice": config_case(VALID.replace("activation: relu", "activation: rellu"),
                              lambda p: [str(p), "model.activation", "rellu", "did you mean 'relu'"]),
    "set-bad-value": config_case(VALID, lambda p: ["--set", "train.epochs"], "--set", "train.epochs=0"),
    "set-without-equals": config_case(VALID, lambda p: ["--set", "train.epochs"], "--set", "train.epochs"),
    "missing-data-file": case_missing_data,
    "data-line-without-tab": case_no_tab,
    "single-class": case_single_class,
    "eval-unseen-label": case_unseen_label,
    "eval-missing-model-folder": case_eval_no_model,
    "predict-missing-model-folder": case_predict_no_model,
    "truncated-model-json": case_truncated_json,
    "corrupted-model-npz": case_corrupted_npz,
    "future-format-version": case_future_format,
}


@pytest.fixture(scope="module")
def bad_results(world, tmp_path_factory):
    """Every bad-input case set up in its own folder, then all run concurrently."""
    cases = {}
    for name, build in BAD_CASES.items():
        cases[name] = build(tmp_path_factory.mktemp(name), world)
    results = run_many([(c.args, c.stdin) for c in cases.values()])
    return {name: (c, r) for (name, c), r in zip(cases.items(), results)}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_is_a_clear_error(bad_results, name):
    case, r = bad_results[name]
    assert r.returncode == case.code, f"expected exit {case.code}" + show(r)
    assert "Traceback" not in r.stderr, show(r)
    assert r.stderr.startswith("error: "), show(r)
    for needle in case.needles:
        assert needle in r.stderr, f"stderr does not mention {needle!r}" + show(r)
    if case.after is not None:
        complaint = case.after()
        assert complaint is None, complaint


def test_train_refuses_a_non_empty_output_folder_unless_overwrite(world, tmp_path):
    """A folder nlclf did not create is refused with or without --overwrite, untouched; in one
    it created, --overwrite replaces what it wrote and keeps a file the user added."""
    before = {"model.0123456789abcdef.npz": b"old arrays", "notes.txt": b"keep me\n"}
    kept, forced_foreign, ours = tmp_path / "kept", tmp_path / "foreign", tmp_path / "ours"
    for d in (kept, forced_foreign):
        d.mkdir()
        for name, content in before.items():
            (d / name).write_bytes(content)
    base = ["train", world.config, "--data-root", world.data, "--quiet", "--out"]
    refused, refused_forced, first = run_many([(base + [kept], None), (base + [forced_foreign, "--overwrite"], None),
                                               (base + [ours], None)])
    for r, d in ((refused, kept), (refused_forced, forced_foreign)):
        assert r.returncode == 5, show(r)
        assert "Traceback" not in r.stderr, show(r)
        assert str(d) in r.stderr and "did not write" in r.stderr, show(r)
        assert {p.name: p.read_bytes() for p in d.iterdir()} == before, "a refused run touched the folder"
    assert_ok(first)
    old_arrays = checkpoint_files(ours)[1].name
    (ours / "notes.txt").write_bytes(b"mine\n")
    again = run_cli(*base, ours)
    assert again.returncode == 5 and "--overwrite" in again.stderr, show(again)
    forced = run_cli(*base, ours, "--overwrite", "--set", "seed=8")
    assert_ok(forced)
    assert (ours / "notes.txt").read_bytes() == b"mine\n", "--overwrite removed a file it did not write"
    assert checkpoint_files(ours)[1].name != old_arrays and not (ours / old_arrays).exists()
    meta = json.loads((ours / "model.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 2 and sorted(meta["labels"]) == LABELS
    for name in ("config.yaml", "report.json", "report.md"):
        assert (ours / name).is_file(), f"--overwrite run did not write {name}"

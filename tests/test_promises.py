"""What the README promises, tried as a hostile user would: nlclf never loses a user's work and
never answers with a traceback. Each test is a case found by trying (issue 13).

Commands are real ``python -m nlclf.cli`` subprocesses; the cases that only need an exit
code and a message run concurrently.
"""

from __future__ import annotations

import io
import json
import os
import pty
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from nlclf import checkpoint, config, data, pipeline, rundir
from nlclf.errors import DataError
from conftest import BASE_CONFIG, ENV, REPO, TIMEOUT, cfg_text, show, write_tsv


def cli(*args, cwd=REPO, env=None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, input=None, **kw):
    if input is not None:
        stdin = None
    return subprocess.run([sys.executable, "-m", "nlclf.cli", *map(str, args)], cwd=cwd, env=env or ENV,
                          stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=True, input=input,
                          encoding="utf-8", errors="replace", timeout=TIMEOUT, **kw)


def popen(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "nlclf.cli", *map(str, args)], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def children(pid: int) -> list:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_for(cond, timeout=120, what="condition"):
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, f"{what} never happened"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("promises")
    d = root / "data"
    d.mkdir()
    write_tsv(d / "train.tsv", 12, seed=1)
    write_tsv(d / "dev.tsv", 4, seed=2)
    write_tsv(d / "test.tsv", 4, seed=3)
    (root / "base.yaml").write_text(cfg_text())
    pipeline.run_train(config.load(root / "base.yaml"), d, root / "model")
    return root


def base_args(world, out, *extra):
    return ["train", world / "base.yaml", "--data-root", world / "data", "--quiet", "--out", out, *extra]


# ---------------------------------------------------------------- wrong answers: see test_reports
# (test_compare_signs_agree_when_b_is_clearly_better: table, bootstrap line and JSON agree)


# ---------------------------------------------------------------- output folders

def test_root_home_and_working_directory_are_never_output_folders(world, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(ENV, HOME=str(home))
    cases = [(["/", "--overwrite"], REPO), ([home, "--overwrite"], REPO), ([".", "--overwrite"], tmp_path),
             ([tmp_path, "--overwrite"], tmp_path)]
    for (out, *extra), cwd in cases:
        r = cli(*base_args(world, out, *extra), cwd=cwd, env=env)
        assert r.returncode == 5 and "Traceback" not in r.stderr, show(r)
        assert "choose another --out" in r.stderr, show(r)
    assert not list(home.iterdir()) and not (Path("/") / "model.json").exists()
    assert not (tmp_path / "model.json").exists() and not (tmp_path / rundir.MANIFEST).exists()


def test_cv_overwrite_in_a_model_folder_keeps_the_model(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "model", run)
    before = snapshot(run)
    r = cli("cv", world / "base.yaml", "--folds", "2", "--jobs", "1", "--data-root", world / "data", "-q",
            "--out", run, "--overwrite")
    assert r.returncode == 0, show(r)
    after = snapshot(run)
    for name, content in before.items():
        if name != rundir.MANIFEST:
            assert after[name] == content, f"cv --overwrite changed {name}"
    assert {"cv.json", "cv.md"} <= set(after)
    manifest = json.loads(after[rundir.MANIFEST])
    assert {"cv.json", "cv.md", "model.json"} <= set(manifest["files"])
    checkpoint.load(run)


def test_a_file_nlclf_did_not_write_is_never_replaced(world, tmp_path):
    """In a folder nlclf created (by cv), the user puts a config.yaml of their own: train
    --overwrite, which writes a config.yaml, refuses and names it."""
    out = tmp_path / "cv"
    r = cli("cv", world / "base.yaml", "--folds", "2", "--jobs", "1", "--data-root", world / "data", "-q",
            "--out", out)
    assert r.returncode == 0, show(r)
    (out / "config.yaml").write_text("my own notes\n")
    before = snapshot(out)
    r = cli(*base_args(world, out, "--overwrite"))
    assert r.returncode == 5 and "config.yaml" in r.stderr and "not written by nlclf" in r.stderr, show(r)
    assert snapshot(out) == before


@pytest.mark.parametrize("failure,code", [("bad-data", 3), ("diverges", 6)])
def test_a_failed_overwrite_keeps_the_previous_model(world, tmp_path, failure, code):
    run = tmp_path / "run"
    shutil.copytree(world / "model", run)
    before = snapshot(run)
    if failure == "bad-data":
        bad = tmp_path / "data"
        shutil.copytree(world / "data", bad)
        with open(bad / "train.tsv", "a") as f:
            f.write("a line without a tab\n")
        args = ["train", world / "base.yaml", "--data-root", bad, "-q", "--out", run, "--overwrite"]
    else:
        args = base_args(world, run, "--overwrite", "--set", "train.optimizer=sgd", "--set", "train.lr=1e30",
                         "--set", "train.checkpoint_seconds=0")
    r = cli(*args)
    assert r.returncode == code, show(r)
    assert snapshot(run) == before, "the failed run changed the previous result"
    model, _, _ = checkpoint.load(run)
    assert model.proba(["goal match"]).shape[0] == 1


SLOW = {"train": {"epochs": 100000, "patience": 0, "batch_size": 2, "lr": 0.001}}


def test_a_second_run_on_the_same_folder_fails_at_once_naming_the_holder(world, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "slow.yaml").write_text(cfg_text(**SLOW))
    holder = popen("train", tmp_path / "slow.yaml", "--data-root", world / "data", "-q", "--out", out)
    try:
        wait_for(lambda: (out / rundir.PARTIAL / "run.json").exists(), what="the first run starting")
        for args in (["train", world / "base.yaml", "--out", out, "--overwrite"],
                     ["cv", world / "base.yaml", "--folds", "2", "--out", out, "--overwrite"]):
            t0 = time.time()
            r = cli(*args, "--data-root", world / "data", "-q")
            assert r.returncode == 5, show(r)
            assert f"PID {holder.pid}" in r.stderr and "in use" in r.stderr, show(r)
            assert time.time() - t0 < 60
        assert holder.poll() is None, "the second run disturbed the first"
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=120)
    assert holder.returncode == 143


def test_overwrite_removes_the_temporaries_of_a_killed_save(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "model", run)
    stale = run / ".model.0123456789abcdef.npz.tmp4242"
    stale.write_bytes(b"\0" * 100_000)
    r = cli(*base_args(world, run, "--overwrite"))
    assert r.returncode == 0, show(r)
    assert not stale.exists() and not [p for p in run.rglob("*") if ".tmp" in p.name]


# ---------------------------------------------------------------- signals and interruptions
# (SIGTERM and kill -9 during training, resume on changed data: test_resume.py)

def _predict_then_ctrl_c(world, stdin, write):
    p = popen("predict", world / "model", stdin=stdin, start_new_session=True)
    write(b"goal match team\n")
    line = p.stdout.readline()
    assert line.strip(), "no answer to the first line"
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=30)
    return p.returncode, err.decode()


@pytest.mark.parametrize("source", ["a slow pipe", "a terminal"])
def test_ctrl_c_while_predict_reads_exits_130_with_one_line(world, source):
    """`tail -f log | nlclf predict M` or an interactive terminal: Ctrl-C while a thread waits
    on stdin once aborted with 'Fatal Python error: _enter_buffered_busy' (exit 134)."""
    reader, writer = os.pipe() if source == "a slow pipe" else pty.openpty()[::-1]
    try:
        code, err = _predict_then_ctrl_c(world, reader, lambda b: os.write(writer, b))
    finally:
        os.close(reader)
        os.close(writer)
    assert code == 130, err
    assert "Fatal Python error" not in err and "Traceback" not in err and len(err.splitlines()) <= 1, err


TUNE_SPACE = "train.lr: [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]\n"


@pytest.fixture
def slow_search(world, tmp_path):
    (tmp_path / "slow.yaml").write_text(cfg_text(train={"epochs": 150, "patience": 0, "batch_size": 2}))
    (tmp_path / "space.yaml").write_text(TUNE_SPACE)
    return tmp_path


def tune_args(world, d):
    return ["tune", d / "slow.yaml", "--space", d / "space.yaml", "--jobs", "2", "--out", d / "tune",
            "--data-root", world / "data"]


def test_a_killed_tune_worker_fails_only_its_trial(world, slow_search):
    d = slow_search
    p = popen(*tune_args(world, d))
    wait_for(lambda: children(p.pid), what="a trial starting")
    victim = children(p.pid)[0]
    os.kill(victim, signal.SIGKILL)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and b"Traceback" not in err, err.decode()
    board = json.loads((d / "tune" / "leaderboard.json").read_text())
    failed = [t for t in board["trials"] if t["score"] is None]
    assert len(failed) == 1 and f"worker process {victim} died" in failed[0]["error"], board["trials"]
    assert len([t for t in board["trials"] if t["score"] is not None]) == 5
    assert (d / "tune" / "best.yaml").is_file()


def test_ctrl_c_stops_tune_at_once_keeping_finished_trials_and_resume_continues(world, slow_search):
    d = slow_search
    p = popen(*tune_args(world, d), start_new_session=True)
    board_file = d / "tune" / "leaderboard.json"
    wait_for(board_file.exists, what="a first trial finishing")
    t0 = time.time()
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    stopped = time.time() - t0
    assert p.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"--resume" in err, err.decode()
    assert stopped < 10, f"Ctrl-C took {stopped:.1f} s"
    finished = json.loads(board_file.read_text())
    done = {t["trial"]: t["score"] for t in finished["trials"] if t["score"] is not None}
    assert 1 <= len(done) < 6 and finished["finished"] == len(done)
    r = cli(*tune_args(world, d), "--resume")
    assert r.returncode == 0, show(r)
    assert "taken from the interrupted search" in r.stderr
    board = json.loads(board_file.read_text())
    assert board["finished"] == 6 and all(t["score"] is not None for t in board["trials"])
    assert {t["trial"]: t["score"] for t in board["trials"] if t["trial"] in done} == done
    other = cli(*tune_args(world, d), "--resume", "--trials", "3", "--set", "train.lr=0.01")
    assert other.returncode == 2 and "differs" in other.stderr, show(other)


def test_ctrl_c_during_cv_keeps_finished_folds_and_prints_no_traceback(world, slow_search):
    d = slow_search
    p = popen("cv", d / "slow.yaml", "--folds", "4", "--jobs", "2", "--out", d / "cv", "--data-root",
              world / "data", start_new_session=True)
    wait_for((d / "cv" / "cv.json").exists, what="a first fold finishing")
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and b"Traceback" not in err, err.decode()
    r = json.loads((d / "cv" / "cv.json").read_text())
    assert r["finished"] >= 1 and (d / "cv" / "cv.md").is_file()


# ---------------------------------------------------------------- bounded resources

def peak_rss_mb(args, **kw) -> tuple:
    """(CompletedProcess, peak RSS in MB of the command) measured by a wrapper process."""
    probe = ("import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:], capture_output=True, "
             "text=True); print(json.dumps([r.returncode, r.stdout, r.stderr, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))")
    p = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "nlclf.cli", *map(str, args)],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT, **kw)
    code, out, err, mb = json.loads(p.stdout)
    return subprocess.CompletedProcess(args, code, out, err), mb


def hostile_data(world, tmp_path, line: str) -> Path:
    d = tmp_path / "data"
    shutil.copytree(world / "data", d)
    with open(d / "train.tsv", "a") as f:
        f.write(line + "\n")
    return d


def test_a_one_megabyte_token_trains_in_bounded_memory(world, tmp_path):
    d = hostile_data(world, tmp_path, "sport\t" + "x" * 1_000_000)
    r, mb = peak_rss_mb(["train", world / "base.yaml", "--data-root", d, "-q", "--out", tmp_path / "run"])
    assert r.returncode == 0, show(r)
    assert mb < 600, f"peak memory {mb:.0f} MB for one long token"


def test_a_ten_megabyte_line_is_a_bad_line(world, tmp_path):
    d = hostile_data(world, tmp_path, "sport\t" + "goal " * 2_000_000)
    n = len((d / "train.tsv").read_text().splitlines())
    r, mb = peak_rss_mb(["train", world / "base.yaml", "--data-root", d, "-q", "--out", tmp_path / "run"])
    assert r.returncode == 3 and f"train.tsv:{n}" in r.stderr and "data.max_text_bytes" in r.stderr, show(r)
    assert mb < 400
    skipped = cli("train", world / "base.yaml", "--data-root", d, "--out", tmp_path / "skip",
                  "--set", "data.on_bad_line=skip")
    assert skipped.returncode == 0 and "skipped 1 bad line" in skipped.stderr, show(skipped)


def test_dev_zero_is_refused_quickly_as_training_data_and_as_input(world, tmp_path):
    (tmp_path / "z.yaml").write_text(cfg_text(data={"train": "/dev/zero", "dev": "dev.tsv", "test": ""}))
    r, mb = peak_rss_mb(["train", tmp_path / "z.yaml", "--data-root", world / "data", "-q", "--out", tmp_path / "z"])
    assert r.returncode == 3 and "/dev/zero:1" in r.stderr and "max_text_bytes" in r.stderr, show(r)
    assert mb < 400 and not (tmp_path / "z").exists()
    p, mb = peak_rss_mb(["predict", world / "model", "/dev/zero"])
    assert p.returncode == 3 and "/dev/zero:1" in p.stderr, show(p)
    assert mb < 400


def test_ten_thousand_labels_stay_in_bounded_memory(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    with open(d / "train.tsv", "w") as f:
        for i in range(20000):
            f.write(f"lab{i % 10000}\tword{i % 10000} filler {i % 7}\n")
    (tmp_path / "c.yaml").write_text("data: {train: train.tsv}\nfeatures: {char_ngrams: []}\n"
                                     "model: {hidden: [4]}\ntrain: {epochs: 1}\n")
    r, mb = peak_rss_mb(["train", tmp_path / "c.yaml", "--data-root", d, "-q", "--out", tmp_path / "run"])
    assert r.returncode == 0, show(r)
    assert mb < 1500, f"peak memory {mb:.0f} MB for 10,000 labels"
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["final"]["dev"]["confusion_matrix"] is None and len(rep["labels"]) == 10000
    assert len(rep["final"]["dev"]["per_class"]) == 10000


def test_a_network_too_large_for_the_machine_is_refused_before_reading_data(world, tmp_path):
    r = cli(*base_args(world, tmp_path / "run", "--set", "model.hidden=[100000,100000]"))
    assert r.returncode == 2 and "needs about" in r.stderr and "the machine has" in r.stderr, show(r)
    assert "model.hidden" in r.stderr and not (tmp_path / "run").exists()


def test_running_out_of_memory_is_one_message(world, tmp_path):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    r = cli(*base_args(world, tmp_path / "run", "--set", "model.hidden=[20000,20000]"), preexec_fn=limit)
    assert r.returncode == 1 and "Traceback" not in r.stderr, show(r)
    assert r.stderr.startswith("error: out of memory") and "model.hidden" in r.stderr, show(r)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["eval", "{model}", "{test}", "--bins", "10000000000"],
                                  ["compare", "{model}", "{model}", "{test}", "--resamples", str(10**12)],
                                  ["predict", "{model}", "--batch-size", str(10**12)],
                                  ["tune", "{cfg}", "--space", "{cfg}", "--trials", str(10**9)]])
def test_numeric_options_have_upper_bounds(world, args):
    subs = {"{model}": world / "model", "{test}": world / "data" / "test.tsv", "{cfg}": world / "base.yaml"}
    r = cli(*[subs.get(a, a) for a in args])
    assert r.returncode == 2 and "Traceback" not in r.stderr, show(r)


# ---------------------------------------------------------------- every error a message

def alias_bomb(levels=9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def copy_model(world, d: Path) -> Path:
    m = d / "model"
    shutil.copytree(world / "model", m)
    return m


def zip_bomb(m: Path) -> None:
    """The arrays file replaced by a 200 KB archive whose one member inflates to 200 MB."""
    name = json.loads((m / "model.json").read_text())["arrays_file"]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (50_000_000,)})
    with zipfile.ZipFile(m / name, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("param.H1.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(200):
                f.write(bytes(1 << 20))


def edit_json(path: Path, fn) -> None:
    path.write_text(fn(path.read_text()))


def error_cases(world, d: Path) -> dict:
    """name -> (args, stdin, exit code, needles in stderr)."""
    model, test = world / "model", world / "data" / "test.tsv"
    cases = {}

    def case(name, args, code, needles, stdin=None):
        cases[name] = ([str(a) for a in args], stdin, code, needles)

    (d / "alias.yaml").write_text(cfg_text() + alias_bomb())
    case("yaml-alias-bomb-config", ["train", d / "alias.yaml", "--out", d / "o1"], 2, ["expands to more than"])
    (d / "space.yaml").write_text("train.lr: [0.01]\n" + alias_bomb())
    case("yaml-alias-bomb-space", ["tune", world / "base.yaml", "--space", d / "space.yaml", "--out", d / "o2"],
         2, ["space.yaml", "expands to more than"])
    (d / "dup.yaml").write_text(cfg_text() + "train: {lr: 0.1, lr: 0.2}\n")
    case("yaml-duplicate-section", ["config", "check", d / "dup.yaml"], 2, ["dup.yaml", "written twice", "train"])
    (d / "dupkey.yaml").write_text("data: {train: train.tsv}\ntrain:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n")
    case("yaml-duplicate-key", ["config", "check", d / "dupkey.yaml"], 2, ["dupkey.yaml:5", "train.lr",
                                                                          "lines 3 and 5"])
    (d / "digits.yaml").write_text("seed: " + "9" * 5000 + "\ndata: {train: train.tsv}\n")
    case("yaml-5000-digits", ["config", "check", d / "digits.yaml"], 2, ["digits.yaml", "4300 digits"])
    case("config-nul-path", ["train", world / "base.yaml", "--out", d / "o3", "--set", 'data.train="tr\\0ain.tsv"'],
         2, ["data.train", "NUL"])
    case("config-is-a-fifo", ["config", "check", fifo(d / "fifo.yaml")], 2, ["fifo.yaml", "not a regular file"])

    m1 = copy_model(world, d / "m1")
    fifo(m1 / "model.json")
    case("model-json-is-a-fifo", ["predict", m1], 4, ["model.json", "not a regular file"], "goal\n")
    m2 = copy_model(world, d / "m2")
    fifo(m2 / json.loads((world / "model" / "model.json").read_text())["arrays_file"])
    case("arrays-file-is-a-fifo", ["eval", m2, test], 4, ["not a regular file"])
    m3 = copy_model(world, d / "m3")
    zip_bomb(m3)
    case("arrays-zip-bomb", ["predict", m3], 4, ["compressed"], "goal\n")
    m4 = copy_model(world, d / "m4")
    edit_json(m4 / "model.json", lambda t: t.replace('"temperature": 1.0', '"temperature": ' + "9" * 5000))
    case("model-json-5000-digits", ["predict", m4], 4, ["model.json", "damaged"], "goal\n")

    jd = d / "jdata"
    shutil.copytree(world / "data", jd)
    (jd / "train.jsonl").write_text("".join(json.dumps({"label": l, "text": t}) + "\n" for l, t in
                                            (line.split("\t", 1) for line in
                                             (world / "data" / "train.tsv").read_text().splitlines()))
                                    + '{"label": "sport", "text": "goal", "n": ' + "9" * 5000 + "}\n")
    (jd / "j.yaml").write_text(cfg_text(data={"train": "train.jsonl"}))
    n = len((jd / "train.jsonl").read_text().splitlines())
    case("jsonl-5000-digits", ["train", jd / "j.yaml", "--data-root", jd, "--out", d / "o4"], 3,
         [f"train.jsonl:{n}", "digits"])
    (jd / "tab.jsonl").write_text((jd / "train.jsonl").read_text().splitlines(keepends=True)[0] +
                                  json.dumps({"label": "spo\trt", "text": "goal"}) + "\n")
    (jd / "tab.yaml").write_text(cfg_text(data={"train": "tab.jsonl"}))
    case("label-with-a-tab", ["train", jd / "tab.yaml", "--data-root", jd, "--out", d / "o5"], 3,
         ["tab.jsonl:2", "tab, newline"])
    (jd / "nl.csv").write_text('label,text\nsport,goal match\n"spo\nrt",goal\n')
    (jd / "nl.yaml").write_text(cfg_text(data={"train": "nl.csv"}))
    case("label-with-a-newline", ["train", jd / "nl.yaml", "--data-root", jd, "--out", d / "o6"], 3,
         ["nl.csv:3", "tab, newline"])
    (jd / "vec.txt").write_text("goal 0.1 0.2\nmatch nan 0.3\n")
    (jd / "e.yaml").write_text(cfg_text(features={"kind": "embed_mean", "embed_dim": 2, "pretrained": "vec.txt"}))
    case("pretrained-vector-with-nan", ["train", jd / "e.yaml", "--data-root", jd, "--out", d / "o7"], 3,
         ["vec.txt:2", "NaN"])

    (d / "full").mkdir()
    case("fail-under-nan", ["eval", model, test, "--fail-under", "accuracy=nan"], 2, ["--fail-under"])
    case("report-read-only", ["eval", model, test, "--report", "/sys/nlclf-report.json"], 5,
         ["/sys/nlclf-report.json", "cannot write"])
    case("plots-read-only", ["eval", model, test, "--plots", "/sys/nlclf-plots"], 5, ["/sys/nlclf-plots"])
    case("plots-names-a-file", ["eval", model, test, "--plots", world / "base.yaml"], 5, ["base.yaml", "existing file"])
    case("report-names-a-folder", ["eval", model, test, "--report", d / "full"], 5, ["full", "folder"])
    case("report-into-a-model-file", ["eval", model, test, "--report", model / "model.json"], 5,
         ["model.json", "would replace a file of the nlclf folder"])
    case("plots-into-a-model-folder", ["eval", model, test, "--plots", model], 5, ["--plots would replace"])
    case("scheduler-malformed", ["cv", world / "base.yaml", "--out", d / "o8", "--scheduler", "tcp//nowhere"], 2,
         ["--scheduler", "tcp://HOST:PORT"])
    return cases


@pytest.fixture(scope="module")
def error_results(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("errors")
    cases = error_cases(world, d)
    env = dict(ENV)

    def run(c):
        args, stdin, _, _ = c
        if args[0] in ("train", "cv", "tune") and "--data-root" in args:
            args = args + ["-q"]
        return subprocess.run([sys.executable, "-m", "nlclf.cli", *args, "-q", "--data-root", str(world / "data")]
                              if args[0] in ("train", "cv", "tune") and "--data-root" not in args else
                              [sys.executable, "-m", "nlclf.cli", *args], cwd=REPO, env=env, input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True,
                              text=True, encoding="utf-8", errors="replace", timeout=60)
    with ThreadPoolExecutor(max_workers=4) as ex:
        done = list(ex.map(run, cases.values()))
    return {name: (c, r) for (name, c), r in zip(cases.items(), done)}


ERROR_CASES = ["yaml-alias-bomb-config", "yaml-alias-bomb-space", "yaml-duplicate-section", "yaml-duplicate-key",
               "yaml-5000-digits", "config-nul-path", "config-is-a-fifo", "model-json-is-a-fifo",
               "arrays-file-is-a-fifo", "arrays-zip-bomb", "model-json-5000-digits", "jsonl-5000-digits",
               "label-with-a-tab", "label-with-a-newline", "pretrained-vector-with-nan", "fail-under-nan",
               "report-read-only", "plots-read-only", "plots-names-a-file", "report-names-a-folder",
               "report-into-a-model-file", "plots-into-a-model-folder", "scheduler-malformed"]


@pytest.mark.parametrize("name", ERROR_CASES)
def test_error_is_one_message_never_a_traceback(error_results, name):
    (args, _, code, needles), r = error_results[name]
    assert r.returncode == code, f"expected exit {code}" + show(r)
    assert "Traceback" not in r.stderr and "Fatal" not in r.stderr, show(r)
    assert r.stderr.startswith("error: "), show(r)
    for needle in needles:
        assert needle in r.stderr, f"stderr does not name {needle!r}" + show(r)


def test_the_error_table_covers_every_case(world, tmp_path):
    assert set(error_cases(world, tmp_path)) == set(ERROR_CASES)


def test_a_full_or_closed_stdout_is_one_message(world):
    with open("/dev/full", "w") as full:
        r = cli("eval", world / "model", world / "data" / "test.tsv", stdout=full)
    assert r.returncode == 5 and "No space left on device" in r.stderr and "Traceback" not in r.stderr, r.stderr
    closed = subprocess.run(f"{sys.executable} -m nlclf.cli predict {world / 'model'} >&-", shell=True, cwd=REPO,
                            env=ENV, input="goal match\n", capture_output=False, stderr=subprocess.PIPE,
                            text=True, timeout=TIMEOUT)
    assert closed.returncode == 5 and "standard output is closed" in closed.stderr, closed.stderr
    assert "Traceback" not in closed.stderr


def test_a_server_that_is_not_dask_is_refused_quickly(world, tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"\xff" * 64 + b"HTTP/1.1 200 OK\r\n\r\n")     # a frame count of 2^64 - 1
    threading.Thread(target=serve, daemon=True).start()
    try:
        t0 = time.time()
        r = cli("cv", world / "base.yaml", "--folds", "2", "--out", tmp_path / "cv", "--data-root", world / "data",
                "--scheduler", f"tcp://127.0.0.1:{port}")
    finally:
        srv.close()
    assert r.returncode == 2 and "cannot connect to a Dask scheduler" in r.stderr, show(r)
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr.split("(")[0]
    assert time.time() - t0 < 60 and not (tmp_path / "cv").exists()


def test_compare_on_labels_a_model_never_saw_counts_them_as_its_errors(world, tmp_path):
    f = tmp_path / "new.tsv"
    f.write_text("sport\tgoal match team\nmusic\tguitar song drum\n")
    r = cli("compare", world / "model", world / "model", f, "--resamples", "200", "--report", tmp_path / "c.json")
    assert r.returncode == 0, show(r)
    assert "never saw the label(s) music" in r.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert "music" in c["a"]["labels"] and c["a"]["per_class"]["music"]["recall"] == 0.0


def test_a_pipe_or_dev_stdin_as_training_data_is_read_once(world, tmp_path):
    pipe = fifo(tmp_path / "train.tsv")
    text = (world / "data" / "train.tsv").read_text()
    threading.Thread(target=lambda: pipe.write_text(text), daemon=True).start()
    (tmp_path / "f.yaml").write_text(cfg_text(data={"train": str(pipe), "dev": "dev.tsv", "test": ""}))
    r = cli("train", tmp_path / "f.yaml", "--data-root", world / "data", "--out", tmp_path / "a")
    assert r.returncode == 0 and "read once" in r.stderr, show(r)
    (tmp_path / "s.yaml").write_text(cfg_text(data={"train": "/dev/stdin", "dev": "dev.tsv", "test": ""}))
    r = cli("train", tmp_path / "s.yaml", "--data-root", world / "data", "--out", tmp_path / "b", input=text)
    assert r.returncode == 0 and "read once" in r.stderr, show(r)
    a, b = checkpoint.model_files(tmp_path / "a"), checkpoint.model_files(tmp_path / "b")
    assert a[1].read_bytes() == b[1].read_bytes()


def test_predict_and_eval_read_a_pipe_once(world, tmp_path):
    """`nlclf predict M <(cmd)`: the format is not sniffed from a pipe, which would eat its lines."""
    lines = ["goal match team", "pasta sauce oven", "laptop compiler server"]
    pipe = fifo(tmp_path / "input")
    threading.Thread(target=lambda: pipe.write_text("".join(l + "\n" for l in lines)), daemon=True).start()
    r = cli("predict", world / "model", pipe)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3, show(r)
    labelled = fifo(tmp_path / "labelled")
    text = (world / "data" / "test.tsv").read_text()
    threading.Thread(target=lambda: labelled.write_text(text), daemon=True).start()
    r = cli("eval", world / "model", labelled)
    assert r.returncode == 0 and f"(n = {len(text.splitlines())})" in r.stdout, show(r)


def test_an_unreadable_document_or_folder_is_a_data_error(tmp_path, monkeypatch):
    """As root nothing is unreadable, so the refusal is simulated where the reader opens things."""
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "1.txt").write_text(f"text of {label}")
    opts = config.DataConfig(format="folder")
    real_open = open

    def deny(path, *a, **k):
        if str(path).endswith("b/1.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(DataError, match=r"b/1.txt: cannot read: Permission denied"):
        data.read_labelled(tmp_path, opts)
    monkeypatch.setattr("builtins.open", real_open)
    real_iterdir = Path.iterdir

    def deny_dir(self):
        if self.name == "b":
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)
    monkeypatch.setattr(Path, "iterdir", deny_dir)
    with pytest.raises(DataError, match=r"b: cannot read the folder: Permission denied"):
        data.read_labelled(tmp_path, opts)

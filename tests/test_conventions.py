"""A command line people already know how to use (issue 14), through the real commands: the
YAML-free path, `config init`, conventions of --help and options, what training prints, and
prediction output that joins back to its input."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from nlclf import checkpoint, config, search
from conftest import BASE_CONFIG, ENV, LABELS, REPO, TIMEOUT, cfg_text, show, write_tsv

COMMANDS = [["train"], ["eval"], ["compare"], ["inspect"], ["compress"], ["predict"], ["cv"], ["tune"],
            ["config", "init"], ["config", "show"], ["config", "check"]]


def cli(*args, cwd=REPO, input=None, env=None):
    return subprocess.run([sys.executable, "-m", "nlclf", *map(str, args)], cwd=cwd, env=env or ENV,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=TIMEOUT)


def many(calls):
    with ThreadPoolExecutor(max_workers=4) as ex:
        return list(ex.map(lambda c: cli(*c[0], **c[1]), calls))


SMALL = ["--set", "model.hidden=[16]", "--set", "train.lr=0.05", "--set", "train.batch_size=8",
         "--set", "features.char_ngrams=[]", "--set", "train.epochs=6"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions")
    work = root / "work"                                  # a user's folder: data beside them, no config
    work.mkdir()
    write_tsv(work / "train.tsv", 12, seed=1)
    write_tsv(work / "dev.tsv", 4, seed=2)
    write_tsv(work / "test.tsv", 4, seed=3)
    (root / "base.yaml").write_text(cfg_text())
    r = cli("train", "--train", "train.tsv", "--dev", "dev.tsv", "--test", "test.tsv", "--out", "m", *SMALL,
            cwd=work)
    assert r.returncode == 0, show(r)
    return root, work, r


# ---------------------------------------------------------------- getting started without YAML

def test_train_without_a_config_takes_paths_from_the_working_directory(world):
    root, work, r = world
    model = work / "m"
    assert {"model.json", "config.yaml", "report.json"} <= {p.name for p in model.iterdir()}
    saved = yaml.safe_load((model / "config.yaml").read_text())
    assert saved["data"]["train"] == str(work / "train.tsv") and saved["data"]["root"] == str(work)
    assert saved["model"]["hidden"] == [16]
    default_out = cli("train", "--train", "train.tsv", *SMALL, "-q", cwd=work)
    assert default_out.returncode == 0 and (work / "runs" / "train" / "model.json").is_file(), show(default_out)


def test_the_run_folder_trains_again_from_anywhere_without_data_root(world, tmp_path):
    root, work, _ = world
    rep = json.loads((work / "m" / "report.json").read_text())
    run = rep["run"]
    assert run["command"][-len(SMALL):] == SMALL and "--train" in run["command"]
    assert run["data_root"] == str(work) and run["nlclf_version"]
    assert set(run["inputs"]) == {"train", "dev", "test"}
    assert run["inputs"]["train"]["sha256"] and run["inputs"]["train"]["size"] == (work / "train.tsv").stat().st_size
    again = cli("train", work / "m" / "config.yaml", "--out", tmp_path / "again", "-q", cwd=tmp_path)
    assert again.returncode == 0, show(again)
    assert [f.name for f in checkpoint.model_files(tmp_path / "again")][1] == \
        [f.name for f in checkpoint.model_files(work / "m")][1]          # the same arrays (named by checksum)


def test_flags_override_the_config_file(world, tmp_path):
    root, work, _ = world
    other = write_tsv(tmp_path / "other.tsv", 12, seed=9, labels=["food", "tech"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(cfg_text(data={"train": "missing.tsv", "dev": "", "test": ""}))
    r = cli("train", cfg, "--train", other, "--out", tmp_path / "o", "-q", *SMALL)
    assert r.returncode == 0, show(r)
    assert json.loads((tmp_path / "o" / "report.json").read_text())["labels"] == ["food", "tech"]


def test_cv_and_tune_without_a_config(world, tmp_path):
    root, work, _ = world
    (tmp_path / "space.yaml").write_text("train.lr: [0.02, 0.05]\n")
    cv, tune = many([(["cv", "--train", work / "train.tsv", "--folds", "2", "--jobs", "1", "--out", tmp_path / "cv",
                       *SMALL], {}),
                     (["tune", "--train", work / "train.tsv", "--dev", work / "dev.tsv", "--space",
                       tmp_path / "space.yaml", "--jobs", "1", "--out", tmp_path / "tune", *SMALL], {})])
    assert cv.returncode == 0 and "Cross-validation: 2 folds" in cv.stdout, show(cv)
    assert re.search(r"fold \d \[1/2\]: accuracy [0-9.]+; mean so far [0-9.]+; ETA", cv.stderr), show(cv)
    assert tune.returncode == 0 and (tmp_path / "tune" / "best.yaml").is_file(), show(tune)
    assert re.search(r"trial \d \[1/2\]: [0-9.]+ \(6 epochs\); best so far [0-9.]+ \(trial \d\); ETA", tune.stderr)
    best = config.load(tmp_path / "tune" / "best.yaml")
    assert best.data.train == str(work / "train.tsv") and best.train.lr in (0.02, 0.05)
    nothing = cli("train")
    assert nothing.returncode == 2 and "--train FILE" in nothing.stderr, show(nothing)


@pytest.mark.parametrize("kind", ["bow", "embed_mean", "embed_concat"])
def test_config_init_writes_every_key_with_its_default_and_a_comment(kind, tmp_path):
    r = cli("config", "init", "--kind", kind)
    assert r.returncode == 0, show(r)
    path = tmp_path / "my.yaml"
    path.write_text(r.stdout)
    cfg = config.load(path)
    assert cfg.features.kind == kind and cfg == config.load_text(f"data: {{train: train.tsv, dev: dev.tsv}}\n"
                                                                 f"features: {{kind: {kind}}}\n")
    keys = [l.split(":")[0].strip() for l in r.stdout.splitlines() if l.startswith("  ")]
    for section, value in config.to_dict(cfg).items():
        if isinstance(value, dict):
            assert set(value) <= set(keys), f"keys of {section} missing from config init"
    assert all("# " in l for l in r.stdout.splitlines() if l.startswith("  "))
    assert set(config.HELP) == {k for k in config.RULES} | {k for k in config.HELP if "." not in k} | {
        f"{s}.{k}" for s, v in config.to_dict(cfg).items() if isinstance(v, dict) for k in v}
    check = cli("config", "check", path)
    assert check.returncode == 0, show(check)


@pytest.mark.parametrize("name", ["sst5", "sst2", "trec", "mr"])
def test_every_benchmark_set_has_a_top_level_config(name):
    r = cli("config", "show", REPO / "configs" / f"{name}.yaml")
    assert r.returncode == 0, show(r)
    shown = yaml.safe_load(r.stdout)
    assert shown["train"]["epochs"] >= 30 and shown["train"]["patience"] > 0
    if name == "sst5":
        assert shown["data"]["labels"] == ["very_negative", "negative", "neutral", "positive", "very_positive"]


def test_a_run_still_improving_at_the_cap_says_raise_the_epochs(world, tmp_path):
    write_tsv(tmp_path / "train.tsv", 100, seed=6)
    write_tsv(tmp_path / "dev.tsv", 100, seed=5)
    capped = cli("train", "--train", "train.tsv", "--dev", "dev.tsv", "--out", tmp_path / "c", *SMALL[:-2],
                 "--set", "train.epochs=3", "--set", "train.lr=0.0003", "-q", cwd=tmp_path)
    assert capped.returncode == 0, show(capped)
    assert "best epoch 3/3" in capped.stdout, show(capped)                 # slow steps: better every epoch
    assert "raise train.epochs" in capped.stdout and "--set train.epochs=6" in capped.stdout, show(capped)
    assert json.loads((tmp_path / "c" / "report.json").read_text())["still_improving"] is True


# ---------------------------------------------------------------- conventions

def test_python_dash_m_and_shell_completion():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("nlclf "), show(r)
    helps = cli("--help")
    assert "--install-completion" in helps.stdout and "--show-completion" in helps.stdout
    # typer finds the shell among the parent processes (shellingham): make the parent a bash
    comp = subprocess.run(["bash", "-c", f"'{sys.executable}' -m nlclf --show-completion; exit $?"], cwd=REPO,
                          env=dict(ENV, SHELL="/bin/bash"), capture_output=True, text=True, timeout=60)
    assert comp.returncode == 0 and "complete" in comp.stdout and "nlclf" in comp.stdout, show(comp)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_every_help_ends_with_real_examples_and_shows_flags_as_flags(command):
    r = cli(*command, "--help")
    assert r.returncode == 0, show(r)
    text = r.stdout
    tail = text[text.rindex("Examples:"):].splitlines()[1:]
    assert tail and all(l.strip().startswith(("nlclf ", "cat ", "printf ")) for l in tail if l.strip()), text
    options = text[text.index("Options:"):]
    assert "<bool>" not in options and "<str>" not in options, text          # flags are flags, values named
    if command[0] in ("eval", "predict", "inspect"):
        assert "MODEL" in text
    if command[0] in ("eval", "compare"):
        assert "DATA" in text
    if command[0] in ("train", "cv", "tune") or command[-1] in ("show", "check"):
        assert "CONFIG" in text
    if command == ["predict"]:
        assert "<text|tsv|jsonl>" in text and re.search(r"--proba\s+Add", text)


def test_a_value_after_a_flag_is_a_usage_error(world):
    root, work, _ = world
    r = cli("predict", work / "m", "--proba", "true", input="goal\n")
    assert r.returncode == 2 and "flags and take no value" in r.stderr and "--proba true" in r.stderr, show(r)
    fmt = cli("predict", work / "m", "--format", "xml", input="goal\n")
    assert fmt.returncode == 2 and "text" in fmt.stderr and "jsonl" in fmt.stderr, show(fmt)


def test_report_dash_writes_the_json_to_stdout(world):
    root, work, _ = world
    ev, cmp_ = many([(["eval", work / "m", work / "test.tsv", "--report", "-"], {}),
                     (["compare", work / "m", work / "m", work / "test.tsv", "--report", "-", "--resamples", "200"], {})])
    assert ev.returncode == 0 and json.loads(ev.stdout)["n"] == 12, show(ev)
    assert cmp_.returncode == 0 and json.loads(cmp_.stdout)["b_minus_a"]["accuracy"] == 0.0, show(cmp_)


def test_format_note_only_when_guessed_and_missing_files_name_the_absolute_root(world, tmp_path):
    root, work, _ = world
    shutil.copy(work / "train.tsv", tmp_path / "train.txt")
    tsv, txt = many([(["train", "--train", work / "train.tsv", "--out", tmp_path / "a", *SMALL], {}),
                     (["train", "--train", tmp_path / "train.txt", "--out", tmp_path / "b", *SMALL], {})])
    assert tsv.returncode == 0 and "read as" not in tsv.stderr, show(tsv)
    assert txt.returncode == 0 and "train.txt: read as tsv (the default for other names)" in txt.stderr, show(txt)
    (tmp_path / "c.yaml").write_text(cfg_text(data={"train": "nope.tsv"}))
    missing = cli("train", tmp_path / "c.yaml", "--data-root", "data", "--out", tmp_path / "c", cwd=tmp_path)
    assert missing.returncode == 3 and f"data root {tmp_path / 'data'}" in missing.stderr, show(missing)


def test_usage_errors_and_the_quality_gate_have_their_own_exit_codes(world):
    root, work, _ = world
    word, gate, ok = many([(["inspect", work / "m", "--word", "goal"], {}),
                           (["eval", work / "m", work / "test.tsv", "--fail-under", "accuracy=1.0"], {}),
                           (["eval", work / "m", work / "test.tsv", "--fail-under", "accuracy=0.1"], {})])
    assert word.returncode == 2 and "embedding model" in word.stderr, show(word)
    acc = json.loads(cli("eval", work / "m", work / "test.tsv", "--report", "-").stdout)["accuracy"]
    assert gate.returncode == (7 if acc < 1.0 else 0) and ("below --fail-under" in gate.stderr or acc == 1.0)
    assert ok.returncode == 0, show(ok)


def test_data_labels_fix_the_order_of_every_table(world, tmp_path):
    root, work, _ = world
    order = ["tech", "sport", "food"]
    r = cli("train", "--train", "train.tsv", "--dev", "dev.tsv", "--out", tmp_path / "o", *SMALL,
            "--set", f"data.labels=[{', '.join(order)}]", "-q", cwd=work)
    assert r.returncode == 0, show(r)
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["labels"] == order and rep["final"]["dev"]["labels"] == order
    ev = cli("eval", tmp_path / "o", work / "test.tsv", "--report", "-")
    m = json.loads(ev.stdout)
    assert m["labels"] == order and list(m["per_class"]) == order
    cm = m["confusion_matrix"]
    assert sum(cm[i][i] for i in range(3)) == round(m["accuracy"] * m["n"])       # the diagonal is right
    table = cli("eval", tmp_path / "o", work / "test.tsv").stdout
    assert table.index("| tech |") < table.index("| sport |") < table.index("| food |")
    wrong = cli("train", "--train", "train.tsv", "--out", tmp_path / "w", *SMALL, "--set", "data.labels=[tech, sport]",
                cwd=work)
    assert wrong.returncode == 3 and "not in data.labels: food" in wrong.stderr, show(wrong)


# ---------------------------------------------------------------- seeing what training does

PLAIN_EPOCH = re.compile(r"^epoch \d+/\d+  train loss \d+\.\d{4}  dev loss \d+\.\d{4}  dev accuracy \d\.\d{4}  "
                         r"macro-F1 \d\.\d{4}  \d+\.\d s( {2}\*best\*)?$", re.M)


def test_without_a_terminal_training_prints_one_plain_line_per_epoch_and_stage(world, tmp_path):
    root, work, _ = world
    plain, quiet, js = many([
        (["train", "--train", "train.tsv", "--dev", "dev.tsv", "--out", tmp_path / "p", *SMALL[:-2],
          "--set", "train.epochs=30", "--set", "train.patience=2", "--set", "train.lr=0.2"], {"cwd": work}),
        (["train", "--train", "train.tsv", "--out", tmp_path / "q", *SMALL, "--quiet"], {"cwd": work}),
        (["train", "--train", "train.tsv", "--out", tmp_path / "j", *SMALL, "--log-format", "json"], {"cwd": work})])
    assert plain.returncode == 0, show(plain)
    epochs = PLAIN_EPOCH.findall(plain.stderr)
    assert len(PLAIN_EPOCH.findall(plain.stderr)) >= 3 and "*best*" in plain.stderr, plain.stderr
    assert re.search(r"^stopped after epoch \d+ of 30: no better dev accuracy by more than 0.0005 \(train.min_delta\) for 2 epochs", plain.stderr, re.M)
    assert re.search(r"^read 36 examples of .*train.tsv in \d+\.\d s; vocabulary of [\d,]+ features$", plain.stderr, re.M)
    assert re.search(r"^featurized 36 training and 12 dev texts into [\d,]+ features", plain.stderr, re.M)
    assert "\r" not in plain.stderr and "it/s" not in plain.stderr
    assert quiet.returncode == 0 and quiet.stderr == "", show(quiet)
    assert js.returncode == 0, show(js)
    events = [json.loads(l) for l in js.stderr.splitlines()]
    kinds = {e["event"] for e in events}
    assert {"epoch_end", "stage_end", "note"} <= kinds and "batch" not in kinds
    history = json.loads((tmp_path / "j" / "report.json").read_text())["history"]
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [h["epoch"] for h in history]


def test_on_a_terminal_training_shows_bars_with_the_run_eta(world, tmp_path):
    root, work, _ = world
    leader, follower = pty.openpty()
    write_tsv(tmp_path / "train.tsv", 150, seed=6)
    write_tsv(tmp_path / "dev.tsv", 20, seed=5)
    p = subprocess.Popen([sys.executable, "-m", "nlclf", "train", "--train", "train.tsv", "--dev", "dev.tsv",
                          "--out", str(tmp_path / "t"), *SMALL[:-2], "--set", "train.epochs=4",
                          "--set", "train.batch_size=1"], cwd=tmp_path, env=ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    p.wait(timeout=TIMEOUT)
    os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert p.returncode == 0, text
    assert "epoch 1/4" in text and "run ETA" in text and "*best*" in text, text


def test_tune_stops_starting_trials_when_its_time_budget_is_spent(world, tmp_path):
    root, work, _ = world
    (tmp_path / "space.yaml").write_text("train.lr: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]\n")
    r = cli("tune", "--train", work / "train.tsv", "--dev", work / "dev.tsv", "--space", tmp_path / "space.yaml",
            "--jobs", "1", "--out", tmp_path / "t", "--time-budget", "1s", *SMALL[:-2], "--set", "train.epochs=1500",
            "--set", "train.patience=0")
    assert r.returncode == 0, show(r)
    board = json.loads((tmp_path / "t" / "leaderboard.json").read_text())
    assert 1 <= board["finished"] < 8 and "time budget of 1 s spent" in r.stderr, (board["finished"], show(r))
    assert "not run yet" in (tmp_path / "t" / "leaderboard.md").read_text()


def test_cv_trials_are_scored_on_the_same_folds(monkeypatch, tmp_path):
    """One fold assignment per search: every trial's folds come from the search's seed."""
    seen = []
    real = search.folds
    monkeypatch.setattr(search, "folds", lambda labels, k, seed: seen.append(seed) or real(labels, k, seed))

    class InProcess:
        def results(self, fn, shared, tasks, should_start=None):
            for i, args in enumerate(tasks):
                yield i, fn(shared, *args)

        def close(self):
            pass
    monkeypatch.setattr(search, "executor", lambda jobs=None, scheduler=None: InProcess())
    write_tsv(tmp_path / "train.tsv", 6, seed=1)
    cfg = config.load_text(cfg_text(data={"train": "train.tsv", "dev": "", "test": ""}), "c.yaml",
                           ["features.char_ngrams=[]", "train.epochs=2"])
    r = search.run_tune(cfg, {"train.lr": ("choice", [0.01, 0.05])}, cv=2, root=tmp_path)
    assert len({t["seed"] for t in r["trials"]}) == 2 and seen == [cfg.seed, cfg.seed]


# ---------------------------------------------------------------- prediction output that joins back

def test_predict_echoes_ids_and_texts_and_names_folder_documents(world, tmp_path):
    root, work, _ = world
    model = work / "m"
    jl = tmp_path / "items.jsonl"
    jl.write_text('{"id": "a1", "text": "goal match team"}\n{"id": 7, "text": "pasta\\tsauce oven"}\n')
    folder = tmp_path / "docs"
    for label, text in (("sport", "goal match"), ("food", "pasta sauce")):
        (folder / label).mkdir(parents=True)
        (folder / label / "1.txt").write_text(text)
    ids, texts, folders, plain_text = many([
        (["predict", model, jl, "--id-field", "id", "--format", "tsv", "--with-text"], {}),
        (["predict", model, "--format", "jsonl", "--with-text"], {"input": "goal match team\npasta sauce oven\n"}),
        (["predict", model, folder, "--format", "tsv"], {}),
        (["predict", model, "--with-text"], {"input": "goal\n"})])
    assert ids.returncode == 0, show(ids)
    rows = [l.split("\t") for l in ids.stdout.splitlines()]
    assert [r[0] for r in rows] == ["a1", "7"] and rows[1][-1] == "pasta sauce oven" and rows[0][1] in LABELS
    assert texts.returncode == 0, show(texts)
    objs = [json.loads(l) for l in texts.stdout.splitlines()]
    assert [o["text"] for o in objs] == ["goal match team", "pasta sauce oven"] and objs[0]["label"] == "sport"
    assert folders.returncode == 0, show(folders)
    names = [l.split("\t")[0] for l in folders.stdout.splitlines()]
    assert names == ["food/1.txt", "sport/1.txt"]
    assert plain_text.returncode == 2 and "--with-text needs" in plain_text.stderr


def test_predict_threshold_and_all_labels_and_eval_top_k(world):
    root, work, _ = world
    model = work / "m"
    lines = "goal match team\npasta sauce oven\nlaptop server kernel\n"
    allk, thr, ev = many([(["predict", model, "--top-k", "-1", "--format", "jsonl"], {"input": lines}),
                          (["predict", model, "--threshold", "0.3", "--format", "tsv"], {"input": lines}),
                          (["eval", model, work / "test.tsv", "--top-k", "2", "--report", "-"], {})])
    assert allk.returncode == 0, show(allk)
    for line in allk.stdout.splitlines():
        top = json.loads(line)["top"]
        assert sorted(t["label"] for t in top) == LABELS and abs(sum(t["proba"] for t in top) - 1) < 1e-4
        assert [t["proba"] for t in top] == sorted((t["proba"] for t in top), reverse=True)
    assert thr.returncode == 0, show(thr)
    for line in thr.stdout.splitlines():
        fields = line.split("\t") if line else []
        assert all(float(p) >= 0.3 for p in fields[1::2]) and len(fields) % 2 == 0
    assert ev.returncode == 0, show(ev)
    m = json.loads(ev.stdout)
    assert m["top_k"] == 2 and m["top_k_accuracy"] >= m["accuracy"]
    assert m["precision_at_k"] == pytest.approx(m["top_k_accuracy"] / 2) and m["recall_at_k"] == m["top_k_accuracy"]
    table = cli("eval", model, work / "test.tsv", "--top-k", "2").stdout
    assert re.search(r"top-2 accuracy \d\.\d{4}  P@2 \d\.\d{4}  R@2 \d\.\d{4}", table)

"""Interruptions: Ctrl-C or SIGTERM at a batch then --resume gives the same bytes; kill -9 never
damages the best model and resume says the run crashed; resuming on changed data is refused."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlclf import checkpoint, rundir

from conftest import write_data

REPO = Path(__file__).resolve().parent.parent
CONFIG = """seed: 5
data: {train: train.tsv, dev: dev.tsv}
features: {kind: bow}
model: {hidden: [32], dropout: 0.3}
train: {optimizer: adam, lr: 0.003, batch_size: 2, epochs: 80, patience: 0, checkpoint_seconds: 0}
"""


def nlclf(tmp_path, *args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "NLCLF_DATA_ROOT"}
    return subprocess.Popen([sys.executable, "-m", "nlclf.cli", *args, "--data-root", str(tmp_path)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Data, config and the run never interrupted, once for the module."""
    root = tmp_path_factory.mktemp("resume")
    write_data(root, n=40)
    (root / "c.yaml").write_text(CONFIG)
    ref = nlclf(root, "train", str(root / "c.yaml"), "--out", str(root / "ref"), "-q")
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()
    return root


@pytest.fixture
def setup(reference, tmp_path):
    """A folder of the test's own holding the data, the config and the reference run."""
    for name in ("train.tsv", "dev.tsv", "test.tsv", "c.yaml"):
        shutil.copy(reference / name, tmp_path / name)
    shutil.copytree(reference / "ref", tmp_path / "ref")
    return tmp_path


def _wait_for(path: Path, timeout: float = 120):
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.02)


def _same_model(run: Path, ref: Path):
    files, want = checkpoint.model_files(run), checkpoint.model_files(ref)
    assert [f.name for f in files] == [f.name for f in want]
    for a, b in zip(files, want):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.parametrize("sig,code,delay", [(signal.SIGINT, 130, 0.13), (signal.SIGTERM, 143, 0.31)])
def test_signal_then_resume_is_bitwise_identical(setup, sig, code, delay):
    """Ctrl-C and SIGTERM both finish the batch, save, exit 128 + signal with the same message;
    the resumed run ends with the bytes of a run never interrupted."""
    tmp = setup
    run = tmp / "run"
    p = nlclf(tmp, "train", str(tmp / "c.yaml"), "--out", str(run), "-q")
    _wait_for(run / rundir.PARTIAL / "state.json")      # the first epoch has ended: we are mid-training
    time.sleep(delay)                                    # some batch of a later epoch (an epoch: ~25 ms)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err.decode()
    assert b"Traceback" not in err and b"--resume" in err and b"state is saved" in err, err
    assert not (run / "model.json").exists(), "an unfinished run put a model in the folder"
    state, _ = checkpoint.load_state(run / rundir.PARTIAL)
    assert not state.done and (state.epoch, state.batch) > (1, 0)
    refused = nlclf(tmp, "train", str(tmp / "c.yaml"), "--out", str(run), "-q")
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 5 and b"unfinished" in err and b"--resume" in err, err
    r = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run))
    out, err = r.communicate(timeout=300)
    assert r.returncode == 0, err.decode()
    assert b"resuming the interrupted run" in err
    _same_model(run, tmp / "ref")
    assert not (run / rundir.PARTIAL).exists() and not list(run.glob("state*"))
    assert len(list(run.glob("model.*.npz"))) == 1
    again = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run), "-q")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 4 and b"finished; there is nothing to resume" in err


def _interrupted_run(tmp: Path) -> Path:
    """A run stopped by Ctrl-C after its first saved state."""
    run = tmp / "run"
    p = nlclf(tmp, "train", str(tmp / "c.yaml"), "--out", str(run), "-q")
    _wait_for(run / rundir.PARTIAL / "state.json")
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=120) == 130
    return run


def test_resume_with_another_config_is_refused(setup):
    tmp = setup
    run = _interrupted_run(tmp)
    r = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run), "--set", "train.lr=0.1", "-q")
    _, err = r.communicate(timeout=120)
    assert r.returncode == 2 and b"train.lr" in err


def test_resume_on_changed_data_is_refused_unless_forced(setup):
    tmp = setup
    run = _interrupted_run(tmp)
    train = tmp / "train.tsv"
    lines = train.read_text().splitlines()
    assert lines[0].startswith("fruit\t")
    lines[0] = "tools" + lines[0][len("fruit"):]                     # a label edited: the same size
    train.write_text("\n".join(lines) + "\n")
    r = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run), "-q")
    _, err = r.communicate(timeout=120)
    assert r.returncode == 2, err
    assert str(train).encode() in err and b"changed" in err and b"--force" in err
    forced = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run), "--force")
    _, err = forced.communicate(timeout=300)
    assert forced.returncode == 0, err.decode()
    assert b"continuing (--force)" in err
    checkpoint.load(run)


def test_kill_9_never_damages_the_best_model_and_resume_says_it_crashed(setup):
    tmp = setup
    run = tmp / "run"
    partial = run / rundir.PARTIAL
    p = nlclf(tmp, "train", str(tmp / "c.yaml"), "--out", str(run), "-q")
    _wait_for(partial / "model.json")
    for delay in (0.05, 0.3, 0.7):
        time.sleep(delay)
        checkpoint.load(partial)                          # the best model so far: loadable at any moment
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    model, _, _ = checkpoint.load(partial)
    assert model.proba(["apple pear"]).shape == (1, 3)
    state, _ = checkpoint.load_state(partial)
    assert state.epoch >= 2
    (partial / ".model.0123456789abcdef.npz.tmp99999").write_bytes(b"x" * 1000)   # a save killed midway
    (run / ".config.yaml.tmp4242").write_bytes(b"half")
    r = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run))
    _, err = r.communicate(timeout=300)
    assert r.returncode == 0, err.decode()
    assert b"resuming the crashed run" in err, err
    _same_model(run, tmp / "ref")
    assert not [f for f in run.rglob("*") if ".tmp" in f.name], "stale temporaries survived"


def test_resume_after_a_crash_before_any_state_is_explained(setup):
    """A run killed before its first saved state: resume says it crashed and that there is
    nothing to resume (it used to say the run had finished)."""
    tmp = setup
    slow = tmp / "slow.yaml"
    slow.write_text(CONFIG.replace("checkpoint_seconds: 0", "checkpoint_seconds: 3600"))
    run = tmp / "run"
    p = nlclf(tmp, "train", str(slow), "--out", str(run), "-q")
    _wait_for(run / rundir.PARTIAL / "run.json")
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    r = nlclf(tmp, "train", str(slow), "--resume", str(run), "-q")
    _, err = r.communicate(timeout=120)
    assert r.returncode == 4 and b"crashed" in err and b"nothing to resume" in err, err
    assert b"finished" not in err
    info = json.loads((run / rundir.PARTIAL / "run.json").read_text())
    assert info["status"] == "running"                   # what it was when the process died

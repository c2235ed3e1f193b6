"""Interruptions: Ctrl-C at a random batch then --resume gives the same bytes; kill -9 never
damages the best model."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nlclf import checkpoint

from test_pipeline import write_data

REPO = Path(__file__).resolve().parent.parent
CONFIG = """seed: 5
data: {train: train.tsv, dev: dev.tsv}
features: {kind: bow}
model: {hidden: [32], dropout: 0.3}
train: {optimizer: adam, lr: 0.003, batch_size: 2, epochs: 150, patience: 0, checkpoint_seconds: 0}
"""


def nlclf(tmp_path, *args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "NLCLF_DATA_ROOT"}
    return subprocess.Popen([sys.executable, "-m", "nlclf.cli", *args, "--data-root", str(tmp_path)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture
def setup(tmp_path):
    write_data(tmp_path, n=40)
    (tmp_path / "c.yaml").write_text(CONFIG)
    ref = nlclf(tmp_path, "train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "ref"), "-q")
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()
    return tmp_path


def _wait_for(path: Path, timeout: float = 120):
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.02)


def test_ctrl_c_then_resume_is_bitwise_identical(setup):
    tmp = setup
    rng = np.random.default_rng(int(time.time()))
    run = tmp / "run"
    p = nlclf(tmp, "train", str(tmp / "c.yaml"), "--out", str(run), "-q")
    _wait_for(run / "state.json")                      # the first epoch has ended: we are mid-training
    time.sleep(float(rng.uniform(0.0, 0.5)))            # a random batch of a later epoch (an epoch: ~25 ms)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"--resume" in err
    state, _ = checkpoint.load_state(run)
    assert not state.done and (state.epoch, state.batch) > (1, 0)
    r = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run), "-q")
    out, err = r.communicate(timeout=300)
    assert r.returncode == 0, err.decode()
    files, ref = checkpoint.model_files(run), checkpoint.model_files(tmp / "ref")
    assert [f.name for f in files] == [f.name for f in ref]
    for a, b in zip(files, ref):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert not (run / "state.json").exists() and not list(run.glob("state.*.npz"))
    assert len(list(run.glob("model.*.npz"))) == 1
    again = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run), "-q")
    _, err = again.communicate(timeout=120)
    assert again.returncode != 0 and b"nothing to resume" in err


def test_resume_with_another_config_is_refused(setup):
    tmp = setup
    run = tmp / "run"
    p = nlclf(tmp, "train", str(tmp / "c.yaml"), "--out", str(run), "-q")
    _wait_for(run / "state.json")
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=120) == 130
    r = nlclf(tmp, "train", str(tmp / "c.yaml"), "--resume", str(run), "--set", "train.lr=0.1", "-q")
    _, err = r.communicate(timeout=120)
    assert r.returncode == 2 and b"train.lr" in err


def test_kill_9_never_damages_the_best_model(setup):
    tmp = setup
    run = tmp / "run"
    p = nlclf(tmp, "train", str(tmp / "c.yaml"), "--out", str(run), "-q")
    _wait_for(run / "model.json")
    for delay in (0.05, 0.3, 0.7):
        time.sleep(delay)
        checkpoint.load(run)                              # loadable at any moment
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    model, _, _ = checkpoint.load(run)
    assert model.proba(["apple pear"]).shape == (1, 3)
    state, _ = checkpoint.load_state(run)
    assert state.epoch >= 2

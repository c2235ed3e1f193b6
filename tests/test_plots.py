"""Each plot writes a real PNG atomically; without matplotlib a clear error, and no file."""

import sys

import numpy as np
import pytest

from nlclf import plots
from nlclf.calibration import reliability
from nlclf.errors import NlclfError

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = [{"epoch": e, "train_loss": 1.2 / e, "dev_loss": 1.0 / e + 0.05 * e, "dev_accuracy": 0.5 + 0.05 * e,
            "dev_macro_f1": 0.45 + 0.05 * e, "lr": 0.1, "seconds": 0.1} for e in range(1, 8)]


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


def check_png(path, out):
    assert out == path and path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]        # no temp file left


def test_learning_curves(mpl, tmp_path):
    path = tmp_path / "curves.png"
    check_png(path, plots.learning_curves(HISTORY, path))


def test_confusion_heatmap(mpl, tmp_path):
    path = tmp_path / "confusion.png"
    check_png(path, plots.confusion_heatmap([[50, 3, 1], [4, 40, 6], [0, 7, 33]], ["neg", "neu", "pos"], path))


def test_reliability_diagram(mpl, tmp_path):
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=500)
    y = rng.integers(0, 3, 500)
    path = tmp_path / "reliability.png"
    check_png(path, plots.reliability_diagram(reliability(proba, y, bins=10), path))


def test_overwrites_in_place(mpl, tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"old")
    check_png(path, plots.learning_curves(HISTORY[:2], path))
    assert plots.available()


def test_without_matplotlib_a_clear_error(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    assert not plots.available()
    with pytest.raises(plots.PlotsUnavailable, match="pip install matplotlib") as info:
        plots.learning_curves(HISTORY, tmp_path / "curves.png")
    assert isinstance(info.value, ImportError) and isinstance(info.value, NlclfError)
    assert list(tmp_path.iterdir()) == []

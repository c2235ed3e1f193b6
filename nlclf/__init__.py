"""nlclf: train, evaluate and apply text classifiers from the shell.

The model is the multilayer perceptron of the course notes on non-linear models, written in
NumPy with every gradient derived by hand.

Shapes, in every module's docstrings and end-of-line comments, use one set of letters:

    N  batch (texts, examples)        H  hidden units of a layer
    V  vocabulary (input columns)     C  classes
    D  features (the width of f)      T  tokens kept a text (embed_concat)
    E  embedding width                U  rows a sparse gradient touches

A module adds its own where it needs one (B hash buckets, K ensemble members, M bins,
R resamples) and says so.

The Python API (nlclf.api) is loaded on first use, so that ``import nlclf`` (and the
command line's start) costs no NumPy: ``nlclf.load``, ``nlclf.train``, ``nlclf.Model``,
and ``nlclf.sklearn.TextMLPClassifier``.
"""

__version__ = "0.1.0"

_API = {"load", "train", "Model", "TrainResult"}
__all__ = sorted(_API | {"sklearn", "__version__"})


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    if name == "sklearn":
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nlclf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

"""A scikit-learn estimator: ``TextMLPClassifier``, nlclf's network on raw texts.

    from nlclf.sklearn import TextMLPClassifier
    clf = TextMLPClassifier(hidden=[64], epochs=10).fit(texts, y)
    clf.predict(["another text"]); clf.predict_proba(texts)       # (N, C), columns in classes_ order

Its parameters are nlclf's config keys (the ``features``, ``model`` and ``train`` sections,
``seed`` and ``data.dev_fraction``) by their own names; each defaults to None, which means
the config's default (so a kind's own defaults still apply), and is checked at ``fit`` like
a config file. ``fit`` trains in memory and writes nothing: the vocabulary (and feature
weights) from the training texts only, a stratified, seeded ``dev_fraction`` of them held out
for early stopping and the best epoch, as ``nlclf train`` does without a dev file. The same
parameters and data give the same predictions. Labels ``y`` may be of any sortable type;
``classes_`` holds them sorted, as scikit-learn's classifiers do.
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from . import data
from .api import _texts, flat_names, make_config
from .pipeline import fit_lists

SECTIONS = ("features", "model", "train")
LEFT_OUT = {"train.checkpoint_seconds"}          # nothing is saved while fitting in memory
EXTRA = ("seed", "data.dev_fraction")

# parameter name -> dotted config key
PARAMS = {name: key for name, key in sorted(flat_names().items())
          if (key.split(".")[0] in SECTIONS or key in EXTRA) and key not in LEFT_OUT}


class TextMLPClassifier(ClassifierMixin, BaseEstimator):
    """nlclf's MLP text classifier as a scikit-learn estimator; see the module docstring.

    Fitted attributes: ``classes_`` (C,), ``classifier_`` (the nlclf model), ``best_epoch_``.
    """

    def __init__(self, **params):
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise TypeError(f"TextMLPClassifier got unknown parameter(s) {', '.join(unknown)}; "
                            f"it takes nlclf's config keys: {', '.join(PARAMS)}")
        for name in PARAMS:
            setattr(self, name, params.get(name))

    def _config(self):
        over = {PARAMS[n]: getattr(self, n) for n in PARAMS if getattr(self, n) is not None}
        over.setdefault("features.workers", 1)       # no forked workers inside a scikit-learn search
        over["data.train"] = "<in memory>"
        return over

    def fit(self, X, y):
        """Train on texts X (N,) and labels y (N,); returns self."""
        texts = _texts(X, "X")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(texts):
            raise ValueError(f"y must be one label per text: {len(texts)} texts, y of shape {y.shape}")
        self.classes_, ids = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least two classes in y; got {len(self.classes_)}")
        names = [str(i) for i in range(len(self.classes_))]     # nlclf's labels: positions in classes_
        labels = [names[i] for i in ids.tolist()]
        over = self._config()
        over["data.labels"] = names
        cfg = make_config(None, over)
        is_dev = data.stratified_split(labels, cfg.data.dev_fraction, cfg.seed)
        part = lambda dev: ([l for l, d in zip(labels, is_dev) if d == dev],
                            [t for t, d in zip(texts, is_dev) if d == dev])
        self.classifier_, result = fit_lists(cfg, part(False), part(True))
        self.best_epoch_ = result.best_epoch
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(N, C): the probability of each class of ``classes_`` for each text."""
        texts = _texts(X, "X")
        if not texts:
            return np.zeros((0, len(self.classes_)))
        return self.classifier_.proba(texts).astype(np.float64)

    def predict(self, X) -> np.ndarray:
        """(N,): the most probable class of each text."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


TextMLPClassifier.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in PARAMS])

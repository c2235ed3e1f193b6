"""The Python API: load a trained model, predict, explain and train from a program.

    import nlclf
    model = nlclf.load("runs/sst5")
    model.predict(["a gripping film", "dull"])           # ['positive', 'negative']
    model.predict_proba(["a gripping film"])             # (N, C), columns in model.labels order
    path, model = nlclf.train("configs/sst5.yaml", lr=0.001, out="runs/mine")

Shapes: N texts, C classes. Config keys are given as dotted keys (``**{"train.lr": 0.001}``)
or, where the name is one section's only, as plain keyword arguments (``lr=0.001``). Nothing
here prints or writes anything but the run folder ``train`` is asked for; errors are the
package's (ConfigError, DataError, CheckpointError, ...) and TypeError for arguments of the
wrong type.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from . import __version__
from . import checkpoint, explain as explain_mod
from .config import Config, load as load_config, load_text, to_dict
from .errors import ConfigError
from .nn import mlp
from .predict import decided_labels

SCORE_BATCH = 65536          # texts featurized and scored together: bounds the (N, H) activations


def _sections() -> dict:
    """section name -> its dataclass, in Config's order (seed is a section of one key)."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def config_keys() -> dict:
    """Every config key as its dotted name -> (section, field). ``seed`` is top-level."""
    out = {}
    for name, tp in _sections().items():
        if dataclasses.is_dataclass(tp):
            out.update({f"{name}.{f.name}": (name, f.name) for f in dataclasses.fields(tp)})
        else:
            out[name] = (name, None)
    return out


def flat_names() -> dict:
    """Plain name -> dotted key, for the names that only one section uses (``lr`` ->
    ``train.lr``, ``hidden`` -> ``model.hidden``); a name two sections share must be dotted."""
    seen: dict = {}
    for dotted, (_, field) in config_keys().items():
        seen.setdefault(field or dotted, []).append(dotted)
    return {name: keys[0] for name, keys in seen.items() if len(keys) == 1}


def dotted_overrides(overrides: dict) -> list:
    """[(dotted key, value)] of keyword overrides; an unknown name is a ConfigError with a hint."""
    keys, flat = config_keys(), flat_names()
    out = []
    for name, value in overrides.items():
        key = name if name in keys else flat.get(name)
        if key is None:
            import difflib
            close = difflib.get_close_matches(name, list(flat) + list(keys), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{name}: not a config key{hint}; give a dotted key such as train.lr, or a "
                              f"key's own name (lr, hidden, ngrams, ...)")
        out.append((key, _plain(value)))
    return out


def _plain(value):
    """Tuples, NumPy scalars and paths as the YAML values a config holds."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def make_config(config=None, overrides: dict | None = None) -> Config:
    """A validated Config from a YAML file's path, a dict of sections (as the YAML holds them),
    a Config, or None (the defaults), with keyword ``overrides`` applied and checked like
    ``--set``. A dict's relative data paths are taken relative to the working directory
    unless it sets data.root."""
    try:
        return _make_config(config, dotted_overrides(overrides or {}))
    except ConfigError as e:              # an override is a keyword argument here, not a --set option
        raise ConfigError("\n".join(line.removeprefix("--set ") for line in str(e).splitlines())) from None


def _make_config(config, over: list) -> Config:
    if config is None or isinstance(config, dict):
        raw = _plain(dict(config or {}))
        data = raw.get("data")
        if not (isinstance(data, dict) and data.get("root")) and not any(k == "data.root" for k, _ in over):
            over.insert(0, ("data.root", str(Path.cwd())))
        return load_text(json.dumps(raw), "<dict>", over)
    if isinstance(config, Config):
        if not over:
            return config
        return load_text(json.dumps(to_dict(config)), "<Config>", over)
    if isinstance(config, (str, Path)):
        return load_config(config, over)
    raise TypeError(f"config must be a path, a dict of sections, a Config or None; got {type(config).__name__}")


def _texts(texts, what: str = "texts") -> list:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings; got one string (wrap it: [text])")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a string; got {type(t).__name__}")
    return texts


class Model:
    """A trained classifier: what ``nlclf.load`` returns.

    ``labels`` names the C columns of ``predict_proba``; ``config`` is the run's effective
    Config; ``metadata()`` what the model file records (labels, config, versions, checksum).
    Prediction is deterministic and does not depend on how texts are batched.
    """

    def __init__(self, classifier, config: Config, meta: dict, path=None):
        self.classifier, self.config, self.meta = classifier, config, meta
        self.path = Path(path) if path is not None else None

    @property
    def labels(self) -> list:
        return list(self.classifier.labels)

    @property
    def checksum(self) -> str:
        """The SHA-256 of the model's arrays, as model.json records it."""
        return self.meta.get("sha256", "")

    def __repr__(self) -> str:
        where = f"{str(self.path)!r}, " if self.path else ""
        return f"nlclf.Model({where}{len(self.labels)} labels, {self.config.features.kind})"

    def metadata(self) -> dict:
        """Labels, the effective config, versions, the checksum and the network's size."""
        return {"path": str(self.path) if self.path else None, "labels": self.labels,
                "config": to_dict(self.config), "nlclf_version": __version__,
                "trained_with": self.meta.get("nlclf_version"), "format_version": self.meta.get("format_version"),
                "checksum": self.checksum, "features": int(self.classifier.featurizer.n_features),
                "parameters": int(mlp.n_params(self.classifier.params)),
                "temperature": float(self.classifier.temperature), "multi_label": self.multi_label,
                "thresholds": (None if self.thresholds is None else float(self.thresholds)
                               if np.ndim(self.thresholds) == 0 else [float(t) for t in self.thresholds])}

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """o (N, C): the probability of each label (columns in ``labels`` order) for each text."""
        texts = _texts(texts)
        parts = [self.classifier.proba(texts[i:i + SCORE_BATCH]) for i in range(0, len(texts), SCORE_BATCH)]
        if not parts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def multi_label(self) -> bool:
        """Whether a text may get several labels (a model trained on several labels a text)."""
        return self.classifier.several

    @property
    def thresholds(self):
        """A multi-label model's threshold chosen on dev: a number, or (C,) one per label; else None."""
        return self.classifier.thresholds

    def top(self, texts: Iterable[str], k: int | None = None, threshold: float | None = None,
            allow_empty: bool = False) -> list:
        """For each text, its ``k`` most probable labels (k = -1: all; None: 1) with a probability
        of at least ``threshold``, as (label, probability) pairs, most probable first. A
        multi-label model gives, unless k is given without a threshold, every label at or above
        the threshold (``threshold``, else its own), the most probable one if none is unless
        ``allow_empty``, at most k of them (predict.decided_labels, as `nlclf predict`)."""
        k, threshold = _check_k(k, threshold)
        if k is None and not self.multi_label:
            k = 1
        return decided_labels(self.classifier, self.predict_proba(texts), k, threshold, allow_empty)

    def predict(self, texts: Iterable[str], k: int | None = None, threshold: float | None = None,
                allow_empty: bool = False) -> list:
        """One result a text, in order: its label when k is 1 (or None) and there is no threshold;
        else the list of its ``k`` most probable labels (k = -1: every label) whose probability is
        at least ``threshold`` (possibly empty). A multi-label model gives a list of labels a
        text: those of ``top``."""
        top = self.top(texts, k, threshold, allow_empty)
        if not self.multi_label and k in (None, 1) and threshold is None:
            return [row[0][0] for row in top]
        return [[label for label, _ in row] for row in top]

    def explain(self, text, k: int = 5):
        """Why the model predicts what it does for ``text`` (a string, or a list of them): the
        predicted label, its probability, and the k features that pushed its logit most
        toward it and most against it (gradient × input on the first layer). A dict
        {"label", "proba", "toward": [(feature, score), ...], "against": [...]}, or a list of
        such dicts for a list of texts. A model with several labels a text adds "labels": one
        such dict for every label it predicts, most probable first."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise TypeError(f"k must be a positive integer; got {k!r}")
        one = isinstance(text, str)
        texts = [text] if one else _texts(text)
        out = explain_mod.explain(self.classifier, texts, k)
        for r in out:
            r.pop("text", None)
        return out[0] if one else out


def _check_k(k, threshold):
    if k is None:
        pass
    elif not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k == 0 or k < -1:
        raise TypeError(f"k must be a positive integer or -1 (every label); got {k!r}")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
                or not 0 <= threshold <= 1:
            raise TypeError(f"threshold must be a number from 0 to 1, or None; got {threshold!r}")
        threshold = float(threshold)
    return (None if k is None else int(k)), threshold


def load(path) -> Model:
    """The model trained into the folder ``path`` (``nlclf train``'s output), verified against
    its checksum; a CheckpointError says what is wrong with a folder that is not one."""
    classifier, config, meta = checkpoint.load(path)
    return Model(classifier, config, meta, path)


class TrainResult(NamedTuple):
    """What ``train`` returns: the run folder, the model loaded from it (None with
    ``load_model=False``) and the run's report (what report.json holds)."""

    path: Path
    model: Model | None
    report: dict


def train(config=None, out=None, *, data_root=None, overwrite: bool = False, load_model: bool = True,
          log=None, on_progress=None, resume: bool = False, should_stop=None, force: bool = False,
          command: list | None = None, **overrides) -> TrainResult:
    """Train as ``nlclf train`` does and return (run folder, loaded model, report).

    ``config``: a YAML file's path, a dict of sections, a Config, or None (the defaults, with
    ``train=`` naming the training file). ``overrides``: config keys, dotted
    (``**{"train.lr": 0.001}``) or by their own name (``lr=0.001``, ``hidden=[512]``,
    ``train="train.tsv"`` for data.train). ``out``: the run folder (default output.dir); one
    that holds files is refused unless ``overwrite``. ``log(message)`` receives notes,
    ``on_progress(event, info)`` progress events; the rest is as ``nlclf train``'s options."""
    from .pipeline import run_train
    cfg = make_config(config, overrides)
    where = Path(out or cfg.output.dir)
    report = run_train(cfg, data_root, where, overwrite, on_progress, log or (lambda msg: None), resume=resume,
                       should_stop=should_stop, force=force, command=command)
    return TrainResult(where, load(where) if load_model else None, report)

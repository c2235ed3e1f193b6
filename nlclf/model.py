"""A trained classifier: featurizer + network + label names, and prediction on raw texts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features.base import TextFeaturizer
from .nn import mlp


@dataclass
class Classifier:
    featurizer: TextFeaturizer
    spec: mlp.NetSpec
    params: dict
    labels: list
    temperature: float = 1.0
    compression: dict | None = None      # what nlclf compress did (rows kept, bits, ...); None: not compressed
    thresholds: object = None       # sigmoid outputs: the threshold (a number, or (C,) one a label) chosen on dev

    @property
    def several(self) -> bool:
        """Whether a text may have several labels (a sigmoid output)."""
        return self.spec.output == "sigmoid"

    def proba(self, texts: list) -> np.ndarray:
        """o (N, C) for raw texts (with the model's softmax temperature; σ(z) for several labels)."""
        X = self.featurizer.transform_batch(texts)
        return mlp.predict_proba(self.params, self.spec, X, self.temperature)

    def logits(self, texts: list) -> np.ndarray:
        """z (N, C) for raw texts, before any temperature."""
        return mlp.forward(self.params, self.spec, self.featurizer.transform_batch(texts))[0]

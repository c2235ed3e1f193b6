"""Token ids for ``embed_concat``: X (N, T) int32, the ids of the first (or last) T tokens of
each text, padded with <pad>.

Shapes: the package's letters (N texts, T tokens kept).
"""

from __future__ import annotations

import numpy as np

from ..vocab import PAD_ID
from .base import TextFeaturizer


class TokenIds(TextFeaturizer):
    """Words -> (N, T) int32 ids; no n-grams, no weights."""

    def counts(self, texts: list):
        """X (N, T) int32: each text's token ids, truncated (``truncate``: head or tail) or padded."""
        ids, rows, is_sep = self.word_ids(texts)
        keep = ~is_sep
        ids, rows, n = ids[keep], rows[keep], len(texts)
        T = self.spec.max_tokens
        lengths = np.bincount(rows, minlength=n)                          # (N,)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        pos = np.arange(len(ids)) - starts[rows]                            # position in its text
        if self.spec.truncate == "tail":
            pos = pos - np.maximum(0, lengths[rows] - T)
        inside = (pos >= 0) & (pos < T)
        X = np.full((n, T), PAD_ID, dtype=np.int32)                         # (N, T)
        X[rows[inside], pos[inside]] = ids[inside]
        return X

    def stack(self, parts: list):
        return np.concatenate(parts) if parts else np.zeros((0, self.spec.max_tokens), np.int32)

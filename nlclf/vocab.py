"""The vocabulary (token <-> id) and the label set, built from the training split only."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .errors import DataError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


class Vocabulary:
    """Ids 0 and 1 are <pad> and <unk>; the rest are ordered by (-count, token).

    Build with ``Vocabulary.build(counts, min_count, max_size)``; ``max_size``
    counts the kept tokens, not the two reserved ones (0 = no limit). ``counts`` (V,) int64:
    how often each entry was seen in training (0 for the reserved two), or None (a model saved
    before counts were kept).
    """

    def __init__(self, tokens: list, counts=None):
        self.tokens = list(tokens)
        self.index = dict(zip(self.tokens, range(len(self.tokens))))
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        assert self.tokens[:2] == [PAD, UNK]
        assert self.counts is None or self.counts.shape == (len(self.tokens),)

    @classmethod
    def build(cls, counts: Counter, min_count: int = 1, max_size: int = 0) -> "Vocabulary":
        kept = sorted(((t, c) for t, c in counts.items() if c >= min_count and t not in (PAD, UNK)),
                      key=lambda tc: (-tc[1], tc[0]))
        if max_size:
            kept = kept[:max_size]
        return cls([PAD, UNK] + [t for t, _ in kept], [0, 0] + [c for _, c in kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index


class LabelSet:
    """The labels in ``order`` (data.labels), or sorted when it is empty; class id = position.
    ``order`` must name every label seen, and nothing else."""

    def __init__(self, labels, order=()):
        seen = set(labels)
        if order:
            missing, unused = sorted(seen - set(order)), [l for l in order if l not in seen]
            if missing or unused:
                raise ValueError((f"labels not in data.labels: {', '.join(missing[:5])}" if missing else "")
                                 + ("; " if missing and unused else "")
                                 + (f"data.labels names labels no training example has: "
                                    f"{', '.join(unused[:5])}" if unused else ""))
            self.labels = list(order)
        else:
            self.labels = sorted(seen)
        self.index = {l: i for i, l in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def ids(self, labels: list, where, unknown: int | None = None) -> np.ndarray:
        """(N,) int64 class ids of ``labels``: the one way labels become ids. A label outside the
        set is an error naming ``where``, or ``unknown`` (e.g. -1: scored as a mistake)."""
        index = self.index
        if unknown is None:
            missing = sorted(set(labels) - set(index))
            if missing:
                raise DataError(f"{where}: labels not seen in training: {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''} (known: {', '.join(self.labels[:20])}"
                                f"{f', ... ({len(self)} in all)' if len(self) > 20 else ''})")
            return np.fromiter((index[l] for l in labels), dtype=np.int64, count=len(labels))
        return np.fromiter((index.get(l, unknown) for l in labels), dtype=np.int64, count=len(labels))

"""Texts to the matrix the network reads, one featurizer per kind (see features.base for the
protocol they share):

- ``bag.Bag`` for ``bow`` and ``embed_mean``: a bag of words, word n-grams and character
  n-grams, X (N, D) in CSR, weighted (``weighting``: pure functions of the counts);
- ``ids.TokenIds`` for ``embed_concat``: X (N, T) int32 token ids.

The submodules are imported on demand: ``config`` reads ``features.weighting.WEIGHTINGS``
to validate, and the featurizers read their ``FeatureSpec`` from ``config``.
"""

from __future__ import annotations


def make(spec, vocab=None, weights=None):
    """The featurizer of ``spec.kind``, empty (to fit) or with a saved vocabulary and weights."""
    if spec.kind == "embed_concat":
        from .ids import TokenIds
        return TokenIds(spec, vocab, weights)
    from .bag import Bag
    return Bag(spec, vocab, weights)

"""What every featurizer shares: the tokenizer, the vocabulary fitted on the training texts,
and the plumbing that streams texts through them a chunk at a time.

Shapes: the package's letters (N texts, V vocabulary, D features).

The protocol a featurizer keeps (``bag.Bag``, ``ids.TokenIds``):

- ``fit_vocab(texts)``: count the training texts (streamed) and build the vocabulary;
- ``fit_counts(texts, mask)``: the vocabulary and the training X together (bags: one pass);
- ``fit_weights(X, y)``: per-feature weights from the training counts and label ids (bags only);
- ``counts(texts)`` / ``transform_counts(texts)``: the unweighted matrix of a chunk / a stream;
- ``weigh(X)``: the weights and normalisation applied to counts; ``transform(texts)`` both;
- ``n_features``: the number of input columns the network reads;
- ``vocab`` and ``weights``: what a checkpoint saves, given back to the constructor on load.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Iterable

import numpy as np

from .. import parallel
from ..config import AUTO, FeatureSpec
from ..text import SEP, TOKENIZERS, tokenize_distinct
from ..vocab import UNK_ID, Vocabulary

CHUNK = 8192          # texts tokenized together

AUTO_TOKENS = 1_000_000       # the "auto" features keys: training sets of fewer tokens are small ...
AUTO_MAX_SIZE = 200_000       # ... on larger ones the vocabulary keeps this many entries (max_size) ...
AUTO_CHAR_BELOW = 50          # ... and only words seen fewer times get character n-grams (char_below)


def resolve_auto(spec: FeatureSpec, n_tokens: int) -> FeatureSpec:
    """``spec`` with its ``auto`` values chosen for a training set of n_tokens tokens. Below
    AUTO_TOKENS every feature is kept and every word has its character n-grams (on the four
    benchmark sets both pay); beyond, a feature budget bounds the model and the character
    n-grams of frequent words, one feature entry per occurrence, are left out (README: the
    features table)."""
    small = n_tokens < AUTO_TOKENS
    values = {"max_size": 0 if small else AUTO_MAX_SIZE, "char_below": 0 if small else AUTO_CHAR_BELOW}
    return dataclasses.replace(spec, **{k: v for k, v in values.items() if getattr(spec, k) == AUTO})


class TextFeaturizer:
    """Tokenizer + vocabulary; fitted on training texts only. Texts are processed a chunk at a
    time: one tokenizer call per chunk, token ids by one ``map`` over its tokens, the text of
    each token found from the separator tokens with NumPy."""

    def __init__(self, spec: FeatureSpec, vocab: Vocabulary | None = None, weights=None):
        assert spec.tokenizer in TOKENIZERS
        self.spec = spec
        self.vocab = vocab
        self.weights = weights
        self.n_tokens = None            # tokens of the training texts, once fitted (not saved)
        self._lookup = None

    @property
    def n_features(self) -> int:
        return len(self.vocab)

    # --- tokens -------------------------------------------------------------------------

    def _token_ids(self, texts: list) -> tuple:
        """(distinct tokens of a chunk of texts, (T,) int32 index of each token into them), each
        text followed by SEP (text.tokenize_distinct)."""
        s = self.spec
        return tokenize_distinct(texts, s.tokenizer, s.lowercase, not s.strip_accents, not s.strip_punct,
                                 s.max_chars, s.max_token_chars)

    def _tokens(self, texts: list) -> list:
        """The tokens of a chunk of texts as strings, each text followed by SEP."""
        distinct, ids = self._token_ids(texts)
        return [distinct[i] for i in ids.tolist()]

    def tokens_of(self, texts: list) -> list:
        """The tokens of texts as the model sees them (SEP after each text): for inspection."""
        return self._tokens(list(texts))

    def chunk_counts(self, texts: list) -> Counter:
        """How often each vocabulary entry occurs in a chunk of texts (words; bags add more)."""
        distinct, ids = self._token_ids(texts)
        return Counter(dict(zip(distinct, np.bincount(ids, minlength=len(distinct)).tolist())))

    def fit_vocab(self, texts: Iterable[str]):
        """Count the training texts (streamed) and build the vocabulary."""
        counts = Counter()
        for c in self.map_chunks("chunk_counts", texts):
            counts.update(c)
        counts.pop(SEP, None)
        self.n_tokens = sum(counts.values())
        self.spec = resolve_auto(self.spec, self.n_tokens)
        self.vocab = Vocabulary.build(counts, self.spec.min_count, self.spec.max_size)
        self._lookup = None
        self._vocab_changed()
        return self

    def _vocab_changed(self) -> None:
        """Drop what was derived from the previous vocabulary (bags keep caches)."""

    def prepare(self) -> None:
        """Build now what transforming a text needs (lookup tables; otherwise built by the first
        transform): a loaded model does it while its arrays are being checked."""
        if self._lookup is None:
            self._lookup = dict(self.vocab.index)
            self._lookup[SEP] = -1

    def word_ids(self, texts: list):
        """(ids (T,), rows (T,), is_sep (T+N,)): the id of every token of a chunk of texts but the
        separators (unknown words -> <unk>), the text each belongs to, and where the separators
        were. Each distinct token is looked up once."""
        self.prepare()
        distinct, lids = self._token_ids(texts)
        ids = np.fromiter(map(self._lookup.get, distinct, itertools.repeat(UNK_ID)), dtype=np.int64,
                          count=len(distinct))[lids]
        is_sep = ids < 0
        rows = np.cumsum(is_sep) - is_sep                                   # text of each token
        return ids, rows, is_sep

    # --- matrices ---------------------------------------------------------------------------

    def fit_weights(self, X, y=None) -> None:
        """Per-feature weights from the training counts; none by default."""

    def weigh(self, X):
        """Counts -> what the network reads; unchanged by default."""
        return X

    def counts(self, texts: list):
        raise NotImplementedError

    def stack(self, parts: list):
        raise NotImplementedError

    def transform_counts(self, texts: Iterable[str]):
        """Unweighted X for any number of texts, featurized a chunk at a time."""
        return self.stack(list(self.map_chunks("counts", texts)))

    def transform_split(self, texts: Iterable[str], mask):
        """Unweighted (X[~mask], X[mask]) for texts streamed once: rows are routed chunk by chunk."""
        parts, held = [], []
        start = 0
        for X in self.map_chunks("counts", texts):
            m = np.asarray(mask[start:start + X.shape[0]], dtype=bool)
            start += X.shape[0]
            parts.append(X[~m])
            held.append(X[m])
        return self.stack(parts), self.stack(held)

    def fit_counts(self, texts, mask=None, compact: bool = False):
        """Fit the vocabulary on training texts and return their counts X; with ``mask`` (a
        boolean (N,) of rows held out as dev), (X[~mask], X[mask]) and the vocabulary from the
        other rows. ``texts`` is a function giving a fresh stream of the texts each call: here
        it is read twice (counts, then X); bags read it once. ``compact`` is for bags (Bag:
        X as a RowStore); other kinds ignore it."""
        if mask is None:
            self.fit_vocab(texts())
            return self.transform_counts(texts())
        self.fit_vocab(t for t, m in zip(texts(), mask) if not m)
        return self.transform_split(texts(), mask)

    def transform(self, texts: Iterable[str]):
        """X for texts: the counts, weighed."""
        return self.weigh(self.transform_counts(texts))

    def transform_batch(self, texts: list):
        """transform's X for a batch of texts to predict (bags: without SciPy)."""
        return self.transform(texts)

    def fit(self, texts: list, y=None):
        """Vocabulary and feature weights from the training texts (and label ids y, for nb)."""
        self.fit_transform(texts, y)
        return self

    def fit_transform(self, texts: list, y=None):
        """Fit on the training texts (and their label ids y (N,), which nb weights need) and
        return their X."""
        self.fit_vocab(texts)
        X = self.transform_counts(texts)
        self.fit_weights(X, y)
        return self.weigh(X)

    def map_chunks(self, method: str, texts: Iterable[str]):
        """``self.<method>(chunk)`` for each chunk of CHUNK texts, in order. With more than one
        chunk and ``workers`` != 1, the chunks go to forked worker processes, at most two per
        worker in flight: memory holds a few chunks of text, never the whole input. The results
        are the same either way."""
        yield from parallel.ordered_map(getattr(self, method), parallel.chunks(texts, CHUNK), self.spec.workers,
                                        min_items=2)

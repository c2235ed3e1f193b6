"""The bag of (n-)grams: ``bow`` and ``embed_mean`` read X (N, D) in CSR.

Shapes: the package's letters (N texts, V vocabulary), B hash buckets, D = V + B features.

Each text is the counts of its words, its word n-grams (2..``ngrams``, never across texts)
and the character n-grams of its words (fastText's subwords), over the training vocabulary;
n-grams outside it go to one of B hashed buckets, or are dropped when B = 0. ``weigh`` then
applies the weighting (features.weighting), ``char_weight`` and the row normalisation.
"""

from __future__ import annotations

import itertools
import zlib
from collections import Counter

import numpy as np
import scipy.sparse as sp

from ..text import CHAR_MARK, NGRAM_SEP, SEP, char_ngrams
from . import weighting
from .base import TextFeaturizer


def bucket_of(gram: str, n_buckets: int) -> int:
    """Stable hash of an n-gram into 0..B-1 (CRC-32: the same in every process)."""
    return zlib.crc32(gram.encode("utf-8")) % n_buckets


def word_grams(tokens: list, is_sep, n: int):
    """The word n-grams (2..n) of a separated token stream that do not cross a separator:
    (positions of their first token, strings)."""
    cs = np.concatenate([[0], np.cumsum(is_sep)])
    out_pos, out_grams = [], []
    for size in range(2, n + 1):
        if len(tokens) < size:
            break
        starts = np.flatnonzero(cs[size:] == cs[:-size])              # windows free of SEP
        if size == 2:
            grams = [tokens[i] + NGRAM_SEP + tokens[i + 1] for i in starts.tolist()]
        else:
            grams = [NGRAM_SEP.join(tokens[i:i + size]) for i in starts.tolist()]
        out_pos.append(starts)
        out_grams.extend(grams)
    pos = np.concatenate(out_pos) if out_pos else np.zeros(0, np.int64)
    return pos, out_grams


def stack_csr(parts: list, n_cols: int):
    """Stack CSR blocks row-wise into one CSR, preallocated, emptying ``parts`` as it goes
    so that peak memory is the result plus one block."""
    nnz = sum(p.nnz for p in parts)
    n = sum(p.shape[0] for p in parts)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float32)
    r = k = 0
    parts.reverse()
    while parts:
        p = parts.pop()
        m = p.shape[0]
        indptr[r + 1:r + m + 1] = p.indptr[1:] + k
        indices[k:k + p.nnz] = p.indices
        data[k:k + p.nnz] = p.data
        r, k = r + m, k + p.nnz
    if nnz < 2**31:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n_cols))


class Bag(TextFeaturizer):
    """Words, word n-grams and character n-grams -> weighted CSR (N, D)."""

    def __init__(self, spec, vocab=None, weights=None):
        super().__init__(spec, vocab, weights)       # weights (D,) float32: idf (tfidf) or NB spread (nb)
        self._char_cache = self._scale = None

    @property
    def char_range(self) -> tuple:
        """(min, max) of the character n-grams, or () for none."""
        return tuple(self.spec.char_ngrams)

    @property
    def n_features(self) -> int:
        """Input columns: V, plus B buckets."""
        return len(self.vocab) + self.spec.hash_buckets

    def _vocab_changed(self) -> None:
        self._char_cache = self._scale = None

    def chunk_counts(self, texts: list) -> Counter:
        """How often each token, word n-gram and character n-gram occurs in a chunk of texts."""
        tokens = self._tokens(texts)
        counts = Counter(tokens)
        if self.char_range:
            lo, hi = self.char_range
            for token, c in list(counts.items()):
                if token != SEP:
                    for g in char_ngrams(token, lo, hi):
                        counts[g] += c
        if self.spec.ngrams > 1:
            is_sep = np.fromiter((t == SEP for t in tokens), dtype=bool, count=len(tokens))
            counts.update(word_grams(tokens, is_sep, self.spec.ngrams)[1])
        return counts

    def token_ids(self, texts: list):
        """(ids, rows, N): the feature id of every token, n-gram and character n-gram of the
        texts, and the text it belongs to. Unknown words -> <unk>; n-grams outside the
        vocabulary -> a hash bucket, or dropped when B = 0."""
        tokens = self._tokens(texts)
        ids, rows, is_sep = self.word_ids(tokens)
        if self._char_cache is None:
            self._char_cache = {}
        keep = ~is_sep
        out_ids, out_rows = [ids[keep]], [rows[keep]]
        if self.spec.ngrams > 1:
            pos, grams = word_grams(tokens, is_sep, self.spec.ngrams)
            gids = self._gram_ids(grams)
            found = gids >= 0
            out_ids.append(gids[found])
            out_rows.append(rows[pos[found]])
        if self.char_range:
            cids, cpos = self._char_ids(tokens, ids)
            out_ids.append(cids)
            out_rows.append(rows[cpos])
        if len(out_ids) == 1:
            return out_ids[0], out_rows[0], len(texts)
        return np.concatenate(out_ids), np.concatenate(out_rows), len(texts)

    def _gram_ids(self, grams: list):
        """(G,) feature ids of n-grams: the vocabulary's, else a hash bucket, else -1 (dropped)."""
        V, B = len(self.vocab), self.spec.hash_buckets
        gids = np.fromiter(map(self._lookup.get, grams, itertools.repeat(-1)), dtype=np.int64,
                           count=len(grams))
        if B:
            miss = np.flatnonzero(gids < 0)
            if len(miss):
                gids[miss] = [V + bucket_of(grams[i], B) for i in miss.tolist()]
        return gids

    def _char_ids(self, tokens: list, ids):
        """(feature ids, positions in ``tokens``) of the character n-grams of every token but the
        separators. Each distinct token's grams are looked up once per call; those of vocabulary
        words are kept between calls (at most V entries, so memory stays flat on any input)."""
        lo, hi = self.char_range
        cache = self._char_cache
        local: dict = {}
        parts = []

        def grams_of(token):                                    # -> index into parts
            j = local.get(token)
            if j is None:
                g = cache.get(token)
                if g is None:
                    g = self._gram_ids(char_ngrams(token, lo, hi))
                    g = g[g >= 0]
                    if token in self._lookup:
                        cache[token] = g
                j = local[token] = len(parts)
                parts.append(g)
            return j

        pos = np.flatnonzero(ids >= 0)                          # (T,) tokens that are words
        which = np.fromiter(map(grams_of, [tokens[i] for i in pos.tolist()]), dtype=np.int64, count=len(pos))
        if not parts:
            return np.zeros(0, np.int64), pos
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))   # (U,)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.concatenate(parts)                            # the grams of each distinct token
        n = lengths[which]                                      # (T,) grams per token
        ends = np.cumsum(n)
        take = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - n - offsets[which], n)
        return flat[take], np.repeat(pos, n)

    def counts(self, texts: list):
        """Unweighted X (N, D) CSR: the counts of every feature."""
        ids, rows, n = self.token_ids(texts)
        X = sp.coo_matrix((np.ones(len(ids), dtype=np.float32), (rows, ids)),
                          shape=(n, self.n_features)).tocsr()               # sums repeats
        X.sum_duplicates()
        X.indices = X.indices.astype(np.int32, copy=False)
        return X

    def stack(self, parts: list):
        return stack_csr(parts, self.n_features)

    def fit_weights(self, X, y=None) -> None:
        """The idf (tfidf) or NB spread (nb) of each feature from the training counts X (N, D)
        and label ids y (N,): see features.weighting."""
        w = weighting.fit(self.spec.weighting, X, y, self.n_features, self.spec.nb_alpha)
        if w is not None:
            self.weights = w

    def weigh(self, X):
        """The weighting, char_weight and (bow) L2 normalisation applied to counts, in place."""
        return weighting.weigh(X, self.spec.weighting, self.column_scale(),
                               normalize=self.spec.normalize and self.spec.kind == "bow")

    def column_scale(self):
        """(D,) float32 factor of each feature, or None for none: the idf or NB weights (tfidf,
        nb) times ``char_weight`` on the character n-grams. With char_weight it is derived from
        the vocabulary and the weights (so never saved) and built once for them."""
        weights = self.weights if self.spec.weighting in weighting.FITTED else None
        if not self.char_range or self.spec.char_weight == 1.0:
            return weights
        if self._scale is None or self._scale[0] is not weights:
            is_char = np.fromiter((t.startswith(CHAR_MARK) for t in self.vocab.tokens), dtype=bool,
                                  count=len(self.vocab))
            scale = np.ones(self.n_features, dtype=np.float32) if weights is None else weights.copy()
            scale[:len(self.vocab)][is_char] *= self.spec.char_weight
            self._scale = (weights, scale)
        return self._scale[1]

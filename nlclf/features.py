"""Texts to the matrix the network reads: a bag of (n-)grams as CSR, or token ids.

Letters: N texts, V vocabulary, B hash buckets, D = V + B features, T tokens kept.

``bow`` and ``embed_mean`` give X (N, D) in CSR (weighted counts); ``embed_concat``
gives X (N, T) int32 token ids padded with <pad>. Fitted on the training split only.
"""

from __future__ import annotations

import itertools
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from .text import TOKENIZERS, make_tokenizer, ngrams
from .vocab import PAD_ID, UNK_ID, Vocabulary

KINDS = ("bow", "embed_mean", "embed_concat")
WEIGHTINGS = ("count", "binary", "log", "tfidf")


@dataclass(frozen=True)
class FeatureSpec:
    """The ``features`` section of the config; defaults are the documented defaults."""

    kind: str = "bow"
    tokenizer: str = "regex"          # regex (Unicode words) | whitespace (pre-tokenized)
    lowercase: bool = True
    strip_accents: bool = False
    strip_punct: bool = False
    max_chars: int = 0                # cut each text to this many characters (0: no limit)
    min_count: int = 1
    max_size: int = 0                 # keep the most frequent (0: no limit)
    ngrams: int = 1                   # 2 adds bigrams (bow, embed_mean)
    hash_buckets: int = 0             # n-grams not in the vocabulary go to B buckets (0: dropped)
    weighting: str = "count"          # count | binary | log | tfidf
    normalize: bool = False           # L2-normalise each row (bow)
    max_tokens: int = 20              # T (embed_concat)
    truncate: str = "head"            # keep the head or the tail (embed_concat)
    embed_dim: int = 100              # e (embedding kinds)
    pretrained: str = ""              # word2vec/GloVe text file (embedding kinds)
    freeze: bool = False              # keep E fixed
    embed_lr: float = 1.0             # learning-rate multiplier for E
    embed_l2: float = 0.0             # L2 on the rows of E in the batch
    word_dropout: float = 0.0         # training: drop bag entries (bow) or words (embed_mean)


def bucket_of(gram: str, n_buckets: int) -> int:
    """Stable hash of an n-gram into 0..B-1 (CRC-32: the same in every process)."""
    return zlib.crc32(gram.encode("utf-8")) % n_buckets


class Featurizer:
    """Tokenizer + vocabulary (+ idf) -> feature matrix; ``fit`` on training texts only."""

    def __init__(self, spec: FeatureSpec, vocab: Vocabulary | None = None, idf=None):
        assert spec.tokenizer in TOKENIZERS
        self.spec = spec
        self.vocab = vocab
        self.idf = idf                              # (D,) float32 for tfidf
        self.tokenize = make_tokenizer(spec.tokenizer, spec.lowercase, not spec.strip_accents,
                                       not spec.strip_punct, spec.max_chars)

    @property
    def n_features(self) -> int:
        """Input columns: V, plus B buckets for the bag kinds."""
        extra = self.spec.hash_buckets if self.spec.kind != "embed_concat" else 0
        return len(self.vocab) + extra

    def _grams(self, tokens: list) -> list:
        n = self.spec.ngrams if self.spec.kind != "embed_concat" else 1
        return tokens + ngrams(tokens, n) if n > 1 else tokens

    def fit(self, texts: Iterable[str]) -> "Featurizer":
        """Count tokens (and n-grams) of the training texts; build the vocabulary and idf."""
        counts, df, n_docs = Counter(), Counter(), 0
        want_df = self.spec.weighting == "tfidf"
        for text in texts:
            grams = self._grams(self.tokenize(text))
            counts.update(grams)
            if want_df:
                df.update(set(grams))
            n_docs += 1
        self.vocab = Vocabulary.build(counts, self.spec.min_count, self.spec.max_size)
        if want_df:
            self.idf = self._idf(df, n_docs)
        return self

    def _idf(self, df: Counter, n_docs: int):
        """Smoothed idf, ln((1 + N) / (1 + df)) + 1, per column (D,).

        A bucket's df is the sum of the dfs of the n-grams hashed into it (an upper bound).
        """
        dfs = np.zeros(self.n_features, dtype=np.float64)
        index, V, B = self.vocab.index, len(self.vocab), self.spec.hash_buckets
        for gram, count in df.items():
            i = index.get(gram)
            if i is None:
                if B and " " in gram:
                    dfs[V + bucket_of(gram, B)] += count
                elif " " not in gram:
                    dfs[UNK_ID] += count
                continue
            dfs[i] += count
        return (np.log((1.0 + n_docs) / (1.0 + dfs)) + 1.0).astype(np.float32)

    def ids(self, text: str) -> list:
        """Feature ids of one text, in order, repeats kept: unknown words -> <unk>;
        n-grams outside the vocabulary -> a hash bucket, or dropped when B = 0."""
        tokens = self.tokenize(text)
        get = self.vocab.index.get
        out = [get(t, UNK_ID) for t in tokens]
        if self.spec.ngrams > 1 and self.spec.kind != "embed_concat":
            V, B = len(self.vocab), self.spec.hash_buckets
            for gram in ngrams(tokens, self.spec.ngrams):
                i = get(gram)
                if i is None and B:
                    i = V + bucket_of(gram, B)
                if i is not None:
                    out.append(i)
        return out

    def transform(self, texts: Iterable[str]):
        """X for a list of texts: CSR (N, D) float32 for the bag kinds, (N, T) int32 ids for embed_concat."""
        rows = [self.ids(t) for t in texts]
        if self.spec.kind == "embed_concat":
            return self._pad(rows)
        return self._bag(rows)

    def _pad(self, rows: list):
        T = self.spec.max_tokens
        X = np.full((len(rows), T), PAD_ID, dtype=np.int32)         # (N, T)
        for n, ids in enumerate(rows):
            ids = ids[:T] if self.spec.truncate == "head" else ids[-T:]
            X[n, :len(ids)] = ids
        return X

    def _bag(self, rows: list):
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(indptr[-1]))
        X = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                          shape=(len(rows), self.n_features))
        X.sum_duplicates()                                          # counts, sorted columns
        return self.weigh(X)

    def weigh(self, X):
        """Apply the weighting (and L2 normalisation) to a CSR matrix of counts, in place."""
        w = self.spec.weighting
        if w == "binary":
            X.data[:] = 1.0
        elif w == "log":
            np.log(X.data, out=X.data)
            X.data += 1.0
        elif w == "tfidf":
            X.data *= self.idf[X.indices]
        if self.spec.normalize:
            sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
            norms = np.sqrt(sq, dtype=np.float32)
            norms[norms == 0] = 1.0
            X.data /= np.repeat(norms, np.diff(X.indptr))
        return X

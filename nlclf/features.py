"""Texts to the matrix the network reads: a bag of (n-)grams as CSR, or token ids.

Letters: N texts, V vocabulary, B hash buckets, D = V + B features, T tokens kept.

``bow`` and ``embed_mean`` give X (N, D) in CSR (weighted counts); ``embed_concat``
gives X (N, T) int32 token ids padded with <pad>. Fitted on the training split only.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from . import parallel
from .text import CHAR_MARK, NGRAM_SEP, SEP, TOKENIZERS, char_ngrams, make_tokenizer, tokenize_many
from .vocab import PAD_ID, UNK_ID, Vocabulary

KINDS = ("bow", "embed_mean", "embed_concat")
WEIGHTINGS = ("count", "binary", "log", "tfidf", "nb")


@dataclass(frozen=True)
class FeatureSpec:
    """The ``features`` section of the config; defaults are the documented defaults (config.load
    makes ngrams 1 for embed_concat and char_ngrams [] for the embedding kinds unless they are set)."""

    kind: str = "bow"
    tokenizer: str = "regex"          # regex (Unicode words) | whitespace (pre-tokenized)
    lowercase: bool = True
    strip_accents: bool = False
    strip_punct: bool = False
    max_chars: int = 0                # cut each text to this many characters (0: no limit)
    max_token_chars: int = 100        # cut longer tokens to this many characters (bounds character n-grams)
    min_count: int = 1                # keep tokens and n-grams seen at least this often in training
    max_size: int = 0                 # keep the most frequent (0: no limit)
    ngrams: int = 2                   # 1: words only; 2 adds bigrams (bow, embed_mean)
    hash_buckets: int = 0             # n-grams not in the vocabulary go to B buckets (0: dropped)
    char_ngrams: tuple = (2, 5)       # (min, max): character n-grams of every word (bag kinds); (): none
    char_weight: float = 0.1          # each character n-gram's value relative to a word's (after weighting)
    weighting: str = "nb"             # count | binary | log | tfidf | nb
    nb_alpha: float = 1.0             # smoothing of the class counts behind nb weights
    normalize: bool = True            # L2-normalise each row (bow)
    max_tokens: int = 20              # T (embed_concat)
    truncate: str = "head"            # keep the head or the tail (embed_concat)
    embed_dim: int = 100              # e (embedding kinds)
    pretrained: str = ""              # word2vec/GloVe text file (embedding kinds)
    freeze: bool = False              # keep E fixed
    embed_lr: float = 1.0             # learning-rate multiplier for E
    embed_l2: float = 0.0             # L2 on the rows of E in the batch
    word_dropout: float = 0.0         # training: drop bag entries (bow) or words (embed_mean)
    workers: int = 0                  # processes featurizing large inputs (0: one per core; 1: none)


def bucket_of(gram: str, n_buckets: int) -> int:
    """Stable hash of an n-gram into 0..B-1 (CRC-32: the same in every process)."""
    return zlib.crc32(gram.encode("utf-8")) % n_buckets


CHUNK = 8192          # texts tokenized together


def _chunks(texts: Iterable[str], size: int = CHUNK):
    it = iter(texts)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


class Featurizer:
    """Tokenizer + vocabulary (+ feature weights) -> feature matrix; ``fit`` on training texts only.

    Texts are processed a batch at a time: one tokenizer call per batch, token ids by one
    ``map`` over the batch's tokens, rows found from the separator tokens with NumPy.
    """

    def __init__(self, spec: FeatureSpec, vocab: Vocabulary | None = None, weights=None):
        assert spec.tokenizer in TOKENIZERS
        self.spec = spec
        self.vocab = vocab
        self.weights = weights                      # (D,) float32: idf (tfidf) or NB spread (nb)
        self.tokenize = make_tokenizer(spec.tokenizer, spec.lowercase, not spec.strip_accents,
                                       not spec.strip_punct, spec.max_chars)
        self._lookup = self._char_cache = self._scale = None

    @property
    def n_grams(self) -> int:
        return self.spec.ngrams if self.spec.kind != "embed_concat" else 1

    @property
    def char_range(self) -> tuple:
        """(min, max) of the character n-grams; () for embed_concat, which has none."""
        return tuple(self.spec.char_ngrams) if self.spec.kind != "embed_concat" else ()

    @property
    def n_features(self) -> int:
        """Input columns: V, plus B buckets for the bag kinds."""
        extra = self.spec.hash_buckets if self.spec.kind != "embed_concat" else 0
        return len(self.vocab) + extra

    def _tokens(self, texts: list) -> list:
        s = self.spec
        tokens = tokenize_many(texts, s.tokenizer, s.lowercase, not s.strip_accents, not s.strip_punct,
                               s.max_chars)
        cap = s.max_token_chars
        if tokens and max(map(len, tokens)) > cap:             # rare: a URL, a hash, a hostile input
            tokens = [t[:cap] for t in tokens]
        return tokens

    @staticmethod
    def _grams(tokens: list, is_sep, n: int):
        """The n-grams (2..n) of a separated token stream that do not cross a separator:
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

    def fit(self, texts: list, y=None) -> "Featurizer":
        """Vocabulary and feature weights from the training texts (and labels y, for nb)."""
        self.fit_transform(texts, y)
        return self

    def fit_transform(self, texts: list, y=None):
        """Fit on the training texts (and their label ids y (N,), which nb weights need) and
        return their X."""
        self.fit_vocab(texts)
        X = self.transform_counts(texts)
        if self.spec.kind != "embed_concat":
            self.fit_weights(X, y)
            X = self.weigh(X)
        return X

    def chunk_counts(self, texts: list) -> Counter:
        """How often each token (and n-gram, and character n-gram) occurs in a batch of texts."""
        tokens = self._tokens(texts)
        counts = Counter(tokens)
        if self.char_range:
            lo, hi = self.char_range
            for token, c in list(counts.items()):
                if token != SEP:
                    for g in char_ngrams(token, lo, hi):
                        counts[g] += c
        if self.n_grams > 1:
            is_sep = np.fromiter((t == SEP for t in tokens), dtype=bool, count=len(tokens))
            counts.update(self._grams(tokens, is_sep, self.n_grams)[1])
        return counts

    def fit_vocab(self, texts: Iterable[str]) -> "Featurizer":
        """Count tokens (and n-grams) of the training texts (streamed) and build the vocabulary."""
        counts = Counter()
        for c in map_chunks(self, "chunk_counts", texts):
            counts.update(c)
        counts.pop(SEP, None)
        self.vocab = Vocabulary.build(counts, self.spec.min_count, self.spec.max_size)
        self._lookup = self._char_cache = self._scale = None
        return self

    def token_ids(self, texts: list):
        """(ids, rows, N): the feature id of every token (and n-gram) of the texts, in order,
        and the text it belongs to. Unknown words -> <unk>; n-grams outside the vocabulary ->
        a hash bucket, or dropped when B = 0."""
        if self._lookup is None:
            self._lookup = dict(self.vocab.index)
            self._lookup[SEP] = -1
            self._char_cache = {}
        get = self._lookup.get
        tokens = self._tokens(texts)
        ids = np.fromiter(map(get, tokens, itertools.repeat(UNK_ID)), dtype=np.int64, count=len(tokens))
        is_sep = ids < 0
        rows = np.cumsum(is_sep) - is_sep                                   # text of each token
        keep = ~is_sep
        out_ids, out_rows = [ids[keep]], [rows[keep]]
        if self.n_grams > 1:
            pos, grams = self._grams(tokens, is_sep, self.n_grams)
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
        """Unweighted X: CSR (N, D) of counts for the bag kinds, (N, T) int32 ids for embed_concat."""
        ids, rows, n = self.token_ids(texts)
        if self.spec.kind == "embed_concat":
            return self._pad(ids, rows, n)
        X = sp.coo_matrix((np.ones(len(ids), dtype=np.float32), (rows, ids)),
                          shape=(n, self.n_features)).tocsr()               # sums repeats
        X.sum_duplicates()
        X.indices = X.indices.astype(np.int32, copy=False)
        return X

    def _pad(self, ids, rows, n: int):
        T = self.spec.max_tokens
        lengths = np.bincount(rows, minlength=n)                          # (N,)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        pos = np.arange(len(ids)) - starts[rows]                            # position in its text
        if self.spec.truncate == "tail":
            pos = pos - np.maximum(0, lengths[rows] - T)
        keep = (pos >= 0) & (pos < T)
        X = np.full((n, T), PAD_ID, dtype=np.int32)                         # (N, T)
        X[rows[keep], pos[keep]] = ids[keep]
        return X

    def transform_counts(self, texts: Iterable[str]):
        """Unweighted X for any number of texts, featurized a chunk at a time."""
        return self._stack(list(map_chunks(self, "counts", texts)))

    def transform_split(self, texts: Iterable[str], mask):
        """Unweighted (X[~mask], X[mask]) for texts streamed once: rows are routed chunk by chunk."""
        parts, held = [], []
        start = 0
        for X in map_chunks(self, "counts", texts):
            m = np.asarray(mask[start:start + X.shape[0]], dtype=bool)
            start += X.shape[0]
            parts.append(X[~m])
            held.append(X[m])
        return self._stack(parts), self._stack(held)

    def _stack(self, parts: list):
        if self.spec.kind == "embed_concat":
            return np.concatenate(parts) if parts else np.zeros((0, self.spec.max_tokens), np.int32)
        return stack_csr(parts, self.n_features)

    def transform(self, texts: Iterable[str]):
        """X for texts: weighted CSR (N, D) for the bag kinds, (N, T) int32 ids for embed_concat."""
        X = self.transform_counts(texts)
        return X if self.spec.kind == "embed_concat" else self.weigh(X)

    def fit_weights(self, X, y=None) -> None:
        """Per-feature weights from the training split's counts X (N, D) and label ids y (N,).

        tfidf: idf = ln((1 + N) / (1 + df)) + 1. nb (Wang & Manning's NB log-count ratio,
        generalised to C classes): with p_c = α + (texts of class c holding the feature) (D,)
        and L_c = log(p_c / Σ p_c), the weight is max_c L_c - min_c L_c, the spread of the
        feature's smoothed log-likelihood across classes; with two classes it is |r| of NBSVM.
        """
        w = self.spec.weighting
        if w == "tfidf":
            df = np.bincount(X.indices, minlength=self.n_features)
            self.weights = (np.log((1.0 + X.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)
        elif w == "nb":
            self.weights = nb_spread(X, y, self.spec.nb_alpha)

    def weigh(self, X):
        """Apply the weighting (and L2 normalisation) to a CSR matrix of counts, in place."""
        w = self.spec.weighting
        if w in ("binary", "nb"):
            X.data[:] = 1.0
        elif w == "log":
            np.log(X.data, out=X.data)
            X.data += 1.0
        scale = self.column_scale()
        if scale is not None:
            X.data *= scale[X.indices]
        if self.spec.normalize and self.spec.kind == "bow":
            sq = np.bincount(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), weights=X.data * X.data,
                             minlength=X.shape[0])
            norms = np.sqrt(sq).astype(np.float32)
            norms[norms == 0] = 1.0
            X.data /= np.repeat(norms, np.diff(X.indptr))
        return X

    def column_scale(self):
        """(D,) float32 factor of each feature, or None for none: the idf or NB weights (tfidf,
        nb) times ``char_weight`` on the character n-grams. With char_weight it is derived from
        the vocabulary and the weights (so never saved) and built once for them."""
        weights = self.weights if self.spec.weighting in ("tfidf", "nb") else None
        if not self.char_range or self.spec.char_weight == 1.0:
            return weights
        if self._scale is None or self._scale[0] is not weights:
            is_char = np.fromiter((t.startswith(CHAR_MARK) for t in self.vocab.tokens), dtype=bool,
                                  count=len(self.vocab))
            scale = np.ones(self.n_features, dtype=np.float32) if weights is None else weights.copy()
            scale[:len(self.vocab)][is_char] *= self.spec.char_weight
            self._scale = (weights, scale)
        return self._scale[1]


NB_BLOCK_VALUES = 1 << 22       # (features × classes) made dense at a time by nb_spread: 32 MB


def nb_spread(X, y, alpha: float, block: int = 1 << 16):
    """X (N, D) counts, y (N,) label ids -> (D,) float32: max_c L_c - min_c L_c, where
    L_c = log(p_c / Σ p_c) and p_c = alpha + the number of class-c rows holding the feature.
    The (D, C) counts stay sparse; they are made dense ``block`` features at a time, fewer
    when there are many classes (at most NB_BLOCK_VALUES values)."""
    if y is None:
        raise ValueError("nb weighting needs the training labels")
    y = np.asarray(y)
    N, D = X.shape
    C = int(y.max()) + 1 if len(y) else 1
    B = sp.csr_matrix((np.ones(X.nnz, np.float64), X.indices, X.indptr), shape=X.shape)   # binarized
    Y = sp.csr_matrix((np.ones(N), (np.arange(N), y)), shape=(N, C))                     # one-hot
    counts = (B.T @ Y).tocsr()                                                            # (D, C)
    log_total = np.log(alpha * D + np.asarray(counts.sum(axis=0)).ravel())               # (C,)
    block = max(1, min(block, NB_BLOCK_VALUES // C))
    out = np.empty(D, dtype=np.float32)
    for s in range(0, D, block):
        L = np.log(counts[s:s + block].toarray() + alpha) - log_total                    # (b, C)
        out[s:s + block] = L.max(axis=1) - L.min(axis=1)
    return out


FEATURIZING_MALLOC = 128 * 1024          # glibc's starting mmap threshold
TRAINING_MALLOC = 32 * 1024 * 1024       # glibc's upper bound for it


def set_malloc_thresholds(nbytes: int) -> None:
    """Set glibc's mmap threshold to ``nbytes`` and its trim threshold to twice that (a no-op
    elsewhere). Setting either by hand freezes the other, so both are set together.

    Featurization uses FEATURIZING_MALLOC: by default glibc raises the mmap threshold each
    time a large block is freed, so later chunks' arrays would come from the heap and freeing
    them after they are stacked into X would not give the memory back (peak memory twice X).
    The training loop uses TRAINING_MALLOC (train.fit sets it): its per-batch temporaries (a
    few MB each) then come from the heap instead of being mapped and zeroed by the kernel at
    every step, and a heap top trimmed after every batch and faulted in again by the next
    (100,000 page faults a second on the 1M-document benchmark) is avoided.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, nbytes)                              # M_MMAP_THRESHOLD
        libc.mallopt(-1, 2 * nbytes)                          # M_TRIM_THRESHOLD


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc, when this process uses it (None elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt                                          # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


def map_chunks(featurizer: Featurizer, method: str, texts: Iterable[str]):
    """``featurizer.<method>(chunk)`` for each chunk of CHUNK texts, in order.

    With more than one chunk and ``workers`` != 1, the chunks are handed to forked worker
    processes, at most two per worker in flight, so the input is still streamed: memory
    holds a few chunks of text, never the whole input. The results are the same either way.
    """
    set_malloc_thresholds(FEATURIZING_MALLOC)
    yield from parallel.ordered_map(getattr(featurizer, method), _chunks(texts), featurizer.spec.workers,
                                    min_items=2)


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

"""The bag of (n-)grams: ``bow`` and ``embed_mean`` read X (N, D) in CSR.

Shapes: the package's letters (N texts, V vocabulary), B hash buckets, D = V + B features,
and T tokens of a chunk.

Each text is the counts of its words, its word n-grams (2..``ngrams``, never across texts)
and the character n-grams of its words (fastText's subwords), over the training vocabulary;
n-grams outside it go to one of B hashed buckets, or are dropped when B = 0. ``weigh`` then
applies the weighting (features.weighting), ``char_weight`` and the row normalisation.

No string is built per token occurrence. Texts become integer ids once (one dictionary
lookup a token); word n-grams are 64-bit keys of the ids of their words, computed with
NumPy over the whole chunk and looked up in a vectorized hash table (KeyTable); the
character n-grams of a word are looked up once per distinct word and expanded to its
occurrences by a gather. The tables behind those lookups are built from the whole
vocabulary, once, by the first large chunk; a loaded model predicting a few texts never builds
them: it looks their n-grams up by their strings in the vocabulary's index (the same feature
ids; ``FEW_TOKENS``). Fitting is one pass: workers tokenize and count each chunk, this
process merges the counts and keeps each chunk's ids, and X is then assembled from those
ids in workers, so the training texts are tokenized once (``fit_counts``).
"""

from __future__ import annotations

import itertools
import zlib
from typing import Iterable

import numpy as np

from .. import parallel
from ..config import AUTO
from ..runtime import BATCHES_MALLOC, malloc_thresholds, trim_heap
from ..text import CHAR_MARK, NGRAM_SEP, SEP, char_ngrams, ragged_take
from ..vocab import PAD, PAD_ID, UNK, UNK_ID, Vocabulary
from . import weighting
from .base import CHUNK, TextFeaturizer, resolve_auto
from .store import VALUELESS, Csr, RowStore, stack_structure

MERGE_EVERY = 1 << 23                            # n-gram keys held before their counts are merged
TRIM_EVERY = 16                                  # chunks assembled between two trims of the fit pass's freed ids
FEW_TOKENS = 2048                                # distinct tokens (summed over chunks) a Bag featurizes
                                                 # without building the lookup tables (Bag.counts)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def bucket_of(gram: str, n_buckets: int) -> int:
    """Stable hash of a character n-gram into 0..B-1 (CRC-32: the same in every process)."""
    return zlib.crc32(gram.encode("utf-8")) % n_buckets


def _mix(h):
    """splitmix64's finaliser, elementwise on uint64."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * _M1
        h = (h ^ (h >> np.uint64(27))) * _M2
        return h ^ (h >> np.uint64(31))


def key_of(columns: list):
    """uint64 keys of n-grams given as ``columns``, n arrays of non-negative ids: a bigram's
    key packs its two ids exactly ((a << 32) | b); a longer n-gram's mixes the next ids in
    (splitmix64), a 64-bit hash."""
    key = (columns[0].astype(np.uint64) << np.uint64(32)) | columns[1].astype(np.uint64)
    for c in columns[2:]:
        key = _mix(key) ^ c.astype(np.uint64)
    return key


class KeyTable:
    """A static hash table from uint64 keys to int64 values, looked up for a whole array at once:
    open addressing with linear probing in a power-of-two table at most half full, so most keys
    are found (or missed) at the first probe. A slot holds its key and value side by side
    (``slots`` (S, 2) uint64), so a probe is one gather of one cache line, not two."""

    EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)            # no n-gram key takes this value (ids are < 2^31)

    def __init__(self, keys, values):
        size = 1 << max(4, int(2 * max(len(keys), 1) - 1).bit_length())
        self.mask = np.uint64(size - 1)
        self.slots = np.full((size, 2), self.EMPTY, dtype=np.uint64)       # (S, 2): key, value as uint64
        values = np.asarray(values, dtype=np.int64).view(np.uint64)
        slot = _mix(keys) & self.mask
        todo = np.arange(len(keys))
        while len(todo):                                  # insert, probing past occupied slots
            s = slot[todo]
            free = self.slots[s, 0] == self.EMPTY
            first = np.zeros(len(todo), dtype=bool)       # one key per free slot and round
            _, at = np.unique(s[free], return_index=True)
            first[np.flatnonzero(free)[at]] = True
            self.slots[s[first], 0] = keys[todo[first]]
            self.slots[s[first], 1] = values[todo[first]]
            todo = todo[~first]
            slot[todo] = (slot[todo] + np.uint64(1)) & self.mask

    def _probe(self, slot):
        """(G, 2) uint64: the slots ``slot`` (G,), gathered as 16-byte items (a 1-D take, several
        times faster than indexing the rows of a 2-D array)."""
        return self.slots.view(np.complex128).ravel().take(slot.astype(np.intp)).view(np.uint64).reshape(-1, 2)

    def get(self, keys):
        """(G,) the value of each key, -1 where absent."""
        slot = _mix(keys) & self.mask
        probe = self._probe(slot)                                          # (G, 2) the first probe
        hit = probe[:, 0] == keys
        out = np.where(hit, probe[:, 1].view(np.int64), -1)                # (G,) int64
        todo = np.flatnonzero(~hit & (probe[:, 0] != self.EMPTY))          # collided: probe on
        while len(todo):
            slot[todo] = (slot[todo] + np.uint64(1)) & self.mask
            probe = self._probe(slot[todo])
            hit = probe[:, 0] == keys[todo]
            out[todo[hit]] = probe[hit, 1].view(np.int64)
            todo = todo[~hit & (probe[:, 0] != self.EMPTY)]
        return out


def gram_keys(ids, is_sep, n: int):
    """(positions of their first token (G,), keys (G,) uint64) of the n-grams of size n of a
    separated stream of non-negative ids that do not cross a separator."""
    if len(ids) < n:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    cs = np.concatenate([[0], np.cumsum(is_sep)])
    starts = np.flatnonzero(cs[n:] == cs[:-n])                        # windows free of SEP
    return starts, key_of([ids[starts + j] for j in range(n)])


def char_keys(grams):
    """(G,) uint64 keys of character n-grams of one size n given as code points (G, n): n and
    then each code point mixed in (splitmix64), a 64-bit hash, the same for a vocabulary entry
    as for a window of a word."""
    key = np.full(len(grams), grams.shape[1], dtype=np.uint64)
    for j in range(grams.shape[1]):
        key = _mix(key ^ grams[:, j].astype(np.uint64))
    return key


def _code_points(strings: list) -> tuple:
    """((L,) uint32 code points of the strings one after the other, (S,) length of each)."""
    flat = np.frombuffer("".join(strings).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return flat, np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))


def string_char_keys(grams: list):
    """(G,) the char_keys of character n-grams given as strings (without CHAR_MARK), any sizes."""
    flat, lengths = _code_points(grams)
    starts = np.cumsum(lengths) - lengths
    keys = np.zeros(len(grams), dtype=np.uint64)
    for n in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == n)
        keys[sel] = char_keys(flat[starts[sel][:, None] + np.arange(n)])
    return keys


def word_char_grams(words: list, lo: int, hi: int) -> tuple:
    """The character n-grams of lengths lo..hi of each word, as text.char_ngrams makes them
    (windows of ``<word>``, the lone markers left out), found with NumPy for all the words at
    once: (word (G,), keys (G,) uint64, start (G,) and length (G,) in ``marked``, marked), grouped
    word after word; ``marked`` is the string ``<w1><w2>...``."""
    marked = "<" + "><".join(words) + ">" if words else ""
    cp = np.frombuffer(marked.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)       # (L,)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words)) + 2             # (W,)
    word_of = np.repeat(np.arange(len(words)), lengths)                                      # (L,)
    at = np.arange(len(cp)) - (np.cumsum(lengths) - lengths)[word_of]                        # place in its word
    left = lengths[word_of] - at                                                             # characters from there on
    parts = []
    for n in range(lo, hi + 1):
        ok = left >= n
        if n == 1:
            ok &= (at > 0) & (left > 1)                                                      # not '<' or '>' alone
        start = np.flatnonzero(ok)
        parts.append((word_of[start], char_keys(cp[start[:, None] + np.arange(n)]), start,
                      np.full(len(start), n, dtype=np.int64)))
    word, keys, start, size = (np.concatenate(a) for a in zip(*parts))
    order = np.argsort(word, kind="stable")                                                  # runs already sorted
    return word[order], keys[order], start[order], size[order], marked


def _counts_merge(parts: list) -> tuple:
    """One (sorted unique keys, summed counts, the ids of one occurrence (U, n)) from several:
    one unstable sort of the keys and the runs of equal keys summed (np.unique's stable sort
    for the first occurrence took 2.4 times as long). A bigram's key packs its two ids and a
    longer n-gram's 64-bit key is its identity everywhere else too (barring a collision), so any
    occurrence of a key gives the same ids."""
    k = np.concatenate([p[0] for p in parts])
    c = np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False)
    w = np.concatenate([p[2] for p in parts])
    if not len(k):
        return k, c, w
    order = np.argsort(k)
    k = k[order]
    first = np.ones(len(k), dtype=bool)
    np.not_equal(k[1:], k[:-1], out=first[1:])
    starts = np.flatnonzero(first)                                          # (U,) each run's start
    return k[starts], np.add.reduceat(c[order], starts), w[order[starts]]


def _row_grouped(segments: list, n: int) -> tuple:
    """The columns of ``segments`` (rows (K_s,), cols (K_s,)) pairs, each one's rows
    non-decreasing, grouped by row (row 0's entries, then row 1's, ..., within a row segment
    after segment), with no sort: (cols (K,) int32, lengths (n,) int64 entries a row)."""
    per = [np.bincount(r, minlength=n) for r, _ in segments]                 # (n,) a segment each
    lengths = np.sum(per, axis=0, dtype=np.int64) if per else np.zeros(n, np.int64)
    out = np.empty(int(lengths.sum()), dtype=np.int32)
    place = np.cumsum(lengths) - lengths                                     # (n,) where row r's next entry goes
    for (r, c), cnt in zip(segments, per):
        first = np.cumsum(cnt) - cnt                                         # (n,) row r's first in the segment
        out[(place - first)[r] + np.arange(len(r))] = c
        place += cnt
    return out, lengths


def _sort_within_rows(cols, lengths) -> None:
    """Sort each row's run of ``cols`` (grouped by row, ``lengths`` (n,)) in place. The runs are
    sorted side by side as the rows of 2-D blocks, one block a power-of-two width (padded with a
    value above every column), which NumPy does several times faster than one sort of all the
    row·D + col keys: rows of a few hundred entries stay in the cache (a batch of 1,024
    sentences, 700,000 entries: 3 ms against 23 ms). All the blocks lie in one buffer, so that
    every entry is placed, and read back, by one scatter and one gather."""
    if len(cols) == 0:
        return
    n = len(lengths)
    width = np.left_shift(1, np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64))   # (n,)
    widths, cls = np.unique(width, return_inverse=True)                      # (C,), (n,) each row's block
    count = np.bincount(cls, minlength=len(widths))                          # (C,) rows a block
    offset = np.cumsum(count * widths) - count * widths                      # (C,) where each block starts
    rank = np.empty(n, dtype=np.int64)                                       # (n,) row within its block
    rank[np.argsort(cls, kind="stable")] = np.arange(n) - np.repeat(np.cumsum(count) - count, count)
    base = offset[cls] + rank * width - (np.cumsum(lengths) - lengths)       # (n,) cell of entry e: e + base
    cell = np.arange(len(cols)) + np.repeat(base, lengths)                   # (K,)
    blocks = np.full(int((count * widths).sum()), np.iinfo(cols.dtype).max, dtype=cols.dtype)
    blocks[cell] = cols
    for at, m, w in zip(offset.tolist(), count.tolist(), widths.tolist()):
        if w > 1:
            blocks[at:at + m * w].reshape(m, w).sort(axis=1)                 # the padding sorts last
    cols[:] = blocks[cell]


def counts_csr(segments: list, shape: tuple, light: bool = False):
    """CSR (R, D) float32 of how many times each (row, column) pair occurs in ``segments``,
    (rows (K_s,), cols (K_s,)) pairs whose rows are non-decreasing (a chunk's words, its
    n-grams, its character n-grams, each in text order), columns sorted within a row (as
    scipy's sum_duplicates leaves them). The entries are put in row order by the segments'
    row counts, sorted within each row (_sort_within_rows) and their runs counted: no sort
    of all the keys. ``light``: the same arrays as a store.Csr, without SciPy."""
    n, D = shape
    cols, lengths = _row_grouped(segments, n)
    _sort_within_rows(cols, lengths)
    ends = np.cumsum(lengths)
    first = np.ones(len(cols), dtype=bool)
    np.not_equal(cols[1:], cols[:-1], out=first[1:])
    first[(ends - lengths)[lengths > 0]] = True                             # a row's first entry
    starts = np.flatnonzero(first)                                          # (U,) first of each run
    counts = np.diff(np.append(starts, len(cols))).astype(np.float32)      # (U,)
    runs = np.zeros(len(cols) + 1, dtype=np.int64)
    np.cumsum(first, out=runs[1:])                                         # runs begun before each entry
    indptr = np.zeros(n + 1, dtype=np.int32)
    indptr[1:] = runs[ends]
    unique = cols[starts]
    if light:
        return Csr(counts, unique, indptr, shape)
    import scipy.sparse as sp
    X = sp.csr_matrix((counts, unique, indptr), shape=shape)
    X.has_sorted_indices = True
    return X


def stack_csr(parts: list, n_cols: int):
    """Stack CSR blocks row-wise into one CSR, preallocated, emptying ``parts`` as it goes
    so that peak memory is the result plus one block."""
    import scipy.sparse as sp
    indptr, out = stack_structure(parts, {"indices": np.int32, "data": np.float32})
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((out["data"], out["indices"], indptr), shape=(len(indptr) - 1, n_cols))


class _FitPass:
    """The one pass over the training texts that fitting needs. Workers tokenize a chunk and
    count it (_count_chunk): its distinct tokens, the local id of every token, each distinct
    token's and word n-gram's count on the rows outside ``mask``. This process gives every
    token a global id, adds the counts up and merges the n-grams by their keys of global ids;
    with ``keep``, it keeps each chunk's global ids, for its X."""

    def __init__(self, bag: "Bag", mask, keep: bool):
        self.bag, self.mask, self.keep = bag, mask, keep
        self.index: dict = {}                                  # token -> global id
        self.tokens: list = []                                 # global id -> token
        self.counts = np.zeros(0, dtype=np.int64)              # global id -> count
        self.sizes = range(2, bag.spec.ngrams + 1)
        self.parts = {n: [] for n in self.sizes}               # (keys, counts, ids) to merge
        self.held = {n: 0 for n in self.sizes}
        self.chunks: list = []
        self.released = 0                                      # chunks[:released] are None
        self.sep = -1

    def _items(self, texts):
        """(chunk of texts, its rows of the mask or None), streamed."""
        start = 0
        for chunk in parallel.chunks(texts, CHUNK):
            m = None if self.mask is None else np.asarray(self.mask[start:start + len(chunk)], dtype=bool)
            start += len(chunk)
            yield chunk, m

    def run(self, texts) -> None:
        for (distinct, lids, counts, grams), m in parallel.ordered_map(self.bag._count_chunk, self._items(texts),
                                                                       self.bag.spec.workers, min_items=2):
            gmap = np.fromiter(map(self.index.get, distinct, itertools.repeat(-1)), dtype=np.int64,
                               count=len(distinct))                          # local id -> global id
            new = np.flatnonzero(gmap < 0)                                   # first seen in this chunk
            gmap[new] = np.arange(len(self.index), len(self.index) + len(new))
            fresh = [distinct[i] for i in new.tolist()]
            self.index.update(zip(fresh, gmap[new].tolist()))
            self.tokens.extend(fresh)
            self.sep = self.index.get(SEP, -1)
            if len(self.counts) < len(self.index):
                self.counts = np.concatenate([self.counts, np.zeros(len(self.index) - len(self.counts), np.int64)])
            self.counts[gmap] += counts                                      # gmap is one-to-one
            for n, (words, c) in grams.items():
                words = gmap[words].astype(np.int32)                         # (U, n) global ids
                self.parts[n].append((key_of([words[:, j] for j in range(n)]), c, words))
                self.held[n] += len(c)
                if self.held[n] > MERGE_EVERY:
                    merged = _counts_merge(self.parts[n])
                    self.parts[n], self.held[n] = [merged], len(merged[0])
            if self.keep:
                self.chunks.append((gmap[lids].astype(np.int32), m))

    def release_through(self, i: int) -> None:
        """Drop chunks 0..i, and every TRIM_EVERY chunks give the heap's free memory back. The
        chunks are handed out in order, so a process that has assembled chunk i never needs
        an earlier one: a forked worker that kept its copies of the chunks other workers
        assembled would own them once the parent freed its own (3,000,000 corpus documents,
        645 MB of ids: two workers of 510 MB each, counted apart)."""
        for j in range(self.released, i + 1):
            self.chunks[j] = None
            if j % TRIM_EVERY == TRIM_EVERY - 1:
                trim_heap()
        self.released = max(self.released, i + 1)

    def ngrams(self) -> dict:
        """n -> (unique keys, counts, the global ids of their words (U, n))."""
        return {n: _counts_merge(self.parts[n]) if self.parts[n] else
                (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros((0, n), np.int32)) for n in self.sizes}

    def key_ids(self, keyid: dict):
        """(distinct tokens,) the key id (features.bag.Bag._tables) of every global id."""
        out = np.fromiter((keyid.get(t, UNK_ID) for t in self.tokens), dtype=np.int64, count=len(self.tokens))
        if self.sep >= 0:
            out[self.sep] = -1
        return out


def _count_chunk(featurizer, item):
    """A worker's share of fitting, for (texts, held-out rows or None): the chunk's distinct
    tokens in first-seen order, the local id of every token (int32; SEP included), each
    distinct token's count on the counted rows, and per n-gram size the distinct n-grams of
    those rows as local ids (U, n) int32 with their counts (U,)."""
    texts, m = item
    distinct, lids = featurizer._token_ids(texts)
    is_sep = lids == (distinct.index(SEP) if texts else -1)               # SEP: seen by the first text's end
    rows = np.cumsum(is_sep) - is_sep                                   # (T,) text of each token
    counted = ~is_sep if m is None else ~is_sep & ~m[rows]
    counts = np.bincount(lids[counted], minlength=len(distinct))
    grams = {}
    for n in range(2, featurizer.spec.ngrams + 1):
        pos, keys = gram_keys(lids, is_sep, n)
        if m is not None:
            pos, keys = pos[~m[rows[pos]]], keys[~m[rows[pos]]]
        if n == 2:                                                      # the key packs the pair: no index needed
            u, c = np.unique(keys, return_counts=True)
            grams[n] = (np.stack([u >> np.uint64(32), u & np.uint64(0xFFFFFFFF)], axis=1).astype(np.int32), c)
        else:
            _, first, c = np.unique(keys, return_index=True, return_counts=True)
            grams[n] = (np.stack([lids[pos[first] + j] for j in range(n)], axis=1), c)
    return (distinct, lids, counts, grams), m


class Bag(TextFeaturizer):
    """Words, word n-grams and character n-grams -> CSR (N, D) of counts, then weighed."""

    def __init__(self, spec, vocab=None, weights=None):
        super().__init__(spec, vocab, weights)       # weights (D,) float32: idf (tfidf) or NB spread (nb)
        self._scale = None
        self._index = None                           # the lookup tables, derived from the vocabulary (_tables)
        self._word_chars = None                      # each word's character n-gram ids (_char_table)
        self._by_string = 0                          # distinct tokens looked up by string so far (counts)

    @property
    def char_range(self) -> tuple:
        """(min, max) of the character n-grams, or () for none."""
        return tuple(self.spec.char_ngrams)

    @property
    def n_features(self) -> int:
        """Input columns: V, plus B buckets."""
        return len(self.vocab) + self.spec.hash_buckets

    def _vocab_changed(self) -> None:
        self._scale = self._index = self._word_chars = None

    # --- the lookup tables of a vocabulary --------------------------------------------------

    def prepare(self) -> None:
        """Build the lookup tables and the column scale now (a chunk of many texts does it
        itself, a few texts never need them): before forking workers that will featurize
        large batches, so that they share them."""
        self._tables()
        if self.char_range:
            self._char_table()
        self.column_scale()

    def _tables(self):
        """(key id of every token, per n-gram size a KeyTable from keys to feature ids, a
        KeyTable from character n-gram keys (char_keys) to feature ids), built once from the
        vocabulary.

        A token's key id is its feature id; a word in the vocabulary only inside n-grams (cut
        by max_size) gets a pseudo id >= V, which reads as <unk> for the word itself; SEP is -1.
        The first is the vocabulary's index without <pad> and <unk>, and nothing is done in a
        Python loop per entry: a loaded model answers its first line sooner."""
        if self._index is None:
            tokens = self.vocab.tokens
            V = len(tokens)
            # Every entry: a text's tokens hold no whitespace or tab, so looking one up can only
            # find a word (character n-grams are looked up by their keys, in the third table).
            keyid = self.vocab.index.copy()
            del keyid[tokens[0]], keyid[tokens[1]]                       # <pad>, <unk>: never a text's word
            grams = [t for t in tokens if NGRAM_SEP in t]                 # vocabulary order
            char_ids = np.flatnonzero(np.fromiter(map(str.startswith, tokens, itertools.repeat(CHAR_MARK)),
                                                  dtype=bool, count=V))
            n_words = V - 2 - len(char_ids) - len(grams)
            words = NGRAM_SEP.join(grams).split(NGRAM_SEP) if grams else []
            new = [w for w in dict.fromkeys(words) if w not in keyid]      # words only inside n-grams
            keyid.update(zip(new, range(V + n_words, V + n_words + len(new))))   # pseudo ids: past every feature
            keyid[SEP] = -1
            sizes = np.fromiter(map(str.count, grams, itertools.repeat(NGRAM_SEP)), dtype=np.int64,
                                count=len(grams)) + 1                     # (G,) words an n-gram
            starts = np.cumsum(sizes) - sizes                             # (G,) its first word in ``words``
            word_ids = np.fromiter(map(keyid.__getitem__, words), dtype=np.int64, count=len(words))
            gram_ids = np.fromiter(map(keyid.__getitem__, grams), dtype=np.int64, count=len(grams))
            lookup = {}
            for n in np.unique(sizes).tolist():
                sel = np.flatnonzero(sizes == n)
                ids = word_ids[starts[sel][:, None] + np.arange(n)]                     # (G_n, n)
                lookup[n] = KeyTable(key_of([ids[:, j] for j in range(n)]), gram_ids[sel])
            chars = KeyTable(string_char_keys([tokens[i][1:] for i in char_ids.tolist()]), char_ids)
            self._index = (keyid, lookup, chars)
        return self._index

    def _char_table(self):
        """(run (K,) int64, lengths (W,), fids): the character n-gram feature ids of every word
        that has a key id (_tables: the vocabulary's words and the pseudo-words), as
        _word_char_fids gives them, word after word; the word of key id k is run k of them (-1
        for a key id that is not a word's). Built once, so that a chunk gathers the grams of its
        known words instead of finding and looking them up again; only <unk> occurrences are
        computed from their strings."""
        if self._word_chars is None:
            keyid = self._tables()[0]
            words = [w for w, k in keyid.items() if k >= 0 and NGRAM_SEP not in w and not w.startswith(CHAR_MARK)]
            ids = np.fromiter(map(keyid.__getitem__, words), dtype=np.int64, count=len(words))     # (W,)
            fids, lengths = self._word_char_fids(words)
            run = np.full(int(ids.max(initial=UNK_ID)) + 1, -1, dtype=np.int64)                   # (K,)
            run[ids] = np.arange(len(words))
            itype = np.int32 if self.n_features < 2**31 else np.int64
            self._word_chars = (run, lengths, fids.astype(itype))
        return self._word_chars

    def ngram_bucket(self, words: list) -> int:
        """The hash bucket (0..B-1) a word n-gram outside the vocabulary goes to: its key, from the
        words' key ids (unknown words as <unk>), modulo B."""
        keyid = self._tables()[0]
        ids = [np.array([keyid.get(w, UNK_ID)], dtype=np.int64) for w in words]
        return int(key_of(ids)[0] % np.uint64(self.spec.hash_buckets))

    def _gram_fids(self, n: int, keys):
        """(G,) feature ids of n-gram keys: the vocabulary's, else a hash bucket, else -1 (dropped)."""
        lookup = self._tables()[1]
        out = lookup[n].get(keys) if n in lookup and len(keys) else np.full(len(keys), -1, dtype=np.int64)
        B = self.spec.hash_buckets
        if B:
            miss = out < 0
            out[miss] = len(self.vocab) + (keys[miss] % np.uint64(B)).astype(np.int64)
        return out

    def _string_gram_fids(self, n: int, pos, tids, strings: list):
        """(G,) feature ids of the n-grams of size n starting at positions ``pos`` of a chunk, looked
        up by their strings in the vocabulary's index (no tables); -1 for those outside it."""
        words = [[strings[i] for i in tids[pos + j].tolist()] for j in range(n)]
        return np.fromiter(map(self.vocab.index.get, map(NGRAM_SEP.join, zip(*words)), itertools.repeat(-1)),
                           dtype=np.int64, count=len(pos))

    def _word_char_fids(self, words: list, few: bool = False) -> tuple:
        """(flat feature ids of the character n-grams of each word, word after word; (W,) how
        many each word has): the vocabulary's, else a hash bucket (of the gram's string, as
        bucket_of), else dropped. ``few``: looked up by their strings (no tables)."""
        word, keys, start, size, marked = word_char_grams(words, *self.char_range)
        if few:
            index = self.vocab.index
            fids = np.fromiter((index.get(CHAR_MARK + marked[a:a + n], -1)
                                for a, n in zip(start.tolist(), size.tolist())), dtype=np.int64, count=len(start))
        else:
            fids = self._tables()[2].get(keys)
        B = self.spec.hash_buckets
        if B:
            miss = np.flatnonzero(fids < 0)
            fids[miss] = len(self.vocab) + np.fromiter(
                (bucket_of(CHAR_MARK + marked[a:a + n], B) for a, n in zip(start[miss].tolist(), size[miss].tolist())),
                dtype=np.int64, count=len(miss))
        keep = fids >= 0
        return fids[keep], np.bincount(word[keep], minlength=len(words))

    # --- transform ----------------------------------------------------------------------------

    def counts(self, texts: list, light: bool = False):
        """Unweighted X (N, D) CSR: the counts of every feature of a chunk of texts (``light``:
        as a store.Csr, without SciPy).

        Until the lookup tables are built, and while this chunk and those before it hold at
        most FEW_TOKENS distinct tokens together (a process predicting a few lines: the budget
        is spent once, so a stream of small batches soon builds the tables), a chunk without
        hash buckets (whose hashes need the tables' key ids) is looked up by strings in the
        vocabulary's index instead: its words as they are, its n-grams and
        character n-grams as the strings the vocabulary holds them by. Those are the feature
        ids the tables give (barring a collision of two 64-bit keys of n-grams of three or
        more words or of character n-grams, which the tables would take for a match)."""
        distinct, lids = self._token_ids(texts)
        few = (self._index is None and self._by_string + len(distinct) <= FEW_TOKENS
               and not self.spec.hash_buckets)
        if few:
            self._by_string += len(distinct)
        keyid = self.vocab.index if few else self._tables()[0]
        ids = np.fromiter(map(keyid.get, distinct, itertools.repeat(UNK_ID)), dtype=np.int64,
                          count=len(distinct))
        if few:                                  # the tables' key ids, but for words known only
            ids[ids == PAD_ID] = UNK_ID          # inside n-grams (<unk> here; their n-grams are
            if texts:                            # looked up by string)
                ids[distinct.index(SEP)] = -1
        return self._assemble(ids[lids], len(texts), lids, distinct, few, light)

    def _assemble(self, ids, n_texts: int, tids, strings: list, few: bool = False, light: bool = False):
        """CSR (N, D) of counts from a chunk's key ids (T,) (SEP = -1); ``tids`` (T,) gives each
        token's string as ``strings[tids[t]]``, for the n-grams looked up by string (``few``)
        and the character n-grams. ``light``: as a store.Csr."""
        is_sep = ids == -1
        rows = np.cumsum(is_sep) - is_sep                                   # (T,) text of each token
        word = ~is_sep
        V = len(self.vocab)
        fids = np.where(ids < V, ids, UNK_ID)                               # pseudo ids are <unk> as words
        segments = [(rows[word], fids[word])]                              # (rows, cols), each in text order
        for n in range(2, self.spec.ngrams + 1):
            pos, keys = gram_keys(ids, is_sep, n)
            g = self._string_gram_fids(n, pos, tids, strings) if few else self._gram_fids(n, keys)
            found = g >= 0
            segments.append((rows[pos[found]], g[found]))
        if self.char_range:
            segments += self._chars(ids, word, rows, tids, strings, few)
        return counts_csr(segments, (n_texts, self.n_features), light)

    def _chars(self, ids, word, rows, tids, strings: list, few: bool = False):
        """The character n-grams of every word occurrence as counts_csr's segments, (rows,
        feature ids) in text order: a known word's from its run of _char_table; each distinct
        other word's (<unk>, or every word when ``few``) found and looked up once for the chunk;
        both gathered to the occurrences."""
        pos = np.flatnonzero(word)                                          # (T',) word occurrences
        frequent = self._frequent()
        if frequent is not None:                                            # char_below: frequent words have none
            k = ids[pos]
            in_vocab = k < len(frequent)                                    # not pseudo-words
            drop = np.zeros(len(pos), dtype=bool)
            drop[in_vocab] = frequent[k[in_vocab]]
            pos = pos[~drop]
        segments = []
        if not few:                                                         # known words: their runs of _char_table
            run, lengths, fids = self._char_table()
            r = run[ids[pos]]                                               # (T',) run of each occurrence
            known = r >= 0
            r = r[known]
            segments.append((rows[np.repeat(pos[known], lengths[r])], fids[ragged_take(lengths, r)]))
            pos = pos[~known]                                               # <unk> words: by their strings
        distinct, inv = np.unique(tids[pos], return_inverse=True)           # (W,), (T',)
        fids, lengths = self._word_char_fids([strings[i] for i in distinct.tolist()], few)
        segments.append((rows[np.repeat(pos, lengths[inv])], fids[ragged_take(lengths, inv)]))
        return segments

    def _frequent(self):
        """(V,) bool: the vocabulary words seen at least char_below times, which get no character
        n-grams; None when every word gets them (char_below 0, or a model saved without counts)."""
        below, counts = self.spec.char_below, self.vocab.counts
        if not below or below == AUTO or counts is None:
            return None
        return counts >= below

    def stack(self, parts: list):
        return stack_csr(parts, self.n_features)

    def transform_batch(self, texts: list):
        """transform's X for a batch to predict, in this process; up to CHUNK texts as a
        store.Csr (the same numbers, without SciPy)."""
        texts = list(texts)
        if len(texts) > CHUNK:
            return self.transform(texts)
        return self.weigh(self.counts(texts, light=True))

    # --- fit ------------------------------------------------------------------------------------

    def fit_vocab(self, texts: Iterable[str]):
        """Count the training texts (streamed) and build the vocabulary."""
        self._fit(texts, None, keep=False)
        return self

    def fit_counts(self, texts, mask=None, compact: bool = False):
        """Fit the vocabulary on the training texts, tokenized once, and return their counts X;
        with ``mask``, a boolean (N,) of the rows held out (dev), (X[~mask], X[mask]), the
        vocabulary counted on the other rows only. ``texts``: a function giving the stream.
        ``compact``: the training X as a features.store.RowStore (2 or 3 bytes an entry
        instead of 8), built chunk by chunk in the workers; the held-out rows stay CSR."""
        return self._fit(texts(), mask, keep=True, compact=compact)

    def _fit(self, texts: Iterable[str], mask, keep: bool, compact: bool = False):
        fit = _FitPass(self, mask, keep)
        with malloc_thresholds(BATCHES_MALLOC):                   # merging: temporaries reused
            fit.run(texts)
        trim_heap()                                                # ... and given back before X is built
        self._build_vocab(fit)
        if not keep:
            return None
        gid_key = fit.key_ids(self._tables()[0])                  # (distinct tokens,) global id -> key id
        if self.char_range:
            self._char_table()                                     # before forking: the workers share it
        counted = self.spec.weighting not in VALUELESS            # the values matter to the weighting

        def assemble(i):                                           # in a forked worker: chunk i's X
            gids, m = fit.chunks[i]
            fit.release_through(i)                                 # this process's copies up to i
            X = self._assemble(gid_key[gids], int((gids == fit.sep).sum()), gids, fit.tokens)
            X, held = (X, None) if m is None else (X[~m], X[m])
            return (RowStore.of(X, counted) if compact else X), held

        parts, held = [], []
        for i, (X, X_held) in enumerate(parallel.ordered_map(assemble, range(len(fit.chunks)), self.spec.workers,
                                                             min_items=2)):
            fit.release_through(i)                                 # the parent's, as parts arrive
            parts.append(X)
            if X_held is not None:
                held.append(X_held)
        fit.chunks = []
        trim_heap()
        X = RowStore.stack(parts, self.n_features) if compact else self.stack(parts)
        return X if mask is None else (X, self.stack(held))

    def _count_chunk(self, item):
        return _count_chunk(self, item)

    def _build_vocab(self, fit: "_FitPass") -> None:
        """The vocabulary from the fit pass's counts: entries seen at least min_count times, the
        max_size most frequent, ordered by (-count, token)."""
        entries = {t: c for t, c in zip(fit.tokens, fit.counts.tolist()) if c and t != SEP}
        self.n_tokens = sum(entries.values())
        self.spec = resolve_auto(self.spec, self.n_tokens)
        s = self.spec
        if self.char_range:
            lo, hi = self.char_range
            chars: dict = {}
            below = s.char_below or float("inf")
            for t, c in entries.items():
                if c >= below:                                            # frequent words: no character n-grams
                    continue
                for g in char_ngrams(t, lo, hi):
                    chars[g] = chars.get(g, 0) + c
            entries.update((g, entries.get(g, 0) + c) for g, c in chars.items())
        for n, (keys, c, words) in fit.ngrams().items():
            ok = c >= s.min_count
            if s.max_size and ok.sum() > s.max_size:                      # only those that can make the cut
                cut = np.partition(c[ok], ok.sum() - s.max_size)[ok.sum() - s.max_size]
                ok &= c >= cut
            for ids, cnt in zip(words[ok].tolist(), c[ok].tolist()):
                gram = NGRAM_SEP.join(fit.tokens[i] for i in ids)
                entries[gram] = entries.get(gram, 0) + cnt
        entries.pop(PAD, None)
        entries.pop(UNK, None)
        self.vocab = Vocabulary.build(entries, s.min_count, s.max_size)
        self._lookup = None
        self._vocab_changed()

    # --- weights ----------------------------------------------------------------------------

    def fit_weights(self, X, y=None) -> None:
        """The idf (tfidf) or NB spread (nb) of each feature from the training counts X (N, D)
        and label ids y (N,), or the 0/1 label matrix Y (N, C) of several labels a text: see
        features.weighting."""
        w = weighting.fit(self.spec.weighting, X, y, self.n_features, self.spec.nb_alpha)
        if w is not None:
            self.weights = w

    def weigh(self, X):
        """The weighting, char_weight and (bow) L2 normalisation applied to counts, in place;
        a RowStore is given back reading its rows through this (they are weighed when read)."""
        if isinstance(X, RowStore):
            return X.weighed(self.weigh)
        normalize = self.spec.normalize and self.spec.kind == "bow"
        if isinstance(X, Csr) and self._scale is None and self._index is None and self._char_scaled():
            return weighting.weigh(X, self.spec.weighting, normalize=normalize,      # a few texts (counts'
                                   entry_scale=self.scale_of(X.indices))             # budget): their columns'
        return weighting.weigh(X, self.spec.weighting, self.column_scale(), normalize=normalize)

    def _char_scaled(self) -> bool:
        return bool(self.char_range) and self.spec.char_weight != 1.0

    def scale_of(self, columns):
        """column_scale()[columns], computed for those columns alone (the same float32 values)."""
        weights = self.weights if self.spec.weighting in weighting.FITTED else None
        if not self._char_scaled():
            return None if weights is None else weights[columns]
        scale = np.ones(len(columns), dtype=np.float32) if weights is None else weights[columns]
        V, tokens = len(self.vocab), self.vocab.tokens
        is_char = np.fromiter((c < V and tokens[c].startswith(CHAR_MARK) for c in columns.tolist()),
                              dtype=bool, count=len(columns))
        scale[is_char] *= self.spec.char_weight
        return scale

    def column_scale(self):
        """(D,) float32 factor of each feature, or None for none: the idf or NB weights (tfidf,
        nb) times ``char_weight`` on the character n-grams. With char_weight it is derived from
        the vocabulary and the weights (so never saved) and built once for them."""
        weights = self.weights if self.spec.weighting in weighting.FITTED else None
        if not self._char_scaled():
            return weights
        if self._scale is None or self._scale[0] is not weights:
            is_char = np.fromiter(map(str.startswith, self.vocab.tokens, itertools.repeat(CHAR_MARK)),
                                  dtype=bool, count=len(self.vocab))
            scale = np.ones(self.n_features, dtype=np.float32) if weights is None else weights.copy()
            scale[:len(self.vocab)][is_char] *= self.spec.char_weight
            self._scale = (weights, scale)
        return self._scale[1]

"""Text to tokens: normalisation, the tokenizers and character n-grams, as pure functions."""

from __future__ import annotations

import itertools
import re
import unicodedata

import numpy as np

TOKENIZERS = ("regex", "whitespace")

# Han, kana and hangul have no spaces between words: each character is a token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# A word is a run of letters/digits/underscore (apostrophes inside kept: don't, l'homme);
# any other non-space character (punctuation, symbols, emoji) is a token of its own.
WORD_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+(?:['’][^\W{_CJK}]+)*|[^\w\s]")


def strip_accents(text: str) -> str:
    """'café' -> 'cafe': decompose, then drop the combining marks."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def is_punct(token: str) -> bool:
    """True for a token made only of punctuation or symbols."""
    return all(unicodedata.category(c)[0] in "PS" for c in token)


SEP = "\x00"      # separates texts in a batch; a token of its own for both tokenizers


def _joined(texts: list, lowercase: bool, accents: bool, max_chars: int) -> str:
    """The texts of a batch as one string, each followed by " SEP" and a newline (a SEP inside a
    text becomes a space), lowercased and stripped of accents as asked, once for the batch."""
    if max_chars:
        texts = [t[:max_chars] for t in texts]
    joined = "\n".join(texts)
    if SEP in joined:
        texts = [t.replace(SEP, " ") for t in texts]
    joined = f" {SEP}\n".join(texts) + f" {SEP}" if texts else ""
    if lowercase:
        joined = joined.lower()
    if not accents:
        joined = strip_accents(joined)
    return joined


def tokenize_many(texts: list, mode: str = "regex", lowercase: bool = True, accents: bool = True,
                  punctuation: bool = True, max_chars: int = 0) -> list:
    """The tokens of many texts at once, each text followed by the separator token SEP.

    One join, one lowercase and one split for the whole batch: no Python work per text
    or per token on the default path. ``mode`` ``regex`` uses WORD_RE (Unicode-aware),
    ``whitespace`` str.split for pre-tokenized text; ``accents=False`` strips accents,
    ``punctuation=False`` drops punctuation-only tokens, ``max_chars`` > 0 cuts each text first.
    """
    joined = _joined(texts, lowercase, accents, max_chars)
    tokens = WORD_RE.findall(joined) if mode == "regex" else joined.split()
    if not punctuation:
        tokens = [t for t in tokens if t == SEP or not is_punct(t)]
    return tokens


def tokenize_distinct(texts: list, mode: str = "regex", lowercase: bool = True, accents: bool = True,
                      punctuation: bool = True, max_chars: int = 0, max_token_chars: int = 0) -> tuple:
    """(distinct tokens in first-seen order, (T,) int32 index of every token into them): the
    tokens of tokenize_many, cut to ``max_token_chars`` (> 0), as integers.

    The batch is split at whitespace, and each distinct piece is tokenized once: a WORD_RE token
    never holds whitespace (str.split's whitespace is WORD_RE's), so the pieces' tokens, gathered
    to the pieces' occurrences, are the tokens of the whole batch. No string is built or
    matched per token occurrence; the pieces' first-seen order is the tokens' as well."""
    distinct, ids = distinct_ids(_joined(texts, lowercase, accents, max_chars).split())   # (P,), (T,)
    if mode == "regex":
        # (P,) lists of tokens: a piece of ASCII letters and digits is one token (4x faster than findall)
        find = WORD_RE.findall
        parts = [[p] if p.isascii() and p.isalnum() else find(p) for p in distinct]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        if not (lengths == 1).all():                                      # some pieces hold several
            distinct, flat_ids = distinct_ids(list(itertools.chain.from_iterable(parts)))
            ids = flat_ids[ragged_take(lengths, ids)]
    if not punctuation:
        distinct, ids = _renamed(distinct, ids, [None if t != SEP and is_punct(t) else t for t in distinct])
    if max_token_chars and distinct and max(map(len, distinct)) > max_token_chars:   # a URL, a hash, a hostile input
        distinct, ids = _renamed(distinct, ids, [t[:max_token_chars] for t in distinct])
    return distinct, ids


def distinct_ids(items: list) -> tuple:
    """(the distinct items in first-seen order (P,), (T,) int32 index of each item into them),
    with one dictionary operation an item: ``setdefault`` maps each item to the position of its
    first occurrence, and those positions, ascending in the dictionary's order, are renumbered
    0..P-1 by a NumPy gather."""
    first: dict = {}
    pos = np.int32 if len(items) < 2**31 else np.int64
    at = np.fromiter(map(first.setdefault, items, range(len(items))), dtype=pos, count=len(items))   # (T,)
    number = np.empty(len(items), dtype=np.int32)
    number[np.fromiter(first.values(), dtype=pos, count=len(first))] = np.arange(len(first), dtype=np.int32)
    return list(first), number[at]


def _renamed(tokens: list, ids, new: list) -> tuple:
    """(distinct tokens, ids) after each token became ``new``'s (None: dropped): tokens that now
    coincide merged, first-seen order kept."""
    kept = list(dict.fromkeys(t for t in new if t is not None))
    index = dict(zip(kept, range(len(kept))))
    to = np.fromiter((-1 if t is None else index[t] for t in new), dtype=np.int32, count=len(new))
    ids = to[ids]
    return kept, ids[ids >= 0]


def ragged_take(lengths, which):
    """Positions into a flat array of consecutive runs of ``lengths`` (R,) that concatenate the
    runs ``which`` (K,) in order: flat[ragged_take(lengths, which)] is run which[0], then
    which[1], ..."""
    offsets = np.cumsum(lengths) - lengths                                 # (R,) start of each run
    n = lengths[which]                                                     # (K,)
    ends = np.cumsum(n)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - n - offsets[which], n)


NGRAM_SEP = " "   # tokens never contain whitespace, so a space joins n-grams unambiguously


CHAR_MARK = "\t"  # starts every character n-gram: no token or word n-gram holds a tab


def char_ngrams(token: str, lo: int, hi: int) -> list:
    """The character n-grams, lengths lo..hi, of ``<token>`` (fastText's subwords: ``<`` and
    ``>`` mark the word's start and end), each prefixed by CHAR_MARK; the lone markers are left
    out. 'ab', 1, 3 -> a b <a ab b> <ab ab>."""
    w = f"<{token}>"
    out = []
    for n in range(lo, hi + 1):
        out.extend(CHAR_MARK + w[i:i + n] for i in range(len(w) - n + 1))
    if lo == 1:
        out = out[1:len(w) - 1] + out[len(w):]        # drop the grams '<' and '>'
    return out

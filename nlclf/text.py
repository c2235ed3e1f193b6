"""Text to tokens: normalisation, the tokenizers and character n-grams, as pure functions."""

from __future__ import annotations

import re
import unicodedata

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


def tokenize_many(texts: list, mode: str = "regex", lowercase: bool = True, accents: bool = True,
                  punctuation: bool = True, max_chars: int = 0) -> list:
    """The tokens of many texts at once, each text followed by the separator token SEP.

    One join, one lowercase and one split for the whole batch: no Python work per text
    or per token on the default path. ``mode`` ``regex`` uses WORD_RE (Unicode-aware),
    ``whitespace`` str.split for pre-tokenized text; ``accents=False`` strips accents,
    ``punctuation=False`` drops punctuation-only tokens, ``max_chars`` > 0 cuts each text first.
    """
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
    tokens = WORD_RE.findall(joined) if mode == "regex" else joined.split()
    if not punctuation:
        tokens = [t for t in tokens if t == SEP or not is_punct(t)]
    return tokens


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

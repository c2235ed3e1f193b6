"""Readers for labelled data, text streams and word vectors, and the dev split.

Every problem names the file and the line. Files are read line by line as bytes
and decoded per line, so an undecodable byte is reported with its line and offset.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import DataError


def resolve(path: str, data_root) -> Path:
    """A config path relative to the data root (absolute paths stay as they are)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(data_root) / p


def _open(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def _decode(raw: bytes, path, lineno: int, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{lineno}: not valid UTF-8 at byte {offset + e.start} of the file "
                        f"(byte 0x{raw[e.start]:02x})") from None


def iter_labelled(path) -> Iterator[tuple]:
    """(line number, label, text) for each non-blank line of a ``label<TAB>text`` file."""
    path = Path(path)
    offset = 0
    with _open(path) as f:
        for lineno, raw in enumerate(f, start=1):
            line = _decode(raw, path, lineno, offset).rstrip("\r\n")
            offset += len(raw)
            if not line.strip():
                continue
            label, sep, text = line.partition("\t")
            if not sep:
                raise DataError(f"{path}:{lineno}: no tab: expected 'label<TAB>text'")
            label = label.strip()
            if not label:
                raise DataError(f"{path}:{lineno}: empty label before the tab")
            yield lineno, label, text


def read_labelled(path) -> tuple:
    """(labels, texts) of a whole ``label<TAB>text`` file; an empty file is an error."""
    labels, texts = [], []
    for _, label, text in iter_labelled(path):
        labels.append(label)
        texts.append(text)
    if not labels:
        raise DataError(f"{path}: no examples (expected lines of 'label<TAB>text')")
    return labels, texts


def read_labels(path) -> list:
    """Only the labels of a labelled file: the first pass over a large training file."""
    return [label for _, label, _ in iter_labelled(path)]


def iter_texts(paths: Iterable[str]) -> Iterator[str]:
    """Lines of text from files, ``-`` meaning standard input, streamed; a trailing newline is dropped."""
    for p in paths:
        if p == "-":
            stream, name = sys.stdin.buffer, "<stdin>"
        else:
            stream, name = _open(Path(p)), p
        offset = 0
        try:
            for lineno, raw in enumerate(stream, start=1):
                yield _decode(raw, name, lineno, offset).rstrip("\r\n")
                offset += len(raw)
        finally:
            if p != "-":
                stream.close()


def stratified_split(labels: list, fraction: float, seed: int):
    """Boolean mask (N,) of the rows held out as dev: stratified when every class allows it."""
    from sklearn.model_selection import train_test_split
    n = len(labels)
    idx = np.arange(n)
    counts = {}
    for l in labels:
        counts[l] = counts.get(l, 0) + 1
    n_dev = max(1, int(round(fraction * n)))
    stratify = labels if min(counts.values()) >= 2 and n_dev >= len(counts) and n - n_dev >= len(counts) else None
    if n < 2:
        raise DataError("need at least 2 training examples to split off a dev set")
    _, dev_idx = train_test_split(idx, test_size=n_dev, random_state=seed, stratify=stratify)
    mask = np.zeros(n, dtype=bool)
    mask[dev_idx] = True
    return mask


def read_vectors(path, vocab_index: dict, dim: int):
    """Rows of a word2vec/GloVe text file for the words in ``vocab_index``.

    Returns (ids (K,), vectors (K, dim) float32). A first line of two integers is a
    header and is skipped. A width other than ``dim`` is an error naming the line.
    """
    path = Path(path)
    ids, vecs = [], []
    with _open(path) as f:
        offset = 0
        for lineno, raw in enumerate(f, start=1):
            line = _decode(raw, path, lineno, offset).rstrip()
            offset += len(raw)
            parts = line.split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if not line:
                continue
            if len(parts) - 1 != dim:
                raise DataError(f"{path}:{lineno}: vectors of width {len(parts) - 1}, but "
                                f"features.embed_dim is {dim}")
            i = vocab_index.get(parts[0])
            if i is None:
                continue
            try:
                vecs.append(np.array(parts[1:], dtype=np.float32))
            except ValueError:
                raise DataError(f"{path}:{lineno}: not a number in the vector of '{parts[0]}'") from None
            ids.append(i)
    return np.array(ids, dtype=np.int64), (np.stack(vecs) if vecs else np.zeros((0, dim), np.float32))

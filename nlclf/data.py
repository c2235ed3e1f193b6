"""Readers for labelled data, text streams and word vectors, and the dev split.

Input formats, chosen by ``data.format`` (a ``DataConfig``; ``opts=None`` means TSV, UTF-8,
strict decoding and errors on bad lines):

- ``tsv``: ``label<TAB>text`` per line (the default). As prediction input, each line is a text.
- ``csv``: a header row naming the ``data.text_field`` and ``data.label_field`` columns; quoted
  fields may hold commas, doubled quotes and newlines. A record is reported by its first line.
- ``jsonl``: one JSON object per line, with string fields ``data.text_field``/``data.label_field``.
- ``fasttext``: ``__label__pos some text``. A line with several labels is a bad line unless
  ``data.multi_label`` is true, which keeps the FIRST label: nlclf trains single-label
  classifiers, and true multi-label training is not supported yet. As prediction input the
  leading ``__label__`` tokens are stripped.
- ``folder``: ``root/<label>/*.txt``, one document per file (its whole content, trailing
  whitespace stripped), in sorted order; hidden files and folders are skipped, and problems
  are reported as line 1 of the document. As prediction input, ``root/*.txt`` and then
  ``root/<sub>/*.txt``.
- ``auto``: inferred from the path by ``infer_format`` and noted through ``log``.

Every problem names the file and the line. Files are read line by line as bytes and decoded
per line (``data.encoding``, ``data.encoding_errors``), so with strict decoding an undecodable
byte is reported with its line and byte offset. Blank lines are ignored in labelled data. A
malformed line (no tab, empty label or text, a label outside ``known``, bad CSV/JSON, ...)
is handled as ``data.on_bad_line`` says: ``error`` raises DataError ``file:line: what``;
``skip`` drops it and logs one count per file; ``warn`` also logs each one (the first 20).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import DataConfig
from .errors import DataError

TSV_DEFAULTS = DataConfig(format="tsv")     # what opts=None means
WARN_LIMIT = 20                             # bad lines logged one by one under on_bad_line: warn
CSV_FIELD_LIMIT = 1 << 26                   # characters in one CSV field (the csv module's default is 128 KiB)
_FT_LABEL = re.compile(r"\s*__label__(\S*)")
EXPECTED = {
    "tsv": "lines of 'label<TAB>text'",
    "csv": "a header row naming the text and label columns, then one record per example",
    "jsonl": "one JSON object per line",
    "fasttext": "lines of '__label__<label> text'",
    "folder": "<folder>/<label>/<document>.txt",
}


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
        raise DataError(f"{path}: is a folder, expected a file (data.format: folder reads "
                        f"<folder>/<label>/<document>.txt)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


@contextlib.contextmanager
def _input(path):
    """The byte stream of a file, or of standard input for '-'."""
    if str(path) == "-":
        yield sys.stdin.buffer
    else:
        with _open(Path(path)) as f:
            yield f


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def _skip_bom(stream, encoding: str) -> int:
    """Step over a UTF-8 byte-order mark (as spreadsheets write); the bytes skipped."""
    peek = getattr(stream, "peek", None)
    if peek is not None and _is_utf8(encoding) and peek(3)[:3] == codecs.BOM_UTF8:
        stream.read(3)
        return 3
    return 0


def _undecodable(path, lineno: int, offset: int, byte: int, encoding: str) -> DataError:
    name = "UTF-8" if _is_utf8(encoding) else encoding
    return DataError(f"{path}:{lineno}: not valid {name} at byte {offset} of the file (byte 0x{byte:02x}); "
                     f"set data.encoding, or data.encoding_errors: replace")


def _decode(raw: bytes, path, lineno: int, offset: int, encoding: str = "utf-8", errors: str = "strict") -> str:
    try:
        return raw.decode(encoding, errors)
    except UnicodeDecodeError as e:
        raise _undecodable(path, lineno, offset + e.start, raw[e.start], encoding) from None


def _lines(stream, name, opts) -> Iterator[tuple]:
    """(line number, line with its ending) of a byte stream, each line decoded on its own."""
    enc, errors = opts.encoding, opts.encoding_errors
    offset = _skip_bom(stream, enc)
    for lineno, raw in enumerate(stream, start=1):
        try:
            line = raw.decode(enc, errors)
        except UnicodeDecodeError as e:
            raise _undecodable(name, lineno, offset + e.start, raw[e.start], enc) from None
        offset += len(raw)
        yield lineno, line


class _BadLines:
    """One input's malformed lines, handled as data.on_bad_line says; ``done`` logs the count."""

    def __init__(self, name, policy: str, log, unit: str = "line"):
        self.name, self.policy, self.unit = name, policy, unit
        self.log = log or (lambda msg: None)
        self.count, self.first = 0, ""

    def __call__(self, lineno: int, what: str, where=None) -> None:
        where = self.name if where is None else where
        if self.policy == "error":
            raise DataError(f"{where}:{lineno}: {what}")
        self.count += 1
        if self.count == 1:
            self.first = f"line {lineno}: {what}" if where == self.name else f"{where}:{lineno}: {what}"
        if self.policy == "warn":
            if self.count <= WARN_LIMIT:
                self.log(f"{where}:{lineno}: {what}; skipped")
            elif self.count == WARN_LIMIT + 1:
                self.log(f"{self.name}: more bad {self.unit}s; counting them without showing each")

    def done(self) -> None:
        if self.count:
            s = "" if self.count == 1 else "s"
            self.log(f"{self.name}: skipped {self.count} bad {self.unit}{s} (first: {self.first})")


def _problem(label: str, text: str, known) -> str:
    """What is wrong with a labelled example, or ''."""
    if not label:
        return "empty label"
    if not text or text.isspace():
        return "empty text"
    if known is not None and label not in known:
        return f"label '{label}' not seen in training"
    return ""


# Readers: (path, name, opts, bad, known, labelled) -> labelled: (line number, label, text) of
# each usable example; unlabelled (prediction input): the text of each record.

def _tsv(path, name, opts, bad, known, labelled):
    """``label<TAB>text`` lines; as prediction input every line (blank ones too) is a text."""
    enc, errors = opts.encoding, opts.encoding_errors
    with _input(path) as stream:
        offset = _skip_bom(stream, enc)
        for lineno, raw in enumerate(stream, start=1):
            try:
                line = raw.decode(enc, errors).rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise _undecodable(name, lineno, offset + e.start, raw[e.start], enc) from None
            offset += len(raw)
            if not labelled:
                yield line
                continue
            if not line or line.isspace():
                continue
            label, sep, text = line.partition("\t")
            if not sep:
                bad(lineno, "no tab: expected 'label<TAB>text'")
                continue
            label = label.strip()
            if not label:
                bad(lineno, "empty label before the tab")
                continue
            if not text or text.isspace():
                bad(lineno, "empty text after the tab")
                continue
            if known is not None and label not in known:
                bad(lineno, f"label '{label}' not seen in training")
                continue
            yield lineno, label, text
    bad.done()


def _csv_columns(header: list, name, lineno: int, opts, labelled: bool) -> tuple:
    cols = []
    for key, field in (("data.text_field", opts.text_field), ("data.label_field", opts.label_field))[:1 + labelled]:
        if field not in header:
            raise DataError(f"{name}:{lineno}: the CSV header has no column '{field}' ({key}); "
                            f"found: {', '.join(header)}")
        cols.append(header.index(field))
    return tuple(cols) + (None,) * (2 - len(cols))


def _csv(path, name, opts, bad, known, labelled):
    """A header row, then records; quoted fields may hold commas, quotes and newlines."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with _input(path) as stream:
        reader = csv.reader((line for _, line in _lines(stream, name, opts)), strict=True)
        header, end = None, 0
        while True:
            start = end + 1                         # a record is reported by its first line
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                end = reader.line_num
                bad(start, f"not valid CSV: {e}")
                continue
            end = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                t, l = _csv_columns(header, name, start, opts, labelled)
                continue
            if len(row) != len(header):
                bad(start, f"{len(row)} fields, but the header has {len(header)}")
                continue
            if not labelled:
                yield row[t]
                continue
            label, text = row[l].strip(), row[t]
            problem = _problem(label, text, known)
            if problem:
                bad(start, problem)
                continue
            yield start, label, text
    bad.done()


def _json_kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"a number ({v})"
    return {list: "a list", dict: "an object", str: "a string"}.get(type(v), type(v).__name__)


def _json_str(obj: dict, field: str, key: str) -> tuple:
    """(value, '') of a string field, or (None, what is wrong)."""
    if field not in obj:
        return None, f"no field '{field}' ({key})"
    v = obj[field]
    if not isinstance(v, str):
        return None, f"field '{field}' is {_json_kind(v)}, expected a string"
    return v, ""


def _jsonl(path, name, opts, bad, known, labelled):
    """One JSON object per line holding string fields data.text_field and data.label_field."""
    with _input(path) as stream:
        for lineno, line in _lines(stream, name, opts):
            if not line or line.isspace():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                bad(lineno, f"not valid JSON: {e.msg} (column {e.colno})")
                continue
            except RecursionError:
                bad(lineno, "JSON nested too deeply")
                continue
            if not isinstance(obj, dict):
                bad(lineno, f"expected a JSON object, found {_json_kind(obj)}")
                continue
            text, problem = _json_str(obj, opts.text_field, "data.text_field")
            if not problem and labelled:
                label, problem = _json_str(obj, opts.label_field, "data.label_field")
                problem = problem or _problem(label.strip(), text, known)
            if problem:
                bad(lineno, problem)
                continue
            yield (lineno, label.strip(), text) if labelled else text
    bad.done()


def _fasttext(path, name, opts, bad, known, labelled):
    """``__label__a [__label__b ...] text``; as prediction input the labels are stripped."""
    several = 0
    with _input(path) as stream:
        for lineno, line in _lines(stream, name, opts):
            labels, pos = [], 0
            while (m := _FT_LABEL.match(line, pos)) is not None:
                labels.append(m.group(1))
                pos = m.end()
            text = line[pos:].strip()
            if not labelled:
                yield text
                continue
            if not labels and not text:
                continue
            if not labels:
                bad(lineno, "no label: expected '__label__<label> text'")
                continue
            if len(labels) > 1:
                if not opts.multi_label:
                    bad(lineno, f"{len(labels)} labels ({', '.join(labels)}), but nlclf is single-label; "
                                f"set data.multi_label: true to keep the first")
                    continue
                several += 1
            problem = _problem(labels[0], text, known)
            if problem:
                bad(lineno, problem)
                continue
            yield lineno, labels[0], text
    if several:
        bad.log(f"{name}: {several} line{'s' if several > 1 else ''} with several labels: kept the first "
                f"(data.multi_label: true; multi-label training is not supported yet)")
    bad.done()


def _visible_txt(folder: Path) -> list:
    return sorted(p for p in folder.iterdir()
                  if not p.name.startswith(".") and p.suffix.lower() == ".txt" and p.is_file())


def _folder(path, name, opts, bad, known, labelled):
    """``root/<label>/*.txt``, one document per file; as prediction input also ``root/*.txt``."""
    root = Path(path)
    if str(path) == "-" or not root.is_dir():
        raise DataError(f"{name}: not a folder (data.format: folder reads <folder>/<label>/<document>.txt)")
    top = _visible_txt(root)
    if labelled and top:
        bad.log(f"{name}: ignored {len(top)} .txt file{'s' if len(top) > 1 else ''} outside the label folders")
    docs = [] if labelled else [(None, p) for p in top]
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        docs.extend((sub.name, p) for p in _visible_txt(sub))
    skip = 3 if _is_utf8(opts.encoding) else 0
    for label, doc in docs:
        try:
            raw = doc.read_bytes()
        except OSError as e:
            raise DataError(f"{doc}: cannot read: {e.strerror}") from None
        start = skip if raw[:3] == codecs.BOM_UTF8 else 0
        try:
            text = raw[start:].decode(opts.encoding, opts.encoding_errors).rstrip()
        except UnicodeDecodeError as e:
            at = start + e.start
            raise _undecodable(doc, raw.count(b"\n", 0, at) + 1, at, raw[at], opts.encoding) from None
        if not labelled:
            yield text
            continue
        problem = _problem(label.strip(), text, known)
        if problem:
            bad(1, problem, where=doc)
            continue
        yield 1, label.strip(), text
    bad.done()


READERS = {"tsv": _tsv, "csv": _csv, "jsonl": _jsonl, "fasttext": _fasttext, "folder": _folder}
FORMATS = tuple(READERS)


def _starts_with_label(path: Path) -> bool:
    """Whether the first non-blank line of a file starts with fastText's __label__."""
    try:
        with open(path, "rb") as f:
            for _ in range(1000):
                raw = f.readline(1 << 16)
                if not raw:
                    break
                s = raw.removeprefix(codecs.BOM_UTF8).strip()
                if s:
                    return s.startswith(b"__label__")
    except OSError:
        pass
    return False


def infer_format(path, log=None) -> str:
    """The format ``data.format: auto`` reads ``path`` as, noted through ``log``: a folder → folder,
    ``.csv`` → csv, ``.jsonl``/``.ndjson`` → jsonl, ``.ft``/``.fasttext`` or a first non-blank line
    starting with ``__label__`` → fasttext, anything else (and standard input) → tsv."""
    p = Path(path)
    suffix = p.suffix.lower()
    if str(path) == "-":
        fmt, why = "tsv", "standard input"
    elif p.is_dir():
        fmt, why = "folder", "a folder"
    elif suffix == ".csv":
        fmt, why = "csv", "the name ends in .csv"
    elif suffix in (".jsonl", ".ndjson"):
        fmt, why = "jsonl", f"the name ends in {suffix}"
    elif suffix in (".ft", ".fasttext"):
        fmt, why = "fasttext", f"the name ends in {suffix}"
    elif _starts_with_label(p):
        fmt, why = "fasttext", "the first line starts with __label__"
    else:
        fmt, why = "tsv", "the default for other names"
    if log is not None:
        log(f"{'<stdin>' if str(path) == '-' else path}: read as {fmt} ({why}); set data.format to choose")
    return fmt


def _records(path, opts, log, known, labelled: bool) -> Iterator[tuple]:
    opts = TSV_DEFAULTS if opts is None else opts
    fmt = infer_format(path, log) if opts.format == "auto" else opts.format
    name = "<stdin>" if str(path) == "-" else path
    bad = _BadLines(name, opts.on_bad_line, log, "document" if fmt == "folder" else "line")
    return READERS[fmt](path, name, opts, bad, known, labelled)


def iter_labelled(path, opts: DataConfig | None = None, log=None, known=None) -> Iterator[tuple]:
    """(line number, label, text) for each usable example of a labelled file or folder, streamed.

    ``opts`` is the DataConfig (None: TSV, UTF-8, strict, error on bad lines); ``log`` receives
    the format inference note, warnings and skip counts; ``known``, a set of labels, makes any
    other label a bad line (evaluation data). A format of ``auto`` is inferred at the call.
    """
    return _records(path, opts, log, known, True)


def read_labelled(path, opts: DataConfig | None = None, log=None, known=None) -> tuple:
    """(labels, texts) of a whole labelled input; no usable example is an error."""
    labels, texts = [], []
    for _, label, text in iter_labelled(path, opts, log, known):
        labels.append(label)
        texts.append(text)
    if not labels:
        raise DataError(f"{path}: no usable examples{_expected(path, opts)}")
    return labels, texts


def _expected(path, opts) -> str:
    fmt = (opts or TSV_DEFAULTS).format
    fmt = infer_format(path) if fmt == "auto" else fmt
    return f" (expected {EXPECTED[fmt]})"


def read_labels(path, opts: DataConfig | None = None, log=None, known=None) -> list:
    """Only the labels of a labelled input: the first pass over a large training file.
    Interned, so a million lines hold a handful of label strings."""
    return [sys.intern(label) for _, label, _ in iter_labelled(path, opts, log, known)]


def check_trainable(labels: list, path) -> None:
    """Zero usable examples, or a single class, stops a run before any training."""
    if not labels:
        raise DataError(f"{path}: no usable examples")
    if len(set(labels)) < 2:
        raise DataError(f"{path}: only one class ({labels[0]}); need at least two")


def iter_texts(paths: Iterable[str], opts: DataConfig | None = None, log=None) -> Iterator[str]:
    """The texts of prediction input, streamed; ``-`` is standard input. TSV (and fastText):
    each line is a text (labels stripped); CSV and JSONL: the data.text_field of each record;
    folder: each document."""
    for p in paths:
        yield from _records(p, opts, log, None, False)


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

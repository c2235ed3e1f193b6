"""Readers for labelled data, text streams and word vectors, and the dev split.

Input formats, chosen by ``data.format`` (a ``DataConfig``; ``opts=None`` means TSV, UTF-8,
strict decoding and errors on bad lines):

- ``tsv``: ``label<TAB>text`` per line (the default). As prediction input, each line is a text.
- ``csv``: a header row naming the ``data.text_field`` and ``data.label_field`` columns; quoted
  fields may hold commas, doubled quotes and newlines. A record is reported by its first line.
- ``jsonl``: one JSON object per line, with string fields ``data.text_field``/``data.label_field``.
- ``fasttext``: ``__label__pos some text``. Training with several labels on a line is the
  multi-label readers' (below; ``data.multi_label``); in the single-label readers such a line
  is a bad line unless ``data.multi_label`` is true, which keeps the FIRST label. As
  prediction input the leading ``__label__`` tokens are stripped.
- ``folder``: ``root/<label>/*.txt``, one document per file (its whole content, trailing
  whitespace stripped), in sorted order; hidden files and folders are skipped, and problems
  are reported as line 1 of the document. As prediction input, ``root/*.txt`` and then
  ``root/<sub>/*.txt``.
- ``auto``: inferred from the path by ``infer_format`` and noted through ``log``.

Several labels a text are read by ``iter_multilabelled``/``read_multilabelled`` (label tuples:
every ``__label__`` of a fastText line, a JSON list, a TSV/CSV field cut by ``data.label_sep``)
and turned into an (N, C) 0/1 matrix by ``label_matrix``; the single-label readers are unchanged.

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
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import DataConfig
from .errors import DataError

TSV_DEFAULTS = DataConfig(format="tsv")     # what opts=None means
WARN_LIMIT = 20                             # bad lines logged one by one under on_bad_line: warn
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
    """The byte stream of a file, of standard input for '-', or of a FilePart."""
    if str(path) == "-":
        yield sys.stdin.buffer
    elif isinstance(path, FilePart):
        with _open(Path(path.path)) as f:
            yield _Window(f, path)
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


def _bounded(stream, limit: int) -> Iterator[tuple]:
    """(raw line, whole) of a byte stream, never holding more than ``limit`` bytes of one line:
    a longer line yields its first ``limit`` bytes with whole=False, and the rest of it is
    read and dropped a block at a time (so /dev/zero is read in constant memory)."""
    readline = stream.readline
    for raw in iter(functools.partial(readline, limit + 1), b""):
        if len(raw) <= limit or raw.endswith(b"\n") and len(raw) == limit + 1:
            yield raw, True
            continue
        yield raw[:limit], False                      # a consumer that stops here never reads the rest
        while True:                                   # it goes on: drop the rest of the line
            rest = readline(1 << 16)
            if not rest or rest.endswith(b"\n"):
                break


def _too_long(limit: int) -> str:
    return f"longer than data.max_text_bytes ({limit} bytes); raise it, or set data.on_bad_line: skip"


def _lines(stream, name, opts, bad=None, labelled: bool = True) -> Iterator[tuple]:
    """(line number, line with its ending) of a byte stream, each line decoded on its own.
    A line longer than data.max_text_bytes is a bad line; as prediction input (``labelled``
    false, where every line must get an answer) it is cut to that length under
    on_bad_line skip or warn, and an error otherwise."""
    enc, errors, limit = opts.encoding, opts.encoding_errors, opts.max_text_bytes
    offset = getattr(stream, "offset", 0)                     # a FilePart's: where it starts
    offset += _skip_bom(stream, enc) if offset == 0 else 0
    for lineno, (raw, whole) in enumerate(_bounded(stream, limit), start=getattr(stream, "first_line", 1)):
        if not whole:
            if labelled or bad is None or bad.policy == "error":
                if bad is None:
                    raise DataError(f"{name}:{lineno}: {_too_long(limit)}")
                bad(lineno, _too_long(limit))
                offset += len(raw)
                if labelled:
                    continue
            else:
                bad(lineno, f"longer than data.max_text_bytes ({limit} bytes): cut to that length")
            raw = raw[:limit]
        try:
            line = raw.decode(enc, errors)
        except UnicodeDecodeError as e:
            if not whole and e.start > len(raw) - 4:              # a character cut at the limit
                line = raw[:e.start].decode(enc, errors)
            else:
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _problem(label: str, text: str, known) -> str:
    """What is wrong with a labelled example, or ''."""
    if not label:
        return "empty label"
    if _CONTROL.search(label):
        return (f"label {json.dumps(label, ensure_ascii=False)} holds a tab, newline or other control "
                f"character (it would break the one-line-per-text output)")
    if not text or text.isspace():
        return "empty text"
    if known is not None and label not in known:
        return f"label '{label}' not seen in training"
    return ""


# Readers: (path, name, opts, bad, known, labelled, id_field) -> labelled: (line number, label,
# text) of each usable example; unlabelled (prediction input): (identifier or None, text) of each
# record, the identifier being the id_field of a JSON Lines or CSV record, or a folder document's
# path relative to the folder.

def _tsv(path, name, opts, bad, known, labelled, id_field=None, keep_all=False):
    """``label<TAB>text`` lines; as prediction input every line (blank ones too) is a text."""
    with _input(path) as stream:
        for lineno, line in _lines(stream, name, opts, bad, labelled):
            line = line.rstrip("\r\n")
            if not labelled:
                yield None, line
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


def _csv(path, name, opts, bad, known, labelled, id_field=None, keep_all=False):
    """A header row, then records; quoted fields may hold commas, quotes and newlines."""
    csv.field_size_limit(opts.max_text_bytes)
    with _input(path) as stream:
        reader = csv.reader((line for _, line in _lines(stream, name, opts, bad, labelled)), strict=True)
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
                if id_field is not None and id_field not in header:
                    raise DataError(f"{name}:{start}: the CSV header has no column '{id_field}' (--id-field); "
                                    f"found: {', '.join(header)}")
                ident = header.index(id_field) if id_field is not None else None
                continue
            if len(row) != len(header):
                bad(start, f"{len(row)} fields, but the header has {len(header)}")
                continue
            if not labelled:
                yield (row[ident] if ident is not None else None), row[t]
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


def _json_labels(values: list, field: str, text: str) -> tuple:
    """(labels, '') of a JSON list of label strings, or (None, what is wrong)."""
    for v in values:
        if not isinstance(v, str):
            return None, f"field '{field}' holds {_json_kind(v)}, expected a list of strings"
    labels = tuple(v.strip() for v in values)
    return labels, "" if labels else f"field '{field}' is an empty list"


def _jsonl(path, name, opts, bad, known, labelled, id_field=None, keep_all=False):
    """One JSON object per line holding string fields data.text_field and data.label_field; with
    ``keep_all`` the label field may also be a list of strings, yielded as a tuple."""
    with _input(path) as stream:
        for lineno, line in _lines(stream, name, opts, bad, labelled):
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
            except ValueError as e:                     # e.g. an integer of thousands of digits
                bad(lineno, f"not valid JSON: {e}")
                continue
            if not isinstance(obj, dict):
                bad(lineno, f"expected a JSON object, found {_json_kind(obj)}")
                continue
            text, problem = _json_str(obj, opts.text_field, "data.text_field")
            if not problem and labelled:
                if keep_all and isinstance(obj.get(opts.label_field), list):
                    label, problem = _json_labels(obj[opts.label_field], opts.label_field, text)
                else:
                    label, problem = _json_str(obj, opts.label_field, "data.label_field")
                    problem = problem or _problem(label.strip(), text, known)
            ident = None
            if not problem and id_field is not None:
                ident = obj.get(id_field)
                if ident is None or isinstance(ident, (dict, list)):
                    problem = f"field '{id_field}' (--id-field) is {'missing' if ident is None else _json_kind(ident)}"
                ident = json.dumps(ident, ensure_ascii=False) if not isinstance(ident, str) else ident
            if problem:
                bad(lineno, problem)
                continue
            if labelled:
                yield lineno, (label if isinstance(label, tuple) else label.strip()), text
            else:
                yield ident, text
    bad.done()


def _fasttext(path, name, opts, bad, known, labelled, id_field=None, keep_all=False):
    """``__label__a [__label__b ...] text``; as prediction input the labels are stripped. With
    ``keep_all`` every label of a line is kept, yielded as a tuple."""
    several = 0
    with _input(path) as stream:
        for lineno, line in _lines(stream, name, opts, bad, labelled):
            labels, pos = [], 0
            while (m := _FT_LABEL.match(line, pos)) is not None:
                labels.append(m.group(1))
                pos = m.end()
            text = line[pos:].strip()
            if not labelled:
                yield None, text
                continue
            if not labels and not text:
                continue
            if not labels:
                bad(lineno, "no label: expected '__label__<label> text'")
                continue
            if keep_all:
                yield lineno, tuple(labels), text
                continue
            if len(labels) > 1:
                if opts.multi_label is not True:
                    bad(lineno, f"{len(labels)} labels ({', '.join(labels)}) in single-label data (the "
                                f"training data has one label a text); set data.multi_label: true to train "
                                f"on several labels a text")
                    continue
                several += 1
            problem = _problem(labels[0], text, known)
            if problem:
                bad(lineno, problem)
                continue
            yield lineno, labels[0], text
    if several:
        bad.log(f"{name}: {several} line{'s' if several > 1 else ''} with several labels: kept the first "
                f"(read as one label a text)")
    bad.done()


def _listing(folder: Path) -> list:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"{folder}: cannot read the folder: {e.strerror or e}") from None


def _visible_txt(folder: Path) -> list:
    return [p for p in _listing(folder) if not p.name.startswith(".") and p.suffix.lower() == ".txt" and p.is_file()]


def _folder(path, name, opts, bad, known, labelled, id_field=None, keep_all=False):
    """``root/<label>/*.txt``, one document per file; as prediction input also ``root/*.txt``."""
    root = Path(path)
    if str(path) == "-" or not root.is_dir():
        raise DataError(f"{name}: not a folder (data.format: folder reads <folder>/<label>/<document>.txt)")
    top = _visible_txt(root)
    if labelled and top:
        bad.log(f"{name}: ignored {len(top)} .txt file{'s' if len(top) > 1 else ''} outside the label folders")
    docs = [] if labelled else [(None, p) for p in top]
    for sub in [p for p in _listing(root) if p.is_dir() and not p.name.startswith(".")]:
        docs.extend((sub.name, p) for p in _visible_txt(sub))
    skip = 3 if _is_utf8(opts.encoding) else 0
    for label, doc in docs:
        try:
            with open(doc, "rb") as f:
                raw = f.read(opts.max_text_bytes + 1)
        except OSError as e:
            raise DataError(f"{doc}: cannot read: {e.strerror}") from None
        if len(raw) > opts.max_text_bytes:
            if labelled or bad.policy == "error":
                bad(1, _too_long(opts.max_text_bytes), where=doc)
                continue
            bad(1, f"longer than data.max_text_bytes ({opts.max_text_bytes} bytes): cut to that length", where=doc)
            raw = raw[:opts.max_text_bytes]
            cut = True
        else:
            cut = False
        start = skip if raw[:3] == codecs.BOM_UTF8 else 0
        try:
            text = raw[start:].decode(opts.encoding, opts.encoding_errors).rstrip()
        except UnicodeDecodeError as e:
            at = start + e.start
            if not (cut and at > len(raw) - 4):                  # not just a character cut at the limit
                raise _undecodable(doc, raw.count(b"\n", 0, at) + 1, at, raw[at], opts.encoding) from None
            text = raw[start:at].decode(opts.encoding, opts.encoding_errors).rstrip()
        if not labelled:
            yield doc.relative_to(root).as_posix(), text
            continue
        problem = _problem(label.strip(), text, known)
        if problem:
            bad(1, problem, where=doc)
            continue
        yield 1, label.strip(), text
    bad.done()


READERS = {"tsv": _tsv, "csv": _csv, "jsonl": _jsonl, "fasttext": _fasttext, "folder": _folder}
FORMATS = tuple(READERS)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True                   # missing: the reader reports it


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
    """The format ``data.format: auto`` reads ``path`` as: a folder → folder, ``.tsv``/``.tab`` →
    tsv, ``.csv`` → csv, ``.jsonl``/``.ndjson`` → jsonl, ``.ft``/``.fasttext`` → fasttext; for other
    names a guess, noted through ``log``: a first non-blank line starting with ``__label__`` →
    fasttext, else tsv (a pipe is not looked into: tsv). Standard input is tsv."""
    p = Path(path)
    suffix = p.suffix.lower()
    if str(path) == "-":
        fmt, why = "tsv", ""
    elif p.is_dir():
        fmt, why = "folder", ""
    elif suffix in (".tsv", ".tab"):
        fmt, why = "tsv", ""
    elif suffix == ".csv":
        fmt, why = "csv", ""
    elif suffix in (".jsonl", ".ndjson"):
        fmt, why = "jsonl", ""
    elif suffix in (".ft", ".fasttext"):
        fmt, why = "fasttext", ""
    elif not _is_regular(p):
        fmt, why = "tsv", "a pipe or device, read only once, so not looked into"
    elif _starts_with_label(p):
        fmt, why = "fasttext", "the first line starts with __label__"
    else:
        fmt, why = "tsv", "the default for other names"
    if log is not None and why:                      # a guess: say so (a name that says its format is no guess)
        log(f"{path}: read as {fmt} ({why}); set data.format to choose")
    return fmt


def _records(path, opts, log, known, labelled: bool, id_field=None) -> Iterator[tuple]:
    opts = TSV_DEFAULTS if opts is None else opts
    fmt = part_format(path, opts) if isinstance(path, FilePart) else \
        infer_format(path, log) if opts.format == "auto" else opts.format
    name = "<stdin>" if str(path) == "-" else path
    if id_field is not None and fmt not in ("jsonl", "csv"):
        raise DataError(f"{name}: --id-field names a field of JSON Lines or CSV records; this is read as {fmt}")
    bad = _BadLines(name, opts.on_bad_line, log, "document" if fmt == "folder" else "line")
    return READERS[fmt](path, name, opts, bad, known, labelled, id_field)


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


def iter_multilabelled(path, opts: DataConfig | None = None, log=None, known=None) -> Iterator[tuple]:
    """(line number, labels, text) for each usable example, ``labels`` a tuple of distinct labels
    in the order they were written: every ``__label__`` of a fastText line, the list (or string)
    in a JSON Lines label field, the TSV/CSV label field cut by ``data.label_sep`` (none: one
    label), a folder's one label. Blank pieces are dropped and repeats kept once; a label outside
    ``known`` makes the line a bad line, as in iter_labelled.
    """
    opts = TSV_DEFAULTS if opts is None else opts
    fmt = infer_format(path, log) if opts.format == "auto" else opts.format
    name = "<stdin>" if str(path) == "-" else path
    bad = _BadLines(name, opts.on_bad_line, log, "document" if fmt == "folder" else "line")
    cut = opts.label_sep if fmt in ("tsv", "csv") else ""
    for lineno, label, text in READERS[fmt](path, name, opts, bad, None, True, None, keep_all=True):
        pieces = label.split(cut) if cut else (label,) if isinstance(label, str) else label
        labels = tuple(dict.fromkeys(p.strip() for p in pieces if p.strip()))
        problem = next((p for p in map(lambda l: _problem(l, text, known), labels or ("",)) if p), "")
        if problem:
            bad(lineno, problem)
            continue
        yield lineno, labels, text


def read_multilabelled(path, opts: DataConfig | None = None, log=None, known=None) -> tuple:
    """(label tuples, texts) of a whole labelled input read by iter_multilabelled."""
    labels, texts = [], []
    for _, these, text in iter_multilabelled(path, opts, log, known):
        labels.append(tuple(sys.intern(l) for l in these))
        texts.append(text)
    if not labels:
        raise DataError(f"{path}: no usable examples{_expected(path, opts)}")
    return labels, texts


def label_matrix(label_sets: list, classes: list) -> np.ndarray:
    """The (N, C) 0/1 uint8 matrix of N label tuples over the C ``classes``: Y[i, c] = 1 when
    text i has label classes[c]. Built by one scatter, not a loop over cells."""
    index = {c: j for j, c in enumerate(classes)}
    counts = np.fromiter(map(len, label_sets), dtype=np.intp, count=len(label_sets))   # (N,)
    cols = np.fromiter((index[l] for these in label_sets for l in these), dtype=np.intp,
                       count=int(counts.sum()))
    Y = np.zeros((len(label_sets), len(classes)), dtype=np.uint8)                    # (N, C)
    Y[np.repeat(np.arange(len(label_sets)), counts), cols] = 1
    return Y


def may_hold_several(path, opts: DataConfig | None = None) -> bool:
    """Whether the labelled input at ``path`` can give a text several labels: fastText lines,
    JSON Lines (a list in the label field), TSV/CSV with data.label_sep; never a folder."""
    opts = TSV_DEFAULTS if opts is None else opts
    fmt = infer_format(path) if opts.format == "auto" else opts.format
    return fmt in ("fasttext", "jsonl") or (fmt in ("tsv", "csv") and bool(opts.label_sep))


def several_labels(label_sets: list) -> int:
    """How many texts have two labels or more: what turns multi-label training on."""
    return sum(len(these) > 1 for these in label_sets)


def _expected(path, opts) -> str:
    fmt = (opts or TSV_DEFAULTS).format
    fmt = infer_format(path) if fmt == "auto" else fmt
    return f" (expected {EXPECTED[fmt]})"


def read_labels(records) -> list:
    """Only the labels of iter_labelled's records: the first pass over a large training file.
    Interned, so a million lines hold a handful of label strings."""
    return [sys.intern(label) for _, label, _ in records]


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
    for _, text in iter_records(paths, opts, log):
        yield text


def iter_records(paths: Iterable[str], opts: DataConfig | None = None, log=None, id_field=None) -> Iterator[tuple]:
    """(identifier, text) of each record of prediction input (see iter_texts): the identifier is
    the ``id_field`` of a JSON Lines or CSV record, a folder document's path relative to the
    folder, else None."""
    for p in paths:
        yield from _records(p, opts, log, None, False, id_field)


# --- parts of a file, for prediction on several processes or machines ------------------------

class FilePart:
    """The lines of ``path`` in the bytes [start, end), the first of them line ``first_line``:
    iter_records reads it as it reads the whole file (the same texts, line numbers and byte
    offsets in messages), so a large file can be predicted a part a task. Only formats of one
    record a line are cut into parts (LINE_FORMATS); str() is the file's path."""

    __slots__ = ("path", "start", "end", "first_line")

    def __init__(self, path, start: int, end: int, first_line: int):
        self.path, self.start, self.end, self.first_line = str(path), start, end, first_line

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"FilePart({self.path!r}, {self.start}, {self.end}, {self.first_line})"


LINE_FORMATS = ("tsv", "fasttext", "jsonl")


class _Window:
    """A binary file read from a FilePart's start up to its end, as _lines reads a stream."""

    def __init__(self, f, part: FilePart):
        f.seek(part.start)
        self._f, self._left = f, part.end - part.start
        self.offset, self.first_line = part.start, part.first_line

    def _take(self, got: bytes) -> bytes:
        self._left -= len(got)
        return got

    def read(self, n: int = -1) -> bytes:
        return self._take(self._f.read(self._left if n < 0 else min(n, self._left)))

    def readline(self, n: int = -1) -> bytes:
        return self._take(self._f.readline(self._left if n < 0 else min(n, self._left)))

    def peek(self, n: int = 1) -> bytes:
        return self._f.peek(n)[:self._left]


def part_format(part: FilePart, opts: DataConfig) -> str:
    return infer_format(part.path) if opts.format == "auto" else opts.format


def line_parts(path, opts: DataConfig | None, lines: int) -> list:
    """``path`` cut into FileParts of ``lines`` lines (the last one shorter; an empty file is one
    empty part), found by one pass over its bytes; a file whose format is not of one record a
    line (CSV, whose quoted fields may hold newlines; a folder) is one part, its path."""
    opts = TSV_DEFAULTS if opts is None else opts
    fmt = infer_format(path) if opts.format == "auto" else opts.format
    if fmt not in LINE_FORMATS:
        return [str(path)]
    parts, start, first, pos, seen = [], 0, 1, 0, 0      # seen: newlines of the current part so far
    with _open(Path(path)) as f:
        for block in iter(functools.partial(f.read, 1 << 22), b""):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)   # newlines in the block
            for i in range(lines - 1 - seen, len(ends), lines):                 # each part's last newline
                end = pos + int(ends[i]) + 1
                parts.append(FilePart(path, start, end, first))
                start, first = end, first + lines
            seen = (seen + len(ends)) % lines
            pos += len(block)
    if pos > start or not parts:
        parts.append(FilePart(path, start, pos, first))
    return parts


FULL_HASH_BYTES = 64 << 20     # files up to this size are hashed whole; larger ones by their ends
END_BYTES = 1 << 20


def fingerprint(path) -> dict:
    """What a data file is now: size, modification time and a SHA-256 of its content (the
    whole file up to FULL_HASH_BYTES; beyond, of its first and last END_BYTES and its size).
    A folder (data.format: folder) is fingerprinted by its documents' names and sizes."""
    path = Path(path)
    try:
        st = path.stat()
        h = hashlib.sha256()
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file():
                    h.update(f"{p.relative_to(path)}\0{p.stat().st_size}\0{p.stat().st_mtime_ns}\n".encode())
            return {"path": str(path), "kind": "folder", "sha256": h.hexdigest()}
        with open(path, "rb") as f:
            if st.st_size <= FULL_HASH_BYTES:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                how = "whole"
            else:
                h.update(f.read(END_BYTES))
                f.seek(st.st_size - END_BYTES)
                h.update(f.read(END_BYTES))
                how = "first and last MiB"
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime, "sha256": h.hexdigest(), "hashed": how}


def changed(old: dict, new: dict) -> str:
    """'' when two fingerprints agree, else what differs."""
    if old.get("sha256") == new.get("sha256") and old.get("size") == new.get("size"):
        return ""
    if old.get("size") != new.get("size") and "size" in old:
        return f"its size changed from {old.get('size')} to {new.get('size')} bytes"
    return "its content changed"


def readable_again(path, folder: Path, log=None, max_line: int = 1 << 20) -> Path:
    """``path`` itself when it is a regular file or a folder; an input that can be read only
    once (a FIFO, /dev/stdin, a device) is copied once into ``folder`` and that copy returned,
    because training reads its file more than once (format, vocabulary, features). A line
    longer than ``max_line`` bytes stops the copy (/dev/zero never ends one)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return path
    copy = Path(folder) / f"spooled-{len(list(Path(folder).glob('spooled-*')))}-{path.name}"
    line_no, run = 1, 0                                # bytes since the last newline
    try:
        with open(path, "rb") as src, open(copy, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                last = block.rfind(b"\n")
                run = run + len(block) if last < 0 else len(block) - last - 1
                if run > max_line:                 # the readers check each line; this stops an endless one
                    raise DataError(f"{path}:{line_no}: a line longer than data.max_text_bytes ({max_line} bytes)")
                line_no += block.count(b"\n")
                dst.write(block)
    except OSError as e:
        copy.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except DataError:
        copy.unlink(missing_ok=True)
        raise
    if log is not None:
        log(f"{path}: not a regular file (a pipe or device): read once into {copy} ({copy.stat().st_size} bytes)")
    return copy


def _can_stratify(labels: list, fraction: float) -> bool:
    n = len(labels)
    counts: dict = {}
    for l in labels:
        counts[l] = counts.get(l, 0) + 1
    n_dev = max(1, int(round(fraction * n)))
    return bool(counts) and min(counts.values()) >= 2 and n_dev >= len(counts) and n - n_dev >= len(counts)


def split_kind(labels: list, fraction: float) -> str:
    """How stratified_split holds out dev for these labels, in words."""
    if _can_stratify(labels, fraction):
        return "stratified"
    return "at random: too few examples a class to stratify; labels seen only there are kept in train"


def stratified_split(labels: list, fraction: float, seed: int):
    """Boolean mask (N,) of the rows held out as dev: stratified when every class allows it;
    otherwise at random, keeping in train every example of a label the split would hold out whole."""
    from sklearn.model_selection import train_test_split
    n = len(labels)
    idx = np.arange(n)
    n_dev = max(1, int(round(fraction * n)))
    stratify = labels if _can_stratify(labels, fraction) else None
    if n < 2:
        raise DataError("need at least 2 training examples to split off a dev set")
    _, dev_idx = train_test_split(idx, test_size=n_dev, random_state=seed, stratify=stratify)
    mask = np.zeros(n, dtype=bool)
    mask[dev_idx] = True
    if stratify is None:            # a label held out whole would be unknown to the model: keep it in train
        in_train = {l for l, d in zip(labels, mask.tolist()) if not d}
        mask &= np.fromiter((l in in_train for l in labels), dtype=bool, count=n)
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
                with np.errstate(over="ignore"):
                    vec = np.array(parts[1:], dtype=np.float32)
            except ValueError:
                raise DataError(f"{path}:{lineno}: not a number in the vector of '{parts[0]}'") from None
            if not np.isfinite(vec).all():
                raise DataError(f"{path}:{lineno}: the vector of '{parts[0]}' holds NaN, infinity or a number beyond float32")
            vecs.append(vec)
            ids.append(i)
    return np.array(ids, dtype=np.int64), (np.stack(vecs) if vecs else np.zeros((0, dim), np.float32))

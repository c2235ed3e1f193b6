"""A model's checksum, hashed on another thread, with the standard library alone.

``checkpoint.checksum`` of a model's arrays is a hash of each array's name, dtype, shape and
bytes, in name order. ``load`` verifies it in full on every load. Hashing sst5's 179 MB takes
longer than the rest of loading, so a command may start it before NumPy and the pipeline are
imported (``prefetch``): reading and hashing release the GIL and run on another core meanwhile.
``checkpoint.map_npz`` then ``take``s the hash it started, if it is of the same file (same
inode, size and modification time) and hashed the ranges that NumPy's reading of the headers
finds; otherwise it hashes the file itself. Nothing here trusts the file: it only reads it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import struct
import threading
import zipfile

ARRAYS = re.compile(r"^model\.[0-9a-f]{16}\.npz$")
# The .npy header as NumPy writes it. Not parsed with ast: CPython 3.11's parser is not safe to
# run on two threads at once ("AST constructor recursion depth mismatch"), and NumPy parses the
# same headers with it on the loading thread meanwhile.
_HEADER = re.compile(r"^\{'descr': '(?P<descr>[^']*)', 'fortran_order': (?:True|False), "
                     r"'shape': \((?P<shape>(?:\d+, )*\d*,?)\), \}[ ]*\n$")
_DESCR = re.compile(r"^(\|[iu]1|<[fiu][248]|<f2)$")     # the dtypes nlclf writes, as NumPy spells them
PIECE = 1 << 24                                          # bytes read and hashed at a time


def members(path) -> list | None:
    """(name, dtype string, shape, offset, nbytes) of every .npy member of a stored .npz, from
    the zip's local headers and the .npy headers; None when a header is not one nlclf writes
    (NumPy reads those, and reports what is wrong)."""
    out = []
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            for info in zf.infolist():
                f.seek(info.header_offset)
                local = f.read(30)
                if len(local) != 30 or local[:4] != b"PK\x03\x04":
                    return None
                n_name, n_extra = struct.unpack("<HH", local[26:30])
                f.seek(info.header_offset + 30 + n_name + n_extra)
                magic = f.read(8)
                if magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
                    return None
                size = f.read(2 if magic[6] == 1 else 4)
                n = struct.unpack("<H" if magic[6] == 1 else "<I", size)[0]
                if n > 1 << 16:
                    return None
                m = _HEADER.match(f.read(n).decode("latin1"))
                if m is None or not _DESCR.match(m["descr"]):
                    return None
                descr, shape = m["descr"], tuple(int(d) for d in m["shape"].split(",") if d.strip())
                out.append((info.filename.removesuffix(".npy"), descr, shape, f.tell(),
                            int(descr[2:]) * math.prod(shape)))
    except (OSError, ValueError, MemoryError, zipfile.BadZipFile, struct.error, EOFError, KeyError,
            NotImplementedError, UnicodeDecodeError):
        return None
    return out


def of_ranges(path, ranges: list) -> str:
    """checkpoint.checksum() of the arrays given as (name, dtype string, shape, offset, nbytes),
    read from the file in PIECE bytes at a time (through the page cache, never a mapping: the
    process does not grow by what it hashes). OSError when the file ends early."""
    h = hashlib.sha256()
    buf = bytearray(min(PIECE, max((r[4] for r in ranges), default=0)))       # a small file: a small buffer
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        for name, dtype, shape, offset, nbytes in sorted(ranges):
            h.update(f"{name}|{dtype}|{shape}|".encode())
            f.seek(offset)
            while nbytes:
                got = f.readinto(view[:min(nbytes, len(buf))])
                if not got:
                    raise OSError("the file ended early")
                h.update(view[:got])
                nbytes -= got
    return h.hexdigest()


class Hashing(threading.Thread):
    """members() and of_ranges() of a file, on a thread: ``join()``, then ``ranges`` and
    ``digest`` (None when members() left the file to NumPy, or reading failed: ``error``)."""

    def __init__(self, path, identity: tuple):
        super().__init__(name="nlclf-digest", daemon=True)
        self.path, self.identity = path, identity
        self.ranges = self.digest = self.error = None

    def run(self):
        if self.identity is None:                       # not a regular file: nothing read
            return
        self.ranges = members(self.path)
        if self.ranges is not None:
            try:
                self.digest = of_ranges(self.path, self.ranges)
            except OSError as e:
                self.error = e


_STARTED: dict = {}                   # realpath -> Hashing started by prefetch, until taken
_LOCK = threading.Lock()


def identity(path) -> tuple | None:
    """Which file ``path`` is now: (real path, inode, size, mtime), or None if it is not a regular file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns


def prefetch(folder) -> None:
    """Start hashing the arrays file of the model in ``folder`` (its one model.<hex>.npz), if it
    has one; errors are left for loading to report."""
    try:
        names = [n for n in os.listdir(folder) if ARRAYS.match(n)]
    except OSError:
        return
    if len(names) == 1:
        path = os.path.join(folder, names[0])
        ident = identity(path)
        if ident is not None:
            with _LOCK:
                if ident[0] not in _STARTED:
                    _STARTED[ident[0]] = h = Hashing(path, ident)
                    h.start()


def take(path) -> Hashing:
    """The hashing of ``path`` that prefetch started, if it is of the file there now; else one
    started now."""
    ident = identity(path)
    with _LOCK:
        h = _STARTED.pop(ident[0], None) if ident is not None else None
    if h is None or h.identity != ident:
        h = Hashing(path, ident)
        h.start()
    return h

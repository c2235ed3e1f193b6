"""The only code that reads or writes model files (and the training state for --resume).

A model folder holds ``model.json`` (format version, config, vocabulary, labels, network
shape, a SHA-256 of the arrays, and the name of the arrays file) and that arrays file,
``model.<first 16 hex digits of the SHA-256>.npz``: stored (uncompressed) .npy members whose
data starts at a multiple of 64 bytes, so loading maps them into memory as they are (no copy,
no pickles) and verifies the SHA-256 on another thread (nlclf.digest, which a command may
start before the rest is imported) while the model is assembled; ``load`` returns only once
the digest matched. The featurizer's lookup tables are not built
here: a few texts do without them, a large batch builds them (features.bag).
Each file is written atomically (temporary file, fsync, rename): the arrays first, then
the JSON that names them, then stale arrays files are removed, so a crash at any moment
leaves a consistent pair, old or new. Both are byte-for-byte deterministic: the same
config and seed give the same files. The training state (``state.json`` and its arrays)
is written the same way.
"""

from __future__ import annotations

import dataclasses
import tokenize
import hashlib
import io
import json
import math
import mmap
import os
import re
import stat
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np

from . import __version__, digest
from .config import Config, from_dict, to_dict
from .errors import CheckpointError, ConfigError, OutputError
from . import features
from .model import Classifier
from .rundir import atomic_write
from .nn.activations import ACTIVATIONS
from .nn.layers import QuantizedRows
from .nn.mlp import INPUT_KINDS, OUTPUTS, NetSpec, param_shapes
from .vocab import Vocabulary

FORMAT_VERSION = 3              # 2 (2026-12): no guesses for pre-release fields (features.idf, a missing char_weight)
                                # 3 (2026-12): a compressed model (nlclf compress, with 'compressed'), or sigmoid
                                #   outputs (several labels a text) with their thresholds; every other model is
                                #   still written as 2, byte for byte as before
OLDEST_FORMAT = 2
COMPRESSED_FORMAT = SEVERAL_FORMAT = 3   # the version a compressed model, or one with several labels a text, is written as
META = "model.json"
_ARRAYS_NAME = re.compile(r"^(model|state)\.[0-9a-f]{16}\.npz$")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _write_pair(directory: Path, stem: str, arrays: dict, meta: dict) -> list:
    """``stem.<sha>.npz`` then ``stem.json`` naming it, then remove older ``stem.*.npz``;
    returns the two names, arrays first."""
    name = f"{stem}.{meta['sha256'][:16]}.npz"
    meta = dict(meta, arrays_file=name)
    atomic_write(directory / name, lambda f: write_npz(f, arrays))
    atomic_write(directory / f"{stem}.json", (json.dumps(meta, ensure_ascii=False, sort_keys=True) + "\n").encode())
    for old in directory.glob(f"{stem}.*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return [name, f"{stem}.json"]


def _check_spec(spec: NetSpec, meta_path) -> None:
    """Every field of the network description has its type and range."""
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    checks = [
        (isinstance(spec.input_kind, str) and spec.input_kind in INPUT_KINDS, "input_kind"),
        (isinstance(spec.activation, str) and spec.activation in ACTIVATIONS, "activation"),
        (all(is_int(h) and h > 0 for h in spec.hidden), "hidden"),
        (is_int(spec.n_inputs) and spec.n_inputs >= 2 and is_int(spec.n_classes) and spec.n_classes >= 2,
         "n_inputs/n_classes"),
        (is_int(spec.embed_dim) and spec.embed_dim >= 0 and is_int(spec.max_tokens) and spec.max_tokens >= 0,
         "embed_dim/max_tokens"),
        (all(is_num(v) and 0 <= v < 1 for v in (spec.dropout, spec.input_dropout)), "dropout"),
        (is_num(spec.leaky_slope), "leaky_slope"),
        (isinstance(spec.output, str) and spec.output in OUTPUTS, "output"),
        (all(isinstance(v, bool) for v in (spec.hidden_bias, spec.output_bias, spec.freeze_embeddings)), "biases"),
        (is_int(spec.pad_id) and 0 <= spec.pad_id < spec.n_inputs if is_int(spec.n_inputs) else False, "pad_id"),
    ]
    bad = [name for ok, name in checks if not ok]
    _expect(not bad, meta_path, f"damaged model metadata (invalid network field(s): {', '.join(bad)})")


def _arrays_path(directory: Path, meta: dict, meta_path: Path) -> Path:
    name = meta.get("arrays_file")
    _expect(isinstance(name, str) and _ARRAYS_NAME.match(name) is not None, meta_path,
            f"damaged metadata (arrays_file must name a file like model.<hex>.npz; got {name!r})")
    return directory / name


def _regular_file(path: Path, what: str) -> None:
    """A model's files must be regular files: a FIFO or a device would hang or never end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing{what}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file (a pipe, device or folder); not an nlclf model file")


MAX_NPY_HEADER = 1 << 16            # bytes of an .npy member beyond its data: the format's header


def _check_members(path: Path, expected: dict | None) -> None:
    """Before anything is inflated or read: every member of the archive is stored (nlclf never
    compresses), its name is one the metadata lists, and its size is what that array takes, so a
    small file can never ask for gigabytes."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError,
            KeyError, OverflowError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: damaged or not an nlclf array file ({type(e).__name__}: {e})") from None
    size = path.stat().st_size
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise CheckpointError(f"{path}: member {info.filename} is compressed; nlclf writes arrays "
                                  f"uncompressed (damaged or not an nlclf array file)")
        if info.file_size > size:
            raise CheckpointError(f"{path}: member {info.filename} claims {info.file_size} bytes, more than "
                                  f"the file holds (damaged)")
        if expected is not None:
            want = expected.get(name)
            if not info.filename.endswith(".npy") or not isinstance(want, dict):
                raise CheckpointError(f"{path}: holds {info.filename}, which the metadata does not list")
            try:
                nbytes = np.dtype(want.get("dtype")).itemsize * math.prod(int(d) for d in want.get("shape"))
            except (TypeError, ValueError):
                raise CheckpointError(f"{path}: damaged metadata for array {name}") from None
            if info.file_size > nbytes + MAX_NPY_HEADER:
                raise CheckpointError(f"{path}: member {info.filename} is {info.file_size} bytes, the metadata "
                                      f"says {nbytes} (damaged or altered)")


# What a damaged array file raises while it is read (a damaged .npy header is parsed as a
# Python literal: SyntaxError, TokenError)
_NPY_ERRORS = (ValueError, OSError, EOFError, KeyError, RuntimeError, NotImplementedError, MemoryError,
               OverflowError, SyntaxError, tokenize.TokenError, struct.error, TypeError)


def _read_arrays(path: Path, expected: dict | None = None) -> dict:
    """The arrays of an .npz file, never unpickling (object arrays are refused)."""
    _regular_file(path, "")
    _check_members(path, expected)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (zipfile.BadZipFile, *_NPY_ERRORS) as e:
        raise CheckpointError(f"{path}: damaged or not an nlclf array file ({type(e).__name__}: {e})") from None


def _member_arrays(path: Path):
    """(name, dtype, shape, fortran order, offset, nbytes) of every array of a stored .npz, read
    from the zip's local headers and the .npy headers alone; nothing else of the file is read."""
    out = []
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            for info in zf.infolist():
                f.seek(info.header_offset)
                local = f.read(30)
                if len(local) != 30 or local[:4] != b"PK\x03\x04":
                    raise ValueError(f"member {info.filename}: no local header")
                n_name, n_extra = struct.unpack("<HH", local[26:30])
                start = info.header_offset + 30 + n_name + n_extra           # the member's .npy
                f.seek(start)
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"member {info.filename}: .npy version {version}")
                shape, fortran, dtype = read_header(f)
                if dtype.hasobject:
                    raise ValueError(f"member {info.filename} holds Python objects")
                if not all(isinstance(d, int) and d >= 0 for d in shape):
                    raise ValueError(f"member {info.filename} has the shape {shape}")
                offset = f.tell()
                nbytes = dtype.itemsize * math.prod(shape)
                if offset + nbytes > start + info.file_size:
                    raise ValueError(f"member {info.filename} is shorter than its array")
                out.append((info.filename.removesuffix(".npy"), dtype, tuple(shape), fortran, offset, nbytes))
    except (zipfile.BadZipFile, *_NPY_ERRORS) as e:
        raise CheckpointError(f"{path}: damaged or not an nlclf array file ({type(e).__name__}: {e})") from None
    return out


def map_npz(path: Path, expected: dict, sha256: str):
    """The arrays of an .npz written by write_npz, mapped read-only into memory (no copy: a page
    is read when a row is first used), and a thread that checks them against ``sha256``:
    ``join()`` it before trusting the arrays, it then holds the error, if any, in ``.error``.
    Arrays of an older, unaligned file are copied. The hash is digest.take's: started earlier
    by digest.prefetch, or now; it is used if it hashed the ranges NumPy's reading of the
    headers finds, else the file is hashed again."""
    _regular_file(path, "")
    hashing = digest.take(path)
    _check_members(path, expected)
    members = _member_arrays(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else b""
    arrays = {}
    try:
        for name, dtype, shape, fortran, offset, nbytes in members:
            a = np.frombuffer(mm, dtype=dtype, count=math.prod(shape), offset=offset)
            a = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
            arrays[name] = a if offset % max(dtype.alignment, 1) == 0 else a.copy()
    except ValueError as e:
        raise CheckpointError(f"{path}: damaged or not an nlclf array file ({e})") from None

    def verify():
        ranges = [(name, dtype.str, shape, offset, nbytes) for name, dtype, shape, _, offset, nbytes in members]
        try:
            hashing.join()
            got = hashing.digest if hashing.ranges == ranges else None
            if got is None:
                got = digest.of_ranges(path, ranges)
            if got != sha256:
                check.error = CheckpointError(
                    f"{path}: checksum mismatch: the arrays do not match the metadata (damaged or altered)")
        except OSError as e:
            check.error = CheckpointError(f"{path}: cannot read: {e.strerror or e}")

    check = threading.Thread(target=verify, name="nlclf-verify", daemon=True)
    check.error = None
    check.start()
    return arrays, check


def _read_json(path: Path, what: str, missing: str) -> dict:
    _regular_file(path, missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: damaged {what} ({e})") from None


ALIGN = 64                          # each array's data starts at a multiple of this in the file
_PAD_EXTRA = 0xD935                 # the zip "extra field" id zipalign uses for alignment padding


def write_npz(f, arrays: dict) -> None:
    """An .npz archive into the open binary file ``f``, with fixed timestamps and sorted names
    (the same arrays give the same bytes), each array streamed into its member: no copy of an
    array, or of the archive, is made in memory. Members are stored, and each one's local header
    is padded (an extra field) so that its .npy starts at a multiple of ALIGN; NumPy pads the
    .npy header to 64 bytes, so every array's data is aligned in the file and can be mapped
    into memory as it is (``map_npz``)."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            info = zipfile.ZipInfo(name + ".npy", date_time=_EPOCH)
            zip64 = arr.nbytes > (1 << 30)
            header = 30 + len(info.filename.encode()) + (20 if zip64 else 0) + 4     # local header, extras
            pad = -(zf.start_dir + header) % ALIGN
            info.extra = struct.pack("<HH", _PAD_EXTRA, pad) + bytes(pad)
            with zf.open(info, "w", force_zip64=zip64) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def npz_bytes(arrays: dict) -> bytes:
    """write_npz's archive as bytes."""
    buf = io.BytesIO()
    write_npz(buf, arrays)
    return buf.getvalue()


def checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")       # the array's bytes, not a copy of them
    return h.hexdigest()


def _arrays_and_meta(model: Classifier, config: Config):
    config = dataclasses.replace(config, features=model.featurizer.spec)     # its "auto" values as resolved
    info = model.compression
    arrays = {}
    for k, v in model.params.items():
        if isinstance(v, QuantizedRows):          # compressed: int8 rows, their scales, the kept rows' bits
            arrays.update({f"quant.{k}.q": v.q, f"quant.{k}.scale": v.scale,
                           f"quant.{k}.keep": np.packbits(v.keep)})
            if v.basis is not None:
                arrays[f"quant.{k}.basis"] = v.basis
        else:
            arrays[f"param.{k}"] = v
    if model.featurizer.weights is not None:
        arrays["features.weights"] = model.featurizer.weights
    if model.featurizer.vocab.counts is not None:
        arrays["features.counts"] = model.featurizer.vocab.counts
    if info is not None:                          # stored narrower where the values allow it exactly
        for name in info.get("float16", ()):
            arrays[name] = arrays[name].astype(np.float16)
        counts = arrays.get("features.counts")
        if counts is not None:
            arrays["features.counts"] = counts.astype(np.min_scalar_type(max(int(counts.max(initial=0)), 0)))
    net = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(model.spec).items()}
    several = net.pop("output") == "sigmoid"         # a softmax model's metadata is as format 2 wrote it
    saved = to_dict(config)
    for key in ("compress", "compress_agreement"):      # train's output.compress, at its default: not written,
        if getattr(config.output, key) == getattr(type(config.output)(), key):   # so model.json is as before it
            saved["output"].pop(key, None)
    meta = {
        "format_version": 2 if info is None and not several else COMPRESSED_FORMAT,
        "nlclf_version": __version__,
        "config": saved,
        "labels": list(model.labels),
        "vocab": list(model.featurizer.vocab.tokens),
        "net": net,
        "temperature": float(model.temperature),
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()},
        "sha256": checksum(arrays),
    }
    if info is not None:
        meta["compressed"] = info
    if several:
        meta["net"]["output"] = "sigmoid"
        th = 0.5 if model.thresholds is None else model.thresholds     # None: saved in training, before they are chosen
        meta["thresholds"] = float(th) if np.ndim(th) == 0 else [float(t) for t in th]
    return arrays, meta


def encoded_size(model: Classifier, config: Config) -> int:
    """Bytes of the two model files ``save`` would write (model.json and its arrays file)."""
    arrays, meta = _arrays_and_meta(model, config)
    meta = dict(meta, arrays_file=f"model.{meta['sha256'][:16]}.npz")
    buf = io.BytesIO()
    write_npz(buf, arrays)
    return buf.tell() + len((json.dumps(meta, ensure_ascii=False, sort_keys=True) + "\n").encode())


def save(directory, model: Classifier, config: Config) -> list:
    """Write model.<sha16>.npz, then model.json (which names it), both atomically; returns
    their names, in that order."""
    directory = Path(directory)
    arrays, meta = _arrays_and_meta(model, config)
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"refusing to write a checkpoint: {name} has non-finite values")
    return _write_pair(directory, "model", arrays, meta)


def _expect(cond, path, what):
    if not cond:
        raise CheckpointError(f"{path}: {what}")


def load(directory) -> tuple:
    """(Classifier, Config, meta) from a model folder, verified; never unpickles."""
    directory = Path(directory)
    meta_path = directory / META
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such model folder")
    meta = _read_json(meta_path, "model metadata", ": not a model folder written by nlclf train")
    _expect(isinstance(meta, dict), meta_path, "damaged model metadata (not a JSON object)")
    version = meta.get("format_version")
    _expect(isinstance(version, int) and not isinstance(version, bool), meta_path,
            "damaged model metadata (no integer format_version)")
    _expect(version <= FORMAT_VERSION, meta_path,
            f"format version {version} is newer than this nlclf reads ({FORMAT_VERSION}); "
            f"upgrade nlclf")
    _expect(version >= COMPRESSED_FORMAT or "compressed" not in meta, meta_path,
            "damaged model metadata (only format version 3 has 'compressed')")
    _expect("compressed" not in meta or isinstance(meta["compressed"], dict), meta_path,
            "damaged model metadata ('compressed' must be an object)")
    _expect(version >= OLDEST_FORMAT, meta_path,
            f"format version {version} was written by a pre-release nlclf; this one reads "
            f"{OLDEST_FORMAT} to {FORMAT_VERSION}: train the model again")
    for key, tp in (("config", dict), ("labels", list), ("vocab", list), ("net", dict),
                    ("arrays", dict), ("sha256", str), ("temperature", (int, float))):
        _expect(isinstance(meta.get(key), tp), meta_path, f"damaged model metadata ('{key}' missing or of the wrong type)")
    _expect(set(map(type, meta["vocab"])) | set(map(type, meta["labels"])) <= {str},
            meta_path, "damaged model metadata (vocab and labels must be strings)")
    arrays_path = _arrays_path(directory, meta, meta_path)
    expected = meta["arrays"]
    arrays, check = map_npz(arrays_path, expected, meta["sha256"])
    try:
        model, config = _assemble(meta, meta_path, arrays, arrays_path, expected)
    finally:
        check.join()         # checked meanwhile, on another core; an error found there comes first
    if check.error is not None:
        raise check.error
    return model, config, meta


def _assemble(meta: dict, meta_path: Path, arrays: dict, arrays_path: Path, expected: dict):
    """(Classifier, Config) from checked metadata and the arrays it describes."""
    _expect(set(arrays) == set(expected), arrays_path,
            f"holds arrays {sorted(arrays)}, the metadata lists {sorted(expected)}")
    for name, a in arrays.items():
        want = expected[name]
        _expect(isinstance(want, dict) and a.dtype.str == want.get("dtype") and list(a.shape) == want.get("shape"),
                arrays_path, f"array {name} is {a.dtype.str} {list(a.shape)}, the metadata says {want}")
        _expect(a.dtype.kind in "fiu", arrays_path, f"array {name} has unsupported dtype {a.dtype}")
    try:
        config = from_dict(meta["config"], "config")
        net = dict(meta["net"])
        net["hidden"] = tuple(net.get("hidden", ()))
        spec = NetSpec(**net)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{meta_path}: damaged model metadata ({e})") from None
    _check_spec(spec, meta_path)
    _expect(math.isfinite(meta["temperature"]) and meta["temperature"] > 0, meta_path,
            f"damaged model metadata (temperature must be a positive number; got {meta['temperature']})")
    counts = arrays.get("features.counts")
    _expect(counts is None or (counts.shape == (len(meta["vocab"]),) and counts.dtype.kind in "iu"), arrays_path,
            f"features.counts must hold one integer per vocabulary entry ({len(meta['vocab'])})")
    vocab = Vocabulary(meta["vocab"], counts) if meta["vocab"][:2] == ["<pad>", "<unk>"] else None
    _expect(vocab is not None, meta_path, "damaged model metadata (vocabulary must start with <pad>, <unk>)")
    params = {k.removeprefix("param."): v for k, v in arrays.items() if k.startswith("param.")}
    weights = arrays.get("features.weights")
    info = meta.get("compressed")
    if info is not None:                  # float16 arrays computed in float32; the int8 rows stay mapped
        params = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in params.items()}
        weights = weights.astype(np.float32) if weights is not None and weights.dtype == np.float16 else weights
        try:
            shapes = param_shapes(NetSpec(**dict(meta["net"], hidden=tuple(meta["net"].get("hidden", ())))))
        except TypeError as e:
            raise CheckpointError(f"{meta_path}: damaged model metadata ({e})") from None
        for name in sorted({k.split(".")[1] for k in arrays if k.startswith("quant.")}):
            q, scale, keep, basis = (arrays.get(f"quant.{name}.{p}") for p in ("q", "scale", "keep", "basis"))
            width = shapes[name][1] if name in shapes else -1
            ok = (name in shapes and q is not None and scale is not None and keep is not None
                  and q.dtype == np.int8 and q.ndim == 2
                  and (q.shape[1] == width if basis is None else
                       basis.dtype == np.float32 and basis.shape == (q.shape[1], width))
                  and scale.dtype == np.float32 and scale.shape == (q.shape[0],)
                  and keep.dtype == np.uint8 and keep.shape == (-(-shapes[name][0] // 8),))
            _expect(ok, arrays_path, f"damaged compressed layer {name}")
            bits = np.unpackbits(keep)[:shapes[name][0]].astype(bool)
            _expect(int(bits.sum()) == q.shape[0], arrays_path,
                    f"damaged compressed layer {name} ({int(bits.sum())} rows marked kept, {q.shape[0]} stored)")
            params[name] = QuantizedRows(q, scale, bits, shapes[name][0], basis)
    featurizer = features.make(config.features, vocab, weights)
    if config.features.kind != "embed_concat" and config.features.weighting in ("tfidf", "nb"):
        _expect(weights is not None and weights.shape == (featurizer.n_features,), arrays_path,
                f"weighting {config.features.weighting} needs {featurizer.n_features} feature weights; "
                f"found {'none' if weights is None else list(weights.shape)}")
    _expect(spec.n_inputs == featurizer.n_features and spec.n_classes == len(meta["labels"]),
            meta_path, "damaged model metadata (network shape does not match vocabulary or labels)")
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    _expect(shapes == param_shapes(spec), arrays_path,
            f"parameter shapes {shapes} do not match the network the metadata describes")
    _expect(all(v.dtype.kind == "f" for v in params.values()), arrays_path, "parameters must be floating point")
    thresholds = None
    if spec.output == "sigmoid":
        thresholds = _thresholds(meta.get("thresholds"), spec.n_classes, meta_path)
    return Classifier(featurizer, spec, params, list(meta["labels"]), float(meta["temperature"]),
                      info, thresholds), config


def _thresholds(th, n_classes: int, meta_path: Path):
    """A sigmoid model's thresholds: a number from 0 to 1, or a list of one per label."""
    ok = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
    if ok(th):
        return float(th)
    _expect(isinstance(th, list) and len(th) == n_classes and all(map(ok, th)), meta_path,
            f"damaged model metadata (thresholds must be a number from 0 to 1 or a list of {n_classes}; got "
            f"{str(th)[:80]})")
    return np.asarray(th, dtype=np.float64)                                     # (C,)


# --- training state, for --resume ----------------------------------------------------

STATE_META = "state.json"


def save_state(directory, state, config: Config, extra: dict | None = None, best_is_current: bool = False) -> list:
    """The whole training state (weights, optimiser, generator, position, best so far).
    ``best_is_current``: the best weights are the current ones (the epoch just ended was the
    best), so they are written once."""
    directory = Path(directory)
    arrays = {f"param.{k}": v for k, v in state.params.items()}
    if not best_is_current:
        arrays.update({f"best.{k}": v for k, v in state.best_params.items()})
    arrays.update({f"opt.{k}": v for k, v in state.opt_arrays.items()})
    for i, member in enumerate(state.members):                  # an ensemble's finished members
        arrays.update({f"member{i}.{k}": v for k, v in member.items()})
    if state.order is not None:
        arrays["order"] = state.order
    meta = {"format_version": FORMAT_VERSION, "config": to_dict(config),
            "epoch": state.epoch, "batch": state.batch, "loss_sum": state.loss_sum, "step": state.step,
            "best_epoch": state.best_epoch,
            "best_score": state.best_score if math.isfinite(state.best_score) else None,
            "since_best": state.since_best, "history": state.history, "done": state.done,
            "opt_t": state.opt_t, "rng_state": state.rng_state,
            "member": state.member, "members_info": state.members_info, "best_is_current": best_is_current,
            "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()},
            "sha256": checksum(arrays)}
    if extra:
        meta.update(extra)
    return _write_pair(directory, "state", arrays, meta)


def load_state(directory):
    """(State, meta) saved by save_state; checked like a model."""
    from .training import State
    directory = Path(directory)
    meta_path = directory / STATE_META
    meta = _read_json(meta_path, "training state", ": no saved training state to resume from")
    _expect(isinstance(meta, dict) and isinstance(meta.get("format_version"), int), meta_path,
            "damaged training state")
    _expect(OLDEST_FORMAT <= meta["format_version"] <= FORMAT_VERSION, meta_path,
            f"format version {meta['format_version']}: this nlclf resumes {OLDEST_FORMAT} to {FORMAT_VERSION}")
    arrays_path = _arrays_path(directory, meta, meta_path)
    _expect(isinstance(meta.get("arrays"), dict), meta_path, "damaged training state (no array listing)")
    arrays = _read_arrays(arrays_path, meta["arrays"])
    _expect(checksum(arrays) == meta.get("sha256"), arrays_path, "checksum mismatch: damaged training state")
    try:
        group = lambda prefix: {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        best = meta["best_score"]
        best_params = ({k: v.copy() for k, v in group("param.").items()} if meta.get("best_is_current")
                       else group("best."))
        state = State(params=group("param."), opt_arrays=group("opt."), opt_t=int(meta["opt_t"]),
                      rng_state=meta["rng_state"], epoch=int(meta["epoch"]), batch=int(meta["batch"]),
                      order=arrays.get("order"), loss_sum=float(meta["loss_sum"]), step=int(meta["step"]),
                      best_params=best_params, best_epoch=int(meta["best_epoch"]),
                      best_score=-math.inf if best is None else float(best),
                      since_best=int(meta["since_best"]), history=list(meta["history"]), done=bool(meta["done"]),
                      member=int(meta.get("member", 0)), members_info=list(meta.get("members_info", [])))
        state.members = [group(f"member{i}.") for i in range(len(state.members_info))]
        _expect(state.member == len(state.members), meta_path,
                f"damaged training state (member {state.member} with {len(state.members)} finished before it)")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: damaged training state ({e})") from None
    return state, meta


def remove_state(directory) -> None:
    directory = Path(directory)
    (directory / STATE_META).unlink(missing_ok=True)
    for old in directory.glob("state.*.npz"):
        old.unlink(missing_ok=True)


def model_files(directory) -> list:
    """The files that make up the model in ``directory``: model.json and its arrays file."""
    directory = Path(directory)
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    return [directory / META, directory / meta["arrays_file"]]

"""Property-based tests: random bytes and random YAML into the readers, the config loader and
the checkpoint loader let no exception other than the project's own escape; random Unicode
text through a fitted featurizer and network gives finite probabilities.

Hypothesis runs derandomized (the same examples on every run, no example database), with
example counts that keep the whole file to a few tens of seconds.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import shutil
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from nlclf import checkpoint, config, data, pipeline
from nlclf.config import Config, DataConfig
from nlclf.errors import CheckpointError, ConfigError, NlclfError
from conftest import KEYWORDS, texts_for

# Derandomized for reproducible CI; no example database; no "explain" phase (it costs seconds per failure).
SETTINGS = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def examples(n: int):
    return settings(SETTINGS, max_examples=n)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


# ---------------------------------------------------------------- 1. readers

FRAGMENTS = [b"\t", b"\n", b"\r\n", b"\r", b",", b'"', b'""', b"{", b"}", b"[", b"]", b":", b'"text"',
             b'"label"', b'"text": "a b", "label": "pos"', b"__label__", b"__label__pos ", b" ", b"  ",
             b"pos", b"neg", b"text,label\n", b"label,text\n", b"\xff", b"\xc3", b"\xe2\x82", b"\xef\xbb\xbf",
             b"null", b"1", b"1e999", b"\\", b"\\u0000", b"\x00", "é".encode(), "\u2028".encode(),
             "\u0085".encode(), "漢字".encode(), b"\x0b", b"\x0c", b"\x1c"]
BYTES = st.one_of(st.binary(max_size=300),
                  st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=6)), max_size=60)
                  .map(b"".join))
READ_FORMATS = ("tsv", "csv", "jsonl", "fasttext", "folder")


def write_input(scratch: Path, fmt: str, raw: bytes) -> Path:
    if fmt != "folder":
        f = scratch / f"random.{fmt}"
        f.write_bytes(raw)
        return f
    root = scratch / "corpus"
    shutil.rmtree(root, ignore_errors=True)
    half = len(raw) // 2
    for label, doc in (("pos", raw[:half]), ("neg", raw[half:]), ("x y", raw)):
        (root / label).mkdir(parents=True)
        (root / label / "doc.txt").write_bytes(doc)
    (root / "top.txt").write_bytes(raw)
    return root


@examples(300)
@given(raw=BYTES, fmt=st.sampled_from(READ_FORMATS), errors=st.sampled_from(["strict", "replace"]),
       policy=st.sampled_from(["error", "skip", "warn"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252"]))
def test_readers_raise_only_data_errors(scratch, raw, fmt, errors, policy, encoding):
    path = write_input(scratch, fmt, raw)
    opts = DataConfig(format=fmt, encoding=encoding, encoding_errors=errors, on_bad_line=policy)
    logged = []
    try:
        labels, texts = data.read_labelled(path, opts, logged.append)
    except NlclfError:
        pass
    else:
        assert len(labels) == len(texts) > 0
        for label, text in zip(labels, texts):
            assert isinstance(label, str) and label and label == label.strip()
            assert isinstance(text, str) and text.strip()
    assert all(isinstance(m, str) for m in logged)
    try:                                    # the same bytes as prediction input
        assert all(isinstance(t, str) for t in data.iter_texts([path], opts))
    except NlclfError:
        pass


# ---------------------------------------------------------------- 2. the config loader

SECTION_KEYS = {name: [f.name for f in dataclasses.fields(tp)]
                for name, tp in typing.get_type_hints(Config).items() if name != "seed"}
CHOICES = sorted({c for what in (r[1] for r in config.RULES.values()) if what.startswith("one of ")
                  for c in what.removeprefix("one of ").split(", ")})
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10), st.integers(), st.floats(),
                    st.text(max_size=12), st.sampled_from(CHOICES + ["utf-16", "train.tsv", "", " "]))
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), kids, max_size=4)),
                      max_leaves=12)


def section(name):
    keys = SECTION_KEYS[name]
    key = st.one_of(st.sampled_from(keys), st.sampled_from(keys).map(lambda k: k[:-1]), st.text(max_size=8))
    return st.dictionaries(key, st.one_of(VALUES, st.lists(st.integers(-2, 200_000), max_size=3)), max_size=6)


CONFIG_LIKE = st.fixed_dictionaries(
    {"data": section("data").map(lambda d: {**d, "train": "train.tsv"})},
    optional={"seed": SCALARS, "modle": VALUES,
              **{name: st.one_of(section(name), VALUES) for name in SECTION_KEYS if name != "data"}})
ANY_YAML = st.recursive(SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), kids, max_size=4)),
    max_leaves=20)
YAML_FRAGMENTS = ["data:", "train:", "model:", "hidden:", " ", "  ", "\t", "\n", "- ", "[", "]", "{", "}", ":",
                  ",", "&a ", "*a", "<<: *a", "!!python/object/apply:os.system ['true']", "!!binary ", "!!set ",
                  "%YAML 1.1\n", "---\n", "...\n", "? ", "|", ">", "'", '"', "#", "1", "yes", "~", ".inf",
                  "2001-01-01", "\ufeff", "\x85", "\u2028", "é"]
YAML_TEXT = st.one_of(st.text(max_size=200), st.lists(st.one_of(st.sampled_from(YAML_FRAGMENTS), st.text(max_size=4)),
                                                      max_size=50).map("".join))


def load_or_config_error(text: str, overrides=()):
    try:
        cfg = config.load_text(text, "random.yaml", overrides)
    except ConfigError:
        return None
    assert isinstance(cfg, Config)
    assert config.load_text(config.dump(cfg), "effective.yaml") == cfg, "the effective config does not reload to itself"
    return cfg


@examples(120)
@given(doc=st.one_of(CONFIG_LIKE, ANY_YAML))
def test_random_yaml_documents_give_a_config_or_a_config_error(doc):
    load_or_config_error(yaml.safe_dump(doc, allow_unicode=True))


@examples(300)
@given(text=YAML_TEXT)
def test_random_text_gives_a_config_or_a_config_error(text):
    load_or_config_error(text)


DOTTED = [f"{s}.{k}" for s, keys in SECTION_KEYS.items() for k in keys] + ["seed"]
OVERRIDE = st.one_of(st.text(max_size=30),
                     st.tuples(st.one_of(st.sampled_from(DOTTED), st.text(max_size=12)), YAML_TEXT)
                     .map(lambda kv: f"{kv[0]}={kv[1]}"))


@examples(200)
@given(overrides=st.lists(OVERRIDE, max_size=3))
def test_random_set_overrides_give_a_config_or_a_config_error(overrides):
    load_or_config_error("data: {train: train.tsv}\nmodel: {hidden: [8]}\n", overrides)


# ---------------------------------------------------------------- deep nesting, which random inputs rarely reach

DEPTH = 5_000


def deep_jsonl(scratch):
    f = scratch / "deep.jsonl"
    f.write_bytes(b'{"text": "a b", "label": "pos"}\n{"text": ' + b"[" * DEPTH + b', "label": "neg"}\n')
    return lambda: data.read_labelled(f, DataConfig(format="jsonl"))


def deep_config(scratch):
    return lambda: config.load_text("data: {train: train.tsv}\nmodel: {hidden: " + "[" * DEPTH + "}\n", "deep.yaml")


def deep_override(scratch):
    return lambda: config.load_text("data: {train: train.tsv}\n", "c.yaml", ["model.hidden=" + "[" * DEPTH])


@pytest.mark.parametrize("make, error", [(deep_jsonl, NlclfError), (deep_config, ConfigError),
                                         (deep_override, ConfigError)],
                         ids=["jsonl-line", "config-file", "set-override"])
def test_deeply_nested_input_is_a_clean_error(scratch, make, error):
    with pytest.raises(error):
        make(scratch)()


# ---------------------------------------------------------------- shared tiny models

def examples_for_training(n_per_class: int, seed: int):
    rng = random.Random(seed)
    rows = [(lab, t) for lab in sorted(KEYWORDS) for t in texts_for(lab, n_per_class, rng)]
    rng.shuffle(rows)
    return [r[0] for r in rows], [r[1] for r in rows]


MODEL_CONFIGS = {
    "bow": "features: {kind: bow, ngrams: 2, hash_buckets: 16, weighting: tfidf, normalize: true, "
           "strip_accents: true, strip_punct: true}",
    "embed_mean": "features: {kind: embed_mean, embed_dim: 6, tokenizer: whitespace, ngrams: 2, weighting: log, "
                  "lowercase: false, min_count: 2}",
    "embed_concat": "features: {kind: embed_concat, embed_dim: 6, max_tokens: 5, truncate: tail, max_chars: 40}",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """kind -> (model in memory, the same model saved and loaded again, its folder)."""
    root = tmp_path_factory.mktemp("models")
    train, dev = examples_for_training(8, 1), examples_for_training(3, 2)
    out = {}
    for kind, features in MODEL_CONFIGS.items():
        cfg = config.load_text(f"data: {{train: t.tsv}}\n{features}\nmodel: {{hidden: [8]}}\n"
                               f"train: {{epochs: 3, lr: 0.05, batch_size: 8}}\n", f"{kind}.yaml")
        model, _ = pipeline.fit_lists(cfg, train, dev)
        if kind == "bow":
            model.temperature = 1.5
        (root / kind).mkdir()
        checkpoint.save(root / kind, model, cfg)
        loaded, _, _ = checkpoint.load(root / kind)
        out[kind] = (model, loaded, root / kind)
    return out


# ---------------------------------------------------------------- 3. the checkpoint loader

class Files(dict):
    """A model's files as bytes: meta (model.json), name (of the arrays file), arrays."""

    def __repr__(self):                     # keeps Hypothesis' reports of failing examples short
        return f"<model files: model.json, {self['name']}>"


@pytest.fixture(scope="module")
def saved(models) -> Files:
    folder = models["bow"][2]
    meta_bytes = (folder / "model.json").read_bytes()
    name = json.loads(meta_bytes)["arrays_file"]
    return Files(meta=meta_bytes, name=name, arrays=(folder / name).read_bytes())


def load_only_checkpoint_errors(scratch: Path, meta: bytes, arrays_name: str, arrays: bytes):
    """Write a model folder from bytes and load it: a CheckpointError, or a model that predicts."""
    folder = scratch / "model"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "model.json").write_bytes(meta)
    (folder / arrays_name).write_bytes(arrays)
    try:
        model, _, _ = checkpoint.load(folder)
    except CheckpointError:
        return
    p = model.proba(["goal match team", "", "pasta sauce ☃ oven"])
    assert p.shape == (3, len(model.labels)) and np.isfinite(p).all(), "a loaded model gives non-finite probabilities"


@examples(100)
@given(raw=BYTES)
def test_random_bytes_as_model_json(scratch, saved, raw):
    load_only_checkpoint_errors(scratch, raw, saved["name"], saved["arrays"])


@examples(100)
@given(raw=BYTES)
def test_random_bytes_as_arrays_file(scratch, saved, raw):
    load_only_checkpoint_errors(scratch, saved["meta"], saved["name"], raw)


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2, 3), st.floats(),
                              st.text(max_size=8), st.sampled_from(["<pad>", "<unk>", "bow", "embed_concat",
                                                                    "model.0000000000000000.npz", "<f4", ""])),
                    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids,
                                                                                        max_size=3)),
                    max_leaves=8)
EDIT = st.tuples(st.integers(0, 10**6), st.sampled_from(["replace", "delete"]), JSON)   # (which path, op, value)


def paths_of(node, prefix=()):
    """Every path (tuple of keys and list positions) into a JSON document; long lists: the first 3."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths_of(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            yield from paths_of(v, prefix + (i,))


def apply_edit(meta, path, op, value):
    if not path:
        return value if op == "replace" else {}
    node = meta
    for k in path[:-1]:
        node = node[k]
    if op == "delete":
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return meta


@examples(150)
@given(edits=st.lists(EDIT, min_size=1, max_size=3))
@example(edits=[(("temperature",), "replace", 0)]).via("a zero softmax temperature")
@example(edits=[(("net", "activation"), "replace", "bogus")]).via("an activation the network does not know")
def test_edited_model_json(scratch, saved, edits):
    """model.json with values replaced or deleted at random places (a path given as a tuple of
    keys is taken as it is; an integer picks one of the document's paths)."""
    meta = json.loads(saved["meta"])
    for which, op, value in edits:
        paths = list(paths_of(meta))
        path = which if isinstance(which, tuple) else paths[which % len(paths)]
        meta = apply_edit(meta, path, op, value)
    load_only_checkpoint_errors(scratch, json.dumps(meta).encode(), saved["name"], saved["arrays"])


def zip_headers(raw: bytes, signature: bytes) -> list:
    out, i = [], raw.find(signature)
    while i >= 0:
        out.append(i)
        i = raw.find(signature, i + 1)
    return out


HEADER_EDIT = st.tuples(st.sampled_from(["local", "central", "end", "anywhere"]), st.integers(0, 10**6),
                        st.integers(0, 63), st.integers(0, 255))
SIGNATURES = {"local": b"PK\x03\x04", "central": b"PK\x01\x02", "end": b"PK\x05\x06"}


@examples(300)
@given(edits=st.lists(HEADER_EDIT, min_size=1, max_size=4))
@example(edits=[("central", 0, 8, 1)]).via("the encryption flag of a member")
@example(edits=[("central", 0, 10, 99)]).via("an unknown compression method")
def test_edited_arrays_file(scratch, saved, edits):
    raw = bytearray(saved["arrays"])
    for where, which, pos, byte in edits:
        if where == "anywhere":
            at = which % len(raw)
        else:
            starts = zip_headers(bytes(raw), SIGNATURES[where]) or [0]
            at = (starts[which % len(starts)] + pos) % len(raw)
        raw[at] = byte
    load_only_checkpoint_errors(scratch, saved["meta"], saved["name"], bytes(raw))


DESCRS = ["<f4", ">f4", "<f8", "<f2", "<i4", "|u1", "|b1", "<c8", "|O", "<U4", "|V4", "<m8[s]", "<M8[D]", "|S3"]
DIMS = st.one_of(st.integers(-2, 40), st.integers(0, 2**70))


@examples(150)
@given(member=st.integers(0, 10), descr=st.sampled_from(DESCRS), shape=st.lists(DIMS, max_size=3).map(tuple),
       fortran=st.booleans(), cut=st.integers(-64, 64))
@example(member=0, descr="<f4", shape=(4_000_000_000_000, 3), fortran=False, cut=0).via("a huge shape")
def test_random_npy_headers_in_the_arrays_file(scratch, saved, member, descr, shape, fortran, cut):
    """One member of the arrays file rewritten with a random .npy header over its old data."""
    with zipfile.ZipFile(io.BytesIO(saved["arrays"])) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    name = sorted(members)[member % len(members)]
    data_bytes = np.load(io.BytesIO(members[name]), allow_pickle=False).tobytes()
    data_bytes = data_bytes[:len(data_bytes) + cut] if cut < 0 else data_bytes + b"\x00" * cut
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": fortran, "shape": shape})
    members[name] = header.getvalue() + data_bytes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for n in sorted(members):
            zf.writestr(n, members[n])
    load_only_checkpoint_errors(scratch, saved["meta"], saved["name"], buf.getvalue())


# ---------------------------------------------------------------- 4. featurizer and network on random text

TRICKY = ["", " ", "\x00", "a\x00b", "\n", "a\nb", "\t", "\r", "İ", "ﬁ", "e\u0301", "\u3000", "漢字かな",
          "don't", "’", "🙂" * 30, "goal " * 500, "\ud7ff", "\u0085", "\u2028", "__label__x y", "\ufeff"]
TEXTS = st.lists(st.one_of(st.text(max_size=60), st.sampled_from(TRICKY),
                           st.lists(st.sampled_from(TRICKY + sorted(w for ws in KEYWORDS.values() for w in ws)),
                                    max_size=8).map(" ".join)),
                 min_size=1, max_size=6)


@examples(200)
@given(texts=TEXTS, kind=st.sampled_from(sorted(MODEL_CONFIGS)))
def test_random_text_gives_finite_probabilities(models, texts, kind):
    model, loaded, _ = models[kind]
    X = model.featurizer.transform(texts)
    assert X.shape[0] == len(texts)
    p = model.proba(texts)                                             # (N, C)
    assert p.shape == (len(texts), len(model.labels))
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4)
    assert np.array_equal(p, loaded.proba(texts)), "the saved and loaded model predicts differently"
    for i, t in enumerate(texts):                                      # a text's row does not depend on its batch
        assert np.allclose(model.proba([t])[0], p[i], rtol=1e-5, atol=1e-6), f"{t!r} alone vs in a batch"


# ---------------------------------------------------------------- 5. tokens and character n-grams by integers

TEXT_PIECES = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(
    [" ", "  ", "\t", "\n", "\x00", "\u2028", "\u0085", "\x1c", "don't", "l’homme", "İ", "ß", "Σ", "东京", "👍🏽",
     "--", "<", ">", "<a>", "_", "a_b", "\ud800", "é", "e\u0301"])), max_size=12).map("".join)


@examples(300)
@given(st.lists(TEXT_PIECES, max_size=6), st.sampled_from(["regex", "whitespace"]), st.booleans(),
       st.booleans(), st.booleans(), st.sampled_from([0, 3]), st.sampled_from([0, 2, 100]))
def test_tokens_by_distinct_pieces_are_the_tokens_of_the_batch(texts, mode, lowercase, accents, punctuation,
                                                               max_chars, cap):
    """text.tokenize_distinct (each distinct whitespace piece tokenized once, tokens as integers)
    gives exactly tokenize_many's tokens, cut to max_token_chars, in first-seen order."""
    from nlclf.text import tokenize_distinct, tokenize_many
    expected = tokenize_many(texts, mode, lowercase, accents, punctuation, max_chars)
    if cap:
        expected = [t[:cap] for t in expected]
    distinct, ids = tokenize_distinct(texts, mode, lowercase, accents, punctuation, max_chars, cap)
    assert ids.dtype == np.int32
    assert [distinct[i] for i in ids.tolist()] == expected
    assert distinct == list(dict.fromkeys(expected))


@examples(200)
@given(st.lists(TEXT_PIECES, max_size=8), st.integers(1, 4), st.integers(0, 3))
def test_character_ngrams_by_code_points_are_the_strings(words, lo, extra):
    """bag.word_char_grams finds, word by word, the windows text.char_ngrams makes, and a window's
    key is the key of the vocabulary entry with the same string (string_char_keys)."""
    from nlclf.features.bag import string_char_keys, word_char_grams
    from nlclf.text import CHAR_MARK, char_ngrams
    hi = lo + extra
    word, keys, start, size, marked = word_char_grams(words, lo, hi)
    assert (np.diff(word) >= 0).all()
    got = [[] for _ in words]
    for w, a, n in zip(word.tolist(), start.tolist(), size.tolist()):
        got[w].append(CHAR_MARK + marked[a:a + n])
    assert [sorted(g) for g in got] == [sorted(char_ngrams(w, lo, hi)) for w in words]
    strings = [marked[a:a + n] for a, n in zip(start.tolist(), size.tolist())]
    assert (string_char_keys(strings) == keys).all() if strings else len(keys) == 0

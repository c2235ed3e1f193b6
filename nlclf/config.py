"""The run configuration: typed, frozen dataclasses, validated once at load.

A config is YAML with the sections below; ``--set section.key=value`` overrides go
through the same checks. Every problem is reported at once, each message naming
the file, its line, the key, the rule and the value found.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError
from .features.weighting import WEIGHTINGS
from .nn.activations import ACTIVATIONS
from .nn.mlp import INPUT_KINDS
from .nn.optim import OPTIMIZERS, SCHEDULES
from .text import TOKENIZERS


def _yaml():
    """PyYAML, imported when a config is first read or written as YAML: a model folder holds its
    config as JSON, so loading one to predict does without it (about 20 ms of a start)."""
    import yaml
    return yaml


@dataclass(frozen=True)
class DataConfig:
    root: str = ""                      # folder the paths are relative to ("": --data-root, $NLCLF_DATA_ROOT, data/)
    train: str = ""
    dev: str = ""                       # empty: split dev_fraction off train (stratified, seeded)
    test: str = ""
    dev_fraction: float = 0.1
    format: str = "auto"                # auto | tsv | csv | jsonl | fasttext | folder; auto: from the path
    text_field: str = "text"            # CSV column / JSON Lines key of the text
    label_field: str = "label"          # CSV column / JSON Lines key of the label
    encoding: str = "utf-8"             # any ASCII-compatible codec (latin-1, cp1252, utf-8-sig, ...)
    encoding_errors: str = "strict"     # strict: an undecodable byte is an error; replace: U+FFFD
    on_bad_line: str = "error"          # error: stop; skip: drop, log a count; warn: also log each
    max_text_bytes: int = 1 << 20       # longest line (or document) read; a longer one is a bad line
    labels: tuple = ()                  # the label order of every table and picture (): sorted
    multi_label: bool = "auto"          # several labels a text: auto (when a training text has two), true, false
    label_sep: str = ""                 # TSV/CSV: splits the label field into several labels ("": one label)

    @staticmethod
    def ascii_codec(name: str) -> bool:
        """Whether ``name`` is a text codec that reads ASCII bytes as ASCII (lines split on b'\\n')."""
        import codecs
        probe = "\t\n\r ,\"{}:_azAZ09"
        try:
            info = codecs.lookup(name)
            return getattr(info, "_is_text_encoding", True) and probe.encode("ascii").decode(name) == probe
        except (LookupError, UnicodeError, TypeError, ValueError):
            return False


@dataclass(frozen=True)
class FeatureSpec:
    """The ``features`` section; defaults are the documented defaults (load_text makes ngrams 1
    for embed_concat and char_ngrams [] for the embedding kinds unless they are set)."""

    kind: str = "bow"
    tokenizer: str = "regex"          # regex (Unicode words) | whitespace (pre-tokenized)
    lowercase: bool = True
    strip_accents: bool = False
    strip_punct: bool = False
    max_chars: int = 0                # cut each text to this many characters (0: no limit)
    max_token_chars: int = 100        # cut longer tokens to this many characters (bounds character n-grams)
    min_count: int = 1                # keep tokens and n-grams seen at least this often in training
    max_size: int = "auto"            # keep the most frequent (0: no limit; auto: by data size)
    ngrams: int = 2                   # 1: words only; 2 adds bigrams (bow, embed_mean)
    hash_buckets: int = 0             # n-grams not in the vocabulary go to B buckets (0: dropped)
    char_ngrams: tuple = (2, 5)       # (min, max): character n-grams of words (bag kinds); (): none
    char_below: int = "auto"          # only of words seen fewer times in training, and unknown words (0: every word; auto: by data size)
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


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple = "auto"            # widths; auto: one layer, by the first layer's size (pipeline.auto_hidden)
    activation: str = "gelu"
    leaky_slope: float = 0.01
    hidden_bias: bool = True
    output_bias: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "auto"             # sgd | momentum | adam | adagrad | auto: by the training set's size (training.auto_optimizer)
    lr: float = "auto"                  # auto: the optimizer's (adam 0.0003, sgd 2.0, momentum 0.2)
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    schedule: str = "auto"              # constant | linear | cosine | auto: adam's constant, sgd's linear
    warmup: int = 0                     # steps of linear warm-up
    batch_size: int = 64
    epochs: int = 20
    epoch_size: int = 0                 # examples an epoch (dev evaluation, early stopping, checkpoint after each); 0: auto, all up to 200,000
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 0.0              # 0: no clipping
    patience: int = "auto"              # epochs without a better dev score before stopping (0: never); auto: 3, off for a decaying schedule
    min_delta: float = 0.0005           # a dev score must rise by more than this to reset the patience
    metric: str = "accuracy"            # accuracy | macro_f1 | micro_f1, picks the best epoch (several labels: accuracy means micro_f1)
    pos_weight: float = "auto"          # several labels: weight of each label's positives (auto: sqrt(negatives / positives) in [1, 10])
    thresholds: str = "global"          # several labels: one threshold chosen on dev (global) or one per label (per_label)
    dtype: str = "float32"
    calibrate: bool = False             # fit a softmax temperature on the dev set after training
    ensemble: int = 1                   # K networks from K seeds, merged into one averaging their logits
    checkpoint_seconds: float = 30.0    # save the training state at an epoch's end when this long since the last save (0: every epoch)


@dataclass(frozen=True)
class OutputConfig:
    dir: str = "runs/default"
    compress: str = ""                  # "" (off) or a size, e.g. 8MB: save the model compressed (nlclf compress)
    compress_agreement: float = 0.99    # ... only if it agrees with the full model on this share of dev


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?)[bB]?\s*$")


def parse_size(text, where: str = "--max-size") -> int:
    """'8MB' -> 8,000,000 bytes; '8MiB' -> 8,388,608; '500kB', '1.5GB', or a plain number of bytes."""
    from .errors import ConfigError
    m = _SIZE.match(str(text))
    size = 0
    if m:
        value, unit, binary = float(m.group(1)), m.group(2).lower(), m.group(3)
        size = int(value * (1024 if binary else 1000) ** " kmg".index(unit or " "))
    if size <= 0:
        raise ConfigError(f"{where}: {text!r} is not a size of more than 0 bytes (e.g. 8MB, 500kB, 8MiB, 1000000)")
    return size


@dataclass(frozen=True)
class Config:
    seed: int = 13
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureSpec = field(default_factory=FeatureSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


SECTIONS = {f.name: f.type for f in fields(Config)}


def _choice(options):
    return (lambda v: v in options, "one of " + ", ".join(sorted(options)))


def _range(lo=None, hi=None, lo_open=False, hi_open=False):
    def ok(v):
        return (math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo))
                and (hi is None or (v < hi if hi_open else v <= hi)))
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    return ok, "a number " + " and ".join(parts)


_PATH = (lambda v: "\x00" not in v and len(v) < 4096, "a path (no NUL byte, under 4096 characters)")

METRICS = ("accuracy", "macro_f1", "micro_f1")     # dev metrics that pick the best epoch (train.metric)

# Rules beyond the type: dotted key -> (predicate, what is allowed).
RULES = {
    "seed": _range(0),
    "data.dev_fraction": _range(0, 1, True, True),
    "data.format": _choice(("auto", "tsv", "csv", "jsonl", "fasttext", "folder")),
    "data.text_field": (lambda v: bool(v.strip()), "a non-empty column or field name"),
    "data.label_field": (lambda v: bool(v.strip()), "a non-empty column or field name"),
    "data.encoding": (DataConfig.ascii_codec, "a text encoding Python knows that keeps ASCII as it is "
                      "(utf-8, utf-8-sig, latin-1, cp1252, ...; not utf-16 or utf-32)"),
    "data.encoding_errors": _choice(("strict", "replace")),
    "data.on_bad_line": _choice(("error", "skip", "warn")),
    "data.max_text_bytes": _range(16, 1 << 30),
    "data.label_sep": (lambda v: v == "" or (v.strip() == v and "\t" not in v and "\n" not in v),
                       "'' or a separator without blanks, tabs or newlines (e.g. ',')"),
    "data.root": _PATH,
    "data.labels": (lambda v: len(set(v)) == len(v) and all(l.strip() == l and l and "\t" not in l and "\n" not in l
                                                            for l in v),
                    "a list of distinct labels (no blanks, tabs or newlines), or [] for sorted order"),
    "data.train": _PATH,
    "data.dev": _PATH,
    "data.test": _PATH,
    "features.pretrained": _PATH,
    "output.dir": _PATH,
    "output.compress": (lambda v: v == "" or (_SIZE.match(v) is not None and float(_SIZE.match(v).group(1)) > 0),
                        "'' (off) or a size such as 8MB, 500kB or 8MiB"),
    "output.compress_agreement": _range(0, 1),
    "features.kind": _choice(INPUT_KINDS),
    "features.tokenizer": _choice(TOKENIZERS),
    "features.max_chars": _range(0),
    "features.max_token_chars": _range(1, 10000),
    "features.min_count": _range(1),
    "features.max_size": _range(0),
    "features.ngrams": _range(1, 5),
    "features.hash_buckets": _range(0, 2**24),
    "features.char_ngrams": (lambda v: len(v) == 0 or (len(v) == 2 and 1 <= v[0] <= v[1] <= 12),
                             "[] (none) or [min, max] with 1 <= min <= max <= 12"),
    "features.char_below": _range(0),
    "features.char_weight": _range(0, None, True),
    "features.weighting": _choice(WEIGHTINGS),
    "features.nb_alpha": _range(0, None, True),
    "features.max_tokens": _range(1, 10000),
    "features.truncate": _choice(("head", "tail")),
    "features.embed_dim": _range(1, 4096),
    "features.embed_lr": _range(0),
    "features.embed_l2": _range(0),
    "features.word_dropout": _range(0, 1, False, True),
    "features.workers": _range(0, 256),
    "model.hidden": (lambda v: all(1 <= h <= 100000 for h in v), "a list of layer widths, each 1..100000"),
    "model.activation": _choice(ACTIVATIONS),
    "model.leaky_slope": _range(0, 1),
    "model.dropout": _range(0, 1, False, True),
    "train.optimizer": _choice(OPTIMIZERS + ("auto",)),
    "train.lr": _range(0, None, True),
    "train.momentum": _range(0, 1, False, True),
    "train.beta1": _range(0, 1, False, True),
    "train.beta2": _range(0, 1, False, True),
    "train.eps": _range(0, None, True),
    "train.schedule": _choice(SCHEDULES + ("auto",)),
    "train.warmup": _range(0),
    "train.batch_size": _range(1, 1_000_000),
    "train.epochs": _range(1, 100000),
    "train.epoch_size": _range(0),
    "train.min_delta": _range(0, 1),
    "train.weight_decay": _range(0),
    "train.label_smoothing": _range(0, 1, False, True),
    "train.clip_norm": _range(0),
    "train.patience": _range(0),
    "train.metric": _choice(METRICS),
    "train.pos_weight": _range(0, None, True),
    "train.thresholds": _choice(("global", "per_label")),
    "train.dtype": _choice(("float32", "float64")),
    "train.ensemble": _range(1, 64),
    "train.checkpoint_seconds": _range(0),
}


STRING_LISTS = {"data.labels"}           # tuple fields holding strings (the others hold integers)
AUTO = "auto"
AUTO_INTS = {"features.max_size", "features.char_below",       # integers that may be "auto": chosen from the training
             "train.patience"}                                  # data's size (train.patience: by the schedule)
AUTO_FLOATS = {"train.lr", "train.pos_weight"}                 # numbers that may be "auto": chosen with the optimizer, from the label counts
AUTO_BOOLS = {"data.multi_label"}                              # switches that may be "auto": chosen from the training data
AUTO_LISTS = {"model.hidden"}                                  # lists that may be "auto": chosen from the features
AUTO_VALUES = AUTO_INTS | AUTO_FLOATS | AUTO_BOOLS | AUTO_LISTS
AUTO_KEYS = AUTO_VALUES | {"train.optimizer", "train.schedule"}   # every key that may be "auto"


def _type_name(tp, key: str = "") -> str:
    if tp is tuple and key in STRING_LISTS:
        return "a list of strings"
    if tp is int and key in AUTO_INTS:
        return f"an integer or {AUTO}"
    if tp is float and key in AUTO_FLOATS:
        return f"a number or {AUTO}"
    if tp is bool and key in AUTO_BOOLS:
        return f"true, false or {AUTO}"
    if tp is tuple and key in AUTO_LISTS:
        return f"a list of integers or {AUTO}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            tuple: "a list of integers"}.get(tp, str(tp))


_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _coerce(tp, value, key: str = ""):
    """Check value against a field type; return (ok, value)."""
    if tp is tuple and key in STRING_LISTS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, tuple(value) if ok else value
    if value == AUTO and key in AUTO_VALUES:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)          # YAML 1.1 reads 1e-3 (no dot) as a string
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        if value is None:
            return True, ""
        return isinstance(value, str), value
    if tp is tuple:
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        return ok, tuple(value) if ok else value
    return False, value


def _field_types(section_cls) -> dict:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in fields(section_cls)}


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fmt(value) -> str:
    return _yaml().safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _lines(node, prefix="", out=None) -> dict:
    """Map each dotted key of a composed YAML mapping to its 1-based line."""
    out = {} if out is None else out
    if isinstance(node, _yaml().MappingNode):
        for key, value in node.value:
            dotted = f"{prefix}{key.value}"
            out[dotted] = key.start_mark.line + 1
            _lines(value, dotted + ".", out)
    return out


class _Problems:
    def __init__(self, source: str, lines: dict):
        self.source, self.lines, self.items = source, lines, []

    def add(self, key: str, rule: str, value=dataclasses.MISSING, hint: str = ""):
        where = self.source
        line = self.lines.get(key) if isinstance(self.lines, dict) else None
        if line:
            where += f":{line}"
        got = "" if value is dataclasses.MISSING else f"; got {_fmt(value)}"
        self.items.append(f"{where}: {key}: {rule}{got}{hint}")


def _build(raw: dict, problems: _Problems) -> Config:
    sections = {}
    for key in raw:
        if key not in SECTIONS:
            problems.add(str(key), "unknown key; allowed: " + ", ".join(SECTIONS),
                         hint=_suggest(key, SECTIONS))
    for name, tp in SECTIONS.items():
        value = raw.get(name, dataclasses.MISSING)
        if name == "seed":
            if value is dataclasses.MISSING:
                continue
            ok, value = _coerce(int, value)
            pred, what = RULES["seed"]
            if not ok or not pred(value):
                problems.add(name, f"must be {_type_name(int)}, {what}", value)
                continue
            sections[name] = value
            continue
        section_cls = typing.get_type_hints(Config)[name]
        types = _field_types(section_cls)
        if value is dataclasses.MISSING or value is None:
            value = {}
        if not isinstance(value, dict):
            problems.add(name, "must be a mapping of keys to values", value)
            continue
        kwargs = {}
        for key, v in value.items():
            dotted = f"{name}.{key}"
            if key not in types:
                problems.add(dotted, f"unknown key; allowed in '{name}': " + ", ".join(types),
                             hint=_suggest(key, types))
                continue
            ok, v = _coerce(types[key], v, dotted)
            if not ok:
                problems.add(dotted, f"must be {_type_name(types[key], dotted)}", value[key])
                continue
            pred, what = RULES.get(dotted, (None, None))
            if pred and not (v == AUTO and dotted in AUTO_KEYS) and not pred(v):
                hint = _suggest(v, RULES[dotted][1].removeprefix("one of ").split(", ")) \
                    if what.startswith("one of") else ""
                problems.add(dotted, f"must be {what}", v, hint)
                continue
            kwargs[key] = v
        sections[name] = section_cls(**kwargs)
    return Config(**sections)


def _cross_checks(cfg: Config, problems: _Problems) -> None:
    if not cfg.data.train:
        problems.add("data.train", "is required: the training file, relative to the data root")
    if cfg.data.text_field.strip() == cfg.data.label_field.strip():
        problems.add("data.label_field", "must differ from data.text_field", cfg.data.label_field)
    if cfg.features.kind == "embed_concat" and cfg.features.ngrams > 1:
        problems.add("features.ngrams", "must be 1 with kind embed_concat (n-grams are for the bag kinds)",
                     cfg.features.ngrams)
    if cfg.features.kind == "embed_concat" and cfg.features.char_ngrams:
        problems.add("features.char_ngrams", "must be [] with kind embed_concat (character n-grams are "
                     "for the bag kinds)", list(cfg.features.char_ngrams))
    if cfg.features.freeze and not cfg.features.pretrained:
        problems.add("features.freeze", "needs features.pretrained (a frozen random table learns nothing)", True)


def parse_override(text: str):
    """'train.lr=0.05' -> ('train.lr', 0.05), the value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. --set train.lr=0.05")
    key, raw = text.split("=", 1)
    if not raw.strip():
        return key.strip(), ""
    try:
        value, _ = read_yaml(raw, f"--set {key.strip()}")
    except ConfigError as e:
        raise ConfigError(str(e).replace(f"--set {key.strip()}:1:", f"--set {key.strip()}:", 1)) from None
    return key.strip(), value


def _apply(raw: dict, key: str, value) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


MAX_YAML_VALUES = 100_000       # values a YAML file may expand to, aliases followed


def _expanded_size(node, memo: dict) -> int:
    """How many values ``node`` stands for once every alias is followed, counted without
    expanding anything (an alias is the same node object, so its size is computed once)."""
    key = id(node)
    if key not in memo:
        memo[key] = MAX_YAML_VALUES + 1               # a node inside itself (a recursive alias)
        if isinstance(node, _yaml().MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, _yaml().SequenceNode):
            size = 1 + sum(_expanded_size(v, memo) for v in node.value)
        else:
            size = 1
        memo[key] = min(size, MAX_YAML_VALUES + 1)
    return memo[key]


def _duplicate_keys(node, source: str, path: str = "", seen=None) -> list:
    """'file:line: key ... appears twice' for every mapping key written twice, with both lines."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return []
    seen.add(id(node))
    out = []
    if isinstance(node, _yaml().MappingNode):
        first = {}
        for k, v in node.value:
            if isinstance(k, _yaml().ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                name = f"{path}{k.value}"
                if k.value in first:
                    out.append(f"{source}:{k.start_mark.line + 1}: {name}: written twice (lines "
                               f"{first[k.value]} and {k.start_mark.line + 1}); keep one")
                else:
                    first[k.value] = k.start_mark.line + 1
                out += _duplicate_keys(v, source, f"{name}.", seen)
    elif isinstance(node, _yaml().SequenceNode):
        for v in node.value:
            out += _duplicate_keys(v, source, path, seen)
    return out


def read_yaml(text: str, source: str):
    """(data, composed node) of a YAML document, refusing what safe_load would accept but a config
    must not be: a key written twice (the second would silently win), aliases that expand to more
    than MAX_YAML_VALUES values, numbers too long to read."""
    yaml = _yaml()

    def invalid(e):
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        return ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or getattr(e, 'reason', None) or e}")

    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as e:
        raise invalid(e) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            raise invalid(e) from None
        except RecursionError:
            raise ConfigError(f"{source}: the YAML is nested too deeply") from None
        if node is None:
            return None, None
        try:
            if _expanded_size(node, {}) > MAX_YAML_VALUES:
                raise ConfigError(f"{source}: the YAML expands to more than {MAX_YAML_VALUES:,} values through "
                                  f"its aliases (*name); a config is never that large")
            dups = _duplicate_keys(node, source)
        except RecursionError:
            raise ConfigError(f"{source}: the YAML is nested too deeply") from None
        if dups:
            raise ConfigError("\n".join(dups))
        try:
            return loader.construct_document(node), node
        except yaml.YAMLError as e:
            raise invalid(e) from None
        except ValueError as e:                     # an integer of thousands of digits
            what = "a number with more than 4300 digits" if "digits" in str(e) else str(e)
            raise ConfigError(f"{source}: a value cannot be read: {what}") from None
        except RecursionError:
            raise ConfigError(f"{source}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def load_text(text: str, source: str = "<config>", overrides=()) -> Config:
    """Parse, override and validate; raise ConfigError listing every problem."""
    raw, node = read_yaml(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a mapping of sections (data, features, model, "
                          f"train, output); got {_fmt(raw)}")
    lines = _lines(node)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _apply(raw, key, value)
        lines[key] = None
    feats = raw.get("features")
    if isinstance(feats, dict) and feats.get("kind") == "embed_concat" and "ngrams" not in feats:
        feats["ngrams"] = 1                       # the default for the bag kinds is 2
    if isinstance(feats, dict) and feats.get("kind") in ("embed_mean", "embed_concat") and "char_ngrams" not in feats:
        feats["char_ngrams"] = []                 # the default [2, 5] is bow's
    problems = _Problems(source, lines)
    override_keys = {(parse_override(o)[0] if isinstance(o, str) else o[0]) for o in overrides}
    cfg = _build(raw, problems)
    if not problems.items:
        _cross_checks(cfg, problems)
    if problems.items:
        def from_override(key: str) -> bool:
            return any(o == key or o.startswith(key + ".") for o in override_keys)
        items = [m.replace(f"{source}: ", "--set ", 1) if from_override(m.split(": ")[1]) else m
                 for m in problems.items]
        raise ConfigError("\n".join(items))
    return cfg


MAX_CONFIG_BYTES = 1 << 20


def read_small_text(path, what: str = "config") -> str:
    """The text of a config or search-space file: a regular UTF-8 file of at most 1 MiB (a
    pipe or a device would hang the read, and no config is larger)."""
    import os
    import stat
    path = Path(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file (a folder, pipe or device); expected a YAML {what} file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {st.st_size:,} bytes; a {what} file is at most {MAX_CONFIG_BYTES:,}")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the {what}: {e}") from None


def load(path, overrides=()) -> Config:
    """The config of a file; a relative data.root is taken relative to the file's folder."""
    cfg = load_text(read_small_text(path), str(path), overrides)
    if cfg.data.root and not Path(cfg.data.root).expanduser().is_absolute():
        root = (Path(path).parent / cfg.data.root).absolute()
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))
    return cfg


def to_dict(cfg: Config) -> dict:
    """Plain data (lists for tuples), ready for YAML or JSON."""
    def plain(v):
        if isinstance(v, tuple):
            return list(v)
        return v
    return {name: (plain(getattr(cfg, name)) if not dataclasses.is_dataclass(getattr(cfg, name))
                   else {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, name)).items()})
            for name in SECTIONS}


def dump(cfg: Config) -> str:
    return _yaml().safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(raw: dict, source: str = "<checkpoint>") -> Config:
    """A Config from plain data (a checkpoint's, a trial's), validated like a file."""
    problems = _Problems(source, {})
    cfg = _build(raw, problems)
    if problems.items:
        raise ConfigError("\n".join(problems.items))
    return cfg


# --- what each key does: `nlclf config init` writes it beside the key -----------------------

HELP = {
    "seed": "seeds the one random generator: same config and seed, byte-identical model",
    "data": "where the examples are and how to read them",
    "data.root": "folder the paths below are relative to ('': --data-root, $NLCLF_DATA_ROOT, data/)",
    "data.train": "training file (required): label<TAB>text lines, CSV, JSON Lines, fastText or a folder",
    "data.dev": "dev file for early stopping and model selection ('': held out of train)",
    "data.test": "test file, evaluated once with the best weights ('': none)",
    "data.dev_fraction": "share of train held out as dev when there is no dev file",
    "data.format": "auto (from the name), tsv, csv, jsonl, fasttext or folder",
    "data.text_field": "CSV column / JSON Lines key of the text",
    "data.label_field": "CSV column / JSON Lines key of the label",
    "data.encoding": "text encoding of the files (utf-8, latin-1, cp1252, ...)",
    "data.encoding_errors": "strict: an undecodable byte is an error; replace: U+FFFD",
    "data.on_bad_line": "error: stop; skip: drop with a count; warn: also show each",
    "data.max_text_bytes": "longest line or document read; a longer one is a bad line",
    "data.labels": "the order of the labels in every table and picture ([]: sorted)",
    "data.multi_label": "several labels a text (fastText, JSON lists, data.label_sep): auto: when a training text has two; true; false: one label a text",
    "data.label_sep": "TSV/CSV: separator of several labels in the label field ('': one label)",
    "features": "how a text becomes the network's input",
    "features.kind": "bow (bag of words), embed_mean (mean of embeddings), embed_concat (first n embeddings)",
    "features.tokenizer": "regex: Unicode words and punctuation; whitespace: str.split (pre-tokenized text)",
    "features.lowercase": "lowercase before tokenizing",
    "features.strip_accents": "cafe for café",
    "features.strip_punct": "drop tokens made only of punctuation or symbols",
    "features.max_chars": "cut each text to this many characters first (0: no limit)",
    "features.max_token_chars": "cut longer tokens to this many characters",
    "features.min_count": "keep tokens and n-grams seen at least this often in train",
    "features.max_size": "keep only the most frequent (0: no limit; auto: 0 below 1,000,000 training tokens, else 200,000)",
    "features.ngrams": "word n-grams up to this length (1: words only)",
    "features.hash_buckets": "n-grams outside the vocabulary go to this many hashed buckets (0: dropped)",
    "features.char_ngrams": "[min, max]: character n-grams of words (fastText's subwords); []: none",
    "features.char_below": "character n-grams only of words seen fewer times than this in training, and of unknown words (0: of every word; auto: 0 below 1,000,000 training tokens, else 50)",
    "features.char_weight": "value of a character n-gram relative to a word's",
    "features.weighting": "count, binary, log, tfidf or nb (naive-Bayes log-count ratio)",
    "features.nb_alpha": "smoothing of the class counts behind nb weights",
    "features.normalize": "L2-normalise each row (bow)",
    "features.max_tokens": "n, the tokens kept (embed_concat)",
    "features.truncate": "keep the head or the tail of a longer text (embed_concat)",
    "features.embed_dim": "embedding width (embedding kinds)",
    "features.pretrained": "word2vec/GloVe text file for the embedding table ('': random)",
    "features.freeze": "keep the embedding table fixed (needs pretrained)",
    "features.embed_lr": "learning-rate multiplier for the embedding table",
    "features.embed_l2": "L2 on the embedding rows in the batch",
    "features.word_dropout": "during training, drop each bag entry or word with this probability",
    "features.workers": "processes featurizing large inputs (0: one per core; 1: none)",
    "model": "the network: hidden layers k = H f + b, h = g(k), output softmax(U h + b)",
    "model.hidden": "widths of the hidden layers ([]: logistic regression; auto: one layer, 256 wide, or 128 or 64 for a bag of more than 50,781 or 101,562 features)",
    "model.activation": "g: relu, leaky_relu, gelu, tanh, sigmoid, identity",
    "model.leaky_slope": "slope of leaky_relu below zero",
    "model.hidden_bias": "bias on the hidden layers",
    "model.output_bias": "bias on the output layer",
    "model.dropout": "dropout on the hidden layers",
    "train": "minibatch training with early stopping on dev",
    "train.optimizer": "sgd, momentum or adam; auto: sgd for kind bow with at least 1,000,000 training examples, else adam",
    "train.lr": "learning rate; auto: the optimizer's (adam 0.0003, sgd 2.0, momentum 0.2)",
    "train.momentum": "momentum coefficient (momentum)",
    "train.beta1": "Adam's first-moment decay",
    "train.beta2": "Adam's second-moment decay",
    "train.eps": "Adam's epsilon",
    "train.schedule": "learning rate over the run: constant, linear (to zero) or cosine; auto: constant for adam, linear for sgd and momentum",
    "train.warmup": "steps of linear warm-up",
    "train.batch_size": "examples a minibatch (gradients are batch means)",
    "train.epochs": "most epochs (patience usually stops sooner)",
    "train.min_delta": "a better dev score resets the patience only when it is higher by more than this (the best epoch is kept either way)",
    "train.epoch_size": "examples an epoch: a larger set's pass is cut into equal epochs of at most this many, each ended by a dev evaluation (0: auto, 200,000)",
    "train.weight_decay": "L2 on the weights (never the biases)",
    "train.label_smoothing": "target (1 - e) onehot + e / C (0: the plain cross-entropy); several labels a text: (1 - e) y + e / 2",
    "train.clip_norm": "clip the global gradient norm (0: off)",
    "train.patience": "stop after this many epochs without a better dev score (0: never; auto: 3 with a constant schedule, never with linear or cosine, which end the run themselves)",
    "train.metric": "dev metric that picks the best epoch: accuracy, macro_f1 or micro_f1 (several labels a text: accuracy means micro_f1)",
    "train.pos_weight": "several labels a text: weight of each label's positives in the loss (1: none; auto: sqrt(negatives / positives) per label, in [1, 10])",
    "train.thresholds": "several labels a text: global (one threshold) or per_label, chosen on dev to maximise micro-F1",
    "train.dtype": "float32, or float64 for checks",
    "train.calibrate": "fit a softmax temperature on dev after training",
    "train.ensemble": "train K networks from K seeds, saved as one averaging their logits",
    "train.checkpoint_seconds": "save the state for --resume at an epoch's end at most this often (0: every epoch)",
    "output": "where the model and reports go",
    "output.dir": "output folder (--out overrides)",
    "output.compress": "'' or a size (8MB): save the model compressed to at most this, as nlclf compress does",
    "output.compress_agreement": "keep the full model instead when the compressed one agrees on less of dev",
}


def starter(kind: str = "bow", train: str = "train.tsv", dev: str = "dev.tsv", test: str = "") -> str:
    """A commented config holding every key with its default for ``kind``, and one line on
    what it does: what `nlclf config init` prints."""
    cfg = load_text(_yaml().safe_dump({"data": {"train": train, "dev": dev, "test": test},
                                    "features": {"kind": kind}}), "<starter>")
    out = [f"# nlclf config: every key with its default for features.kind {kind}; delete what you keep",
           "# as it is. Check it with `nlclf config check FILE`, train with `nlclf train FILE`.", ""]
    for section, value in to_dict(cfg).items():
        if not isinstance(value, dict):
            out.append(f"{section}: {_fmt(value)}".ljust(40) + f"  # {HELP[section]}")
            continue
        out += ["", f"{section}:".ljust(40) + f"  # {HELP[section]}"]
        for key, v in value.items():
            out.append(f"  {key}: {_fmt(v)}".ljust(40) + f"  # {HELP[f'{section}.{key}']}")
    return "\n".join(out) + "\n"


def assemble(path=None, overrides=(), train: str | None = None, dev: str | None = None,
             test: str | None = None) -> Config:
    """The config of a command: the file at ``path`` (or the defaults when there is none), then
    ``--set`` overrides, then data files given on the command line (``--train`` etc.), which are
    taken relative to the working directory. Without a file the output folder defaults to
    runs/<name of the training file>."""
    files = [(f"data.{k}", str(Path(v).expanduser().absolute())) for k, v in
             (("train", train), ("dev", dev), ("test", test)) if v]
    if path is None:
        if train is None:
            raise ConfigError("give a CONFIG file, or the data with --train FILE [--dev FILE] [--test FILE]")
        out = [("output.dir", f"runs/{Path(train).stem or 'default'}"), ("data.root", str(Path.cwd()))]
        return load_text("", "<command line>", out + list(overrides) + files)
    return load(path, list(overrides) + files)

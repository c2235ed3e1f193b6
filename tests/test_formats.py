"""Input formats: TSV, CSV, JSON Lines, fastText and folder-per-label; inference, encodings,
bad-line policies and the data.* config rules."""

import io
import json
import re
import sys

import pytest

from nlclf import config, data
from nlclf.config import DataConfig
from nlclf.errors import ConfigError, DataError


def opts(**kw):
    return DataConfig(**kw)


def read(path, log=None, **kw):
    return data.read_labelled(path, opts(**kw), log)


def collect():
    msgs = []
    return msgs, msgs.append


# --- each format -----------------------------------------------------------------------------

def test_tsv_default_is_unchanged(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text("pos\tgood film\n\n   \nneg\tbad\tfilm\r\n", encoding="utf-8")
    assert data.read_labelled(f) == (["pos", "neg"], ["good film", "bad\tfilm"])
    assert list(data.iter_labelled(f, opts(format="tsv"))) == [(1, "pos", "good film"), (4, "neg", "bad\tfilm")]
    assert data.read_labels(data.iter_labelled(f)) == ["pos", "neg"]


def test_csv_quoted_commas_quotes_and_newlines(tmp_path):
    f = tmp_path / "reviews.csv"
    f.write_text('id,sentence,sentiment\n'
                 '1,"good, really good",pos\n'
                 '2,"he said ""meh""",neg\n'
                 '3,"two\nlines",pos\n'
                 '4,plain,neg\n', encoding="utf-8")
    rows = list(data.iter_labelled(f, opts(format="csv", text_field="sentence", label_field="sentiment")))
    assert rows == [(2, "pos", "good, really good"), (3, "neg", 'he said "meh"'),
                    (4, "pos", "two\nlines"), (6, "neg", "plain")]


def test_csv_bad_record_is_reported_by_its_first_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('text,label\n"a\nb",pos\nonly one field\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:4: 1 fields, but the header has 2")):
        read(f, format="csv")


def test_csv_header_must_name_the_columns(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("review,stars\ngood,5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv:1: the CSV header has no column 'text' \(data.text_field\); "
                                        r"found: review, stars"):
        read(f, format="csv")


def test_csv_unclosed_quote_and_bom(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes(b'\xef\xbb\xbftext,label\nfine,pos\n"never closed,neg\nmore,pos\n')
    msgs, log = collect()
    assert read(f, log, format="csv", on_bad_line="skip") == (["pos"], ["fine"])
    assert msgs == [f"{f}: skipped 1 bad line (first: line 3: not valid CSV: unexpected end of data)"]


def test_jsonl_custom_fields(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"body": "great, \"really\"", "y": "pos", "id": 1}) + "\n\n"
                 + json.dumps({"y": "neg", "body": "awful"}) + "\n", encoding="utf-8")
    got = list(data.iter_labelled(f, opts(format="jsonl", text_field="body", label_field="y")))
    assert got == [(1, "pos", 'great, "really"'), (3, "neg", "awful")]


@pytest.mark.parametrize("line, what", [
    ('{"text": "a", "label": ', "not valid JSON"),
    ('["a", "pos"]', "expected a JSON object, found a list"),
    ('{"text": "a"}', "no field 'label' (data.label_field)"),
    ('{"text": "a", "label": 1}', "field 'label' is a number (1), expected a string"),
    ('{"text": null, "label": "pos"}', "field 'text' is null, expected a string"),
    ('{"text": " ", "label": "pos"}', "empty text"),
])
def test_jsonl_bad_lines(tmp_path, line, what):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "ok", "label": "pos"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: {what}")):
        read(f, format="jsonl")


def test_fasttext_single_label(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text("__label__pos  a fine film\n\n__label__neg\tdull __label__x stays text\n", encoding="utf-8")
    assert list(data.iter_labelled(f, opts(format="fasttext"))) == [
        (1, "pos", "a fine film"), (3, "neg", "dull __label__x stays text")]


def test_fasttext_several_labels_are_an_error_unless_multi_label(tmp_path):
    f = tmp_path / "d.ft"
    f.write_text("__label__pos good\n__label__pos __label__funny witty\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: 2 labels (pos, funny)") + r".*data.multi_label: true"):
        read(f, format="fasttext")
    msgs, log = collect()
    assert read(f, log, format="fasttext", multi_label=True) == (["pos", "pos"], ["good", "witty"])
    assert len(msgs) == 1 and "1 line with several labels: kept the first" in msgs[0]


@pytest.mark.parametrize("line, what", [("just text", "no label"), ("__label__ text", "empty label"),
                                        ("__label__pos", "empty text")])
def test_fasttext_bad_lines(tmp_path, line, what):
    f = tmp_path / "d.ft"
    f.write_text(f"__label__pos ok\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: {what}")):
        read(f, format="fasttext")


def make_folder(root):
    for label, docs in {"pos": {"b.txt": "nice\n\n", "a.txt": "great\nfilm  "},
                        "neg": {"c.txt": "bad"}, ".hidden": {"x.txt": "no"}}.items():
        (root / label).mkdir(parents=True)
        for name, text in docs.items():
            (root / label / name).write_text(text, encoding="utf-8")
    (root / "pos" / ".swp.txt").write_text("no", encoding="utf-8")
    (root / "pos" / "notes.md").write_text("no", encoding="utf-8")
    (root / "README.txt").write_text("top level", encoding="utf-8")


def test_folder_per_label(tmp_path):
    make_folder(tmp_path / "corpus")
    msgs, log = collect()
    got = data.read_labelled(tmp_path / "corpus", opts(format="folder"), log)
    assert got == (["neg", "pos", "pos"], ["bad", "great\nfilm", "nice"])
    assert msgs == [f"{tmp_path / 'corpus'}: ignored 1 .txt file outside the label folders"]
    assert list(data.iter_texts([tmp_path / "corpus"], opts(format="folder"))) == [
        "top level", "bad", "great\nfilm", "nice"]


def test_folder_empty_document_names_the_file(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "neg" / "d.txt").write_text(" \n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'neg' / 'd.txt'}:1: empty text")):
        read(tmp_path, format="folder")


# --- inference ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, fmt, guessed", [
    ("d.csv", "text,label\nhi,a\n", "csv", False), ("d.JSONL", '{"text":"hi","label":"a"}\n', "jsonl", False),
    ("d.ndjson", '{"text":"hi","label":"a"}\n', "jsonl", False), ("d.ft", "__label__a hi\n", "fasttext", False),
    ("d.fasttext", "__label__a hi\n", "fasttext", False), ("d.txt", "\n  __label__a hi\n", "fasttext", True),
    ("d.tsv", "a\thi\n", "tsv", False), ("d", "a\thi\n", "tsv", True), ("d.txt", "a\thi\n", "tsv", True),
    ("folder", None, "folder", False),
])
def test_format_inferred_from_the_path_with_a_note_when_guessed(tmp_path, name, content, fmt, guessed):
    """A name that says its format is read silently; a guess (no telling suffix) is noted."""
    p = tmp_path / name
    if content is None:
        (p / "a").mkdir(parents=True)
        (p / "a" / "1.txt").write_text("hi", encoding="utf-8")
    else:
        p.write_text(content, encoding="utf-8")
    msgs, log = collect()
    assert data.infer_format(p, log) == fmt
    if guessed:
        assert len(msgs) == 1 and msgs[0].startswith(f"{p}: read as {fmt} (") and "data.format" in msgs[0]
    else:
        assert msgs == []
    msgs.clear()
    assert [(label, text) for _, label, text in data.iter_labelled(p, opts(), log)] == [("a", "hi")]
    assert (f"read as {fmt}" in " ".join(msgs)) == guessed


def test_readers_match_the_config_choices():
    pred, what = config.RULES["data.format"]
    assert all(pred(f) for f in data.FORMATS + ("auto",)) and what.count(",") == len(data.FORMATS)


# --- encodings -----------------------------------------------------------------------------------

def test_latin1_with_its_encoding(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes("pos\tcafé crème\n".encode("latin-1"))
    assert read(f, encoding="latin-1") == (["pos"], ["café crème"])


def test_strict_names_file_line_and_byte_offset(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes(b"pos\tgood\nneg\tcaf\xe9\n")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: not valid UTF-8 at byte 16 of the file (byte 0xe9)")):
        read(f)
    g = tmp_path / "d.jsonl"
    g.write_bytes(b'{"text": "a", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n')
    with pytest.raises(DataError, match=re.escape(f"{g}:2: not valid UTF-8 at byte 41 of the file")):
        read(g, format="jsonl")


def test_replace_reads_with_the_replacement_character(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes(b"pos\tgood\nneg\tcaf\xe9\n")
    assert read(f, encoding_errors="replace") == (["pos", "neg"], ["good", "caf\ufffd"])
    assert list(data.iter_texts([f], opts(format="tsv", encoding_errors="replace"))) == [
        "pos\tgood", "neg\tcaf\ufffd"]


def test_folder_undecodable_byte_names_document_line_and_offset(tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "a.txt").write_bytes(b"line one\nbad \xff here")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'pos' / 'a.txt'}:2: not valid UTF-8 at byte 13")):
        read(tmp_path, format="folder")


# --- bad lines -----------------------------------------------------------------------------------

BAD_TSV = "pos\tgood\nno tab here\nneg\tbad\n\tno label\nneg\t  \n"


def test_on_bad_line_error_stops_at_the_first(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text(BAD_TSV, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: no tab")):
        read(f, on_bad_line="error")


def test_on_bad_line_skip_logs_one_count(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text(BAD_TSV, encoding="utf-8")
    msgs, log = collect()
    assert read(f, log, on_bad_line="skip", format="tsv") == (["pos", "neg"], ["good", "bad"])
    assert msgs == [f"{f}: skipped 3 bad lines (first: line 2: no tab: expected 'label<TAB>text')"]


def test_on_bad_line_warn_logs_each_and_the_count(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text(BAD_TSV, encoding="utf-8")
    msgs, log = collect()
    assert read(f, log, on_bad_line="warn", format="tsv") == (["pos", "neg"], ["good", "bad"])
    assert [m.split(": ")[0] for m in msgs] == [f"{f}:2", f"{f}:4", f"{f}:5", str(f)]
    assert "empty label" in msgs[1] and "empty text" in msgs[2] and "skipped 3 bad lines" in msgs[3]


def test_warn_stops_listing_after_the_limit(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text("pos\tok\n" + "junk\n" * (data.WARN_LIMIT + 5), encoding="utf-8")
    msgs, log = collect()
    read(f, log, on_bad_line="warn", format="tsv")
    assert len(msgs) == data.WARN_LIMIT + 2 and msgs[-1].endswith(f"skipped {data.WARN_LIMIT + 5} bad lines "
                                                                  f"(first: line 2: no tab: expected 'label<TAB>text')")


@pytest.mark.parametrize("text, what", [("pos\t \n", "1: empty text"), ("  \tgood\n", "1: empty label")])
def test_empty_text_and_label_name_file_and_line(tmp_path, text, what):
    f = tmp_path / "d.tsv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:{what}")):
        read(f)


def test_label_not_seen_in_training(tmp_path):
    f = tmp_path / "eval.tsv"
    f.write_text("pos\tgood\nmeh\tso so\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: label 'meh' not seen in training")):
        data.read_labelled(f, known={"pos", "neg"})
    assert data.read_labelled(f, opts(on_bad_line="skip"), known={"pos"}) == (["pos"], ["good"])


def test_no_usable_examples_and_single_class(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("junk\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.tsv: no usable examples \(expected lines of 'label<TAB>text'\)"):
        read(f, on_bad_line="skip")
    with pytest.raises(DataError, match="no usable examples"):
        data.check_trainable([], f)
    with pytest.raises(DataError, match=r"d.tsv: only one class \(pos\)"):
        data.check_trainable(["pos", "pos"], f)
    data.check_trainable(["pos", "neg"], f)


# --- prediction input ----------------------------------------------------------------------------

def test_iter_texts_per_format(tmp_path, monkeypatch):
    tsv, csv_, jsonl, ft = (tmp_path / n for n in ("p.tsv", "p.csv", "p.jsonl", "p.ft"))
    tsv.write_text("a text\n\nanother\n", encoding="utf-8")
    csv_.write_text('text\n"one, two"\nthree\n', encoding="utf-8")
    jsonl.write_text('{"text": "x"}\n{"text": "y", "label": "pos"}\n', encoding="utf-8")
    ft.write_text("__label__a __label__b multi\nplain\n", encoding="utf-8")
    auto = opts()
    assert list(data.iter_texts([tsv, csv_, jsonl, ft], auto)) == [
        "a text", "", "another", "one, two", "three", "x", "y", "multi", "plain"]
    assert list(data.iter_texts([str(tsv)])) == ["a text", "", "another"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"text": "from stdin"}\n')))
    assert list(data.iter_texts(["-"], opts(format="jsonl"))) == ["from stdin"]


def test_predict_input_bad_record(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"text": "x"}\n{"body": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: no field 'text' (data.text_field)")):
        list(data.iter_texts([f], opts()))


# --- config rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, needle", [
    ("format", "xml", "one of auto, csv, fasttext, folder, jsonl, tsv"),
    ("encoding", "no-such-codec", "a text encoding"),
    ("encoding", "utf-16", "not utf-16"),
    ("encoding", "rot13", "a text encoding"),
    ("encoding_errors", "ignore", "one of replace, strict"),
    ("on_bad_line", "skipp", "did you mean 'skip'"),
    ("text_field", "''", "a non-empty"),
    ("label_field", "text", "must differ from data.text_field"),
    ("multi_label", "'yes'", "true, false or auto"),
])
def test_config_rules_for_data_keys(key, value, needle):
    with pytest.raises(ConfigError) as e:
        config.load_text(f"data:\n  train: t.tsv\n  {key}: {value}\n", "x.yaml")
    assert f"x.yaml:3: data.{key}: " in str(e.value) and needle in str(e.value)


def test_config_accepts_the_data_keys():
    cfg = config.load_text("data:\n  train: t.csv\n  format: csv\n  text_field: body\n  label_field: y\n"
                           "  encoding: latin-1\n  encoding_errors: replace\n  on_bad_line: warn\n"
                           "  multi_label: true\n", "x.yaml")
    assert cfg.data == DataConfig(train="t.csv", format="csv", text_field="body", label_field="y",
                                  encoding="latin-1", encoding_errors="replace", on_bad_line="warn",
                                  multi_label=True)
    assert config.load_text("data: {train: t.tsv}").data.format == "auto"


# --- several labels a text ---------------------------------------------------------------------

def multi(path, **kw):
    return data.read_multilabelled(path, opts(**kw))


def test_several_labels_from_each_format(tmp_path):
    ft = tmp_path / "d.ft"
    ft.write_text("__label__a __label__b __label__a two\n__label__c one\n", encoding="utf-8")
    assert multi(ft, format="fasttext") == ([("a", "b"), ("c",)], ["two", "one"])
    js = tmp_path / "d.jsonl"
    js.write_text(json.dumps({"text": "two", "label": ["a", " b", ""]}) + "\n"
                  + json.dumps({"text": "one", "label": "c"}) + "\n", encoding="utf-8")
    assert multi(js, format="jsonl") == ([("a", "b"), ("c",)], ["two", "one"])
    tsv = tmp_path / "d.tsv"
    tsv.write_text("a, b\ttwo\nc\tone\n", encoding="utf-8")
    assert multi(tsv, format="tsv", label_sep=",") == ([("a", "b"), ("c",)], ["two", "one"])
    assert multi(tsv, format="tsv") == ([("a, b",), ("c",)], ["two", "one"])
    csvf = tmp_path / "d.csv"
    csvf.write_text('text,label\ntwo,"a,b"\none,c\n', encoding="utf-8")
    assert multi(csvf, format="csv", label_sep=",") == ([("a", "b"), ("c",)], ["two", "one"])


def test_several_labels_bad_lines(tmp_path):
    js = tmp_path / "d.jsonl"
    js.write_text(json.dumps({"text": "t", "label": ["a", 3]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{js}:1: field 'label' holds a number (3)")):
        multi(js, format="jsonl")
    ft = tmp_path / "d.ft"
    ft.write_text("__label__a __label__b text\n__label__a __label__z text\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{ft}:2: label 'z' not seen in training")):
        data.read_multilabelled(ft, opts(format="fasttext"), known={"a", "b"})
    msgs, log = collect()
    got = data.read_multilabelled(ft, opts(format="fasttext", on_bad_line="skip"), log, known={"a", "b"})
    assert got == ([("a", "b")], ["text"]) and len(msgs) == 1


def test_label_matrix_and_detection():
    sets = [("b", "a"), ("c",), ()]
    Y = data.label_matrix(sets, ["a", "b", "c"])
    assert Y.dtype == "uint8" and Y.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert data.several_labels(sets) == 1 and data.several_labels([("a",), ("b",)]) == 0


def test_label_sep_rule():
    with pytest.raises(ConfigError, match="data.label_sep"):
        config.load_text("data:\n  train: t.tsv\n  label_sep: ' , '\n", "x.yaml")

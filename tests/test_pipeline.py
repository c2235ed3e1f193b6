"""In-process pipeline: every feature kind trains, saves, loads and predicts identically."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from nlclf import checkpoint, config, pipeline, predict
from nlclf.errors import DataError

from conftest import cfg_for, write_data


@pytest.mark.parametrize("kind,extra", [("bow", {}), ("bow", {"ngrams": 2, "hash_buckets": 64, "weighting": "tfidf"}),
                                        ("bow", {"ngrams": 2, "weighting": "nb", "nb_alpha": 0.5}),
                                        ("bow", {"char_ngrams": "[2,4]", "hash_buckets": 32}),
                                        ("bow", {"char_ngrams": "[2,4]", "char_weight": 0.1, "normalize": "true"}),
                                        ("embed_mean", {"char_ngrams": "[3,5]", "char_weight": 1.0, "weighting": "nb"}),
                                        ("embed_mean", {"word_dropout": 0.2}), ("embed_concat", {})])
def test_train_save_load_predict_identically(kind, extra, tmp_path):
    cfg = cfg_for(kind, tmp_path, **extra)
    r = pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    assert r["final"]["test"]["accuracy"] >= 0.9
    model, _, meta = checkpoint.load(tmp_path / "run")
    texts = ["apple mango pear", "owl crow", "drill saw", "", "unknown words only", "apple " * 50]
    p1 = model.proba(texts)
    model2, _, _ = checkpoint.load(tmp_path / "run")
    assert np.array_equal(p1, model2.proba(texts))
    assert np.allclose(p1.sum(axis=1), 1.0, atol=1e-5)
    preds = [r["top"][0][0] for batch in predict.run_predict(tmp_path / "run", texts=iter(texts[:3])) for r in batch]
    assert preds == ["fruit", "birds", "tools"]


def test_character_ngrams_are_a_bow_default_only():
    f = {k: config.load_text(f"data: {{train: x}}\nfeatures: {{kind: {k}}}\n").features
         for k in ("bow", "embed_mean", "embed_concat")}
    assert f["bow"].char_ngrams == (2, 5) and f["bow"].char_weight == 0.1 and f["bow"].normalize
    assert f["embed_mean"].char_ngrams == () and f["embed_concat"].char_ngrams == ()
    assert config.load_text("data: {train: x}", "t", ["features.kind=embed_mean",
                                                    "features.char_ngrams=[3,4]"]).features.char_ngrams == (3, 4)


def test_a_pre_release_checkpoint_is_refused_with_a_reason(tmp_path):
    """Format 1 models (which may lack features.char_weight, or hold features.idf) are not
    read with guesses about what they meant: the message says to train again."""
    from nlclf.errors import CheckpointError
    cfg = cfg_for("bow", tmp_path)
    pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    meta_path = tmp_path / "run" / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert meta["format_version"] == 2 and checkpoint.FORMAT_VERSION == 3     # 3: models with several labels a text
    meta["format_version"] = 1
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="pre-release nlclf.*train the model again"):
        checkpoint.load(tmp_path / "run")


def test_pretrained_vectors_fill_known_rows_and_freeze(tmp_path):
    write_data(tmp_path)
    (tmp_path / "vec.txt").write_text("3 8\n" + "apple " + " ".join(["0.5"] * 8) + "\n"
                                      + "owl " + " ".join(["-0.25"] * 8) + "\nnotinvocab " + " ".join(["1"] * 8) + "\n")
    cfg = cfg_for("embed_mean", tmp_path, pretrained="vec.txt", freeze="true")
    logs = []
    pipeline.run_train(cfg, tmp_path, tmp_path / "run", log=logs.append)
    model, _, _ = checkpoint.load(tmp_path / "run")
    E, index = model.params["E"], model.featurizer.vocab.index
    assert np.all(E[index["apple"]] == 0.5) and np.all(E[index["owl"]] == -0.25)     # frozen: unchanged
    assert any("cover 2 of" in m for m in logs)


def test_pretrained_dimension_mismatch_is_a_clear_error(tmp_path):
    write_data(tmp_path)
    (tmp_path / "vec.txt").write_text("apple 0.1 0.2\n")
    cfg = cfg_for("embed_concat", tmp_path, pretrained="vec.txt")
    with pytest.raises(DataError, match=r"vec.txt:1: vectors of width 2, but features.embed_dim is 8"):
        pipeline.run_train(cfg, tmp_path, tmp_path / "run")


def test_divergence_stops_with_epoch_batch_and_hint_and_writes_no_bad_checkpoint(tmp_path):
    from nlclf.errors import TrainingDiverged
    cfg = cfg_for("bow", tmp_path)
    cfg = config.load_text(config.dump(cfg), "t.yaml", ["train.optimizer=sgd", "train.lr=1e30",
                                                         "train.checkpoint_seconds=0"])
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch \d+.*lower train.lr.*clip_norm"):
        pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    for f in (tmp_path / "run").glob("*.npz"):
        with np.load(f, allow_pickle=False) as z:
            assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")


def _plain_npz(path: Path, arrays: dict) -> None:
    """An .npz as numpy.savez writes it: members at whatever offset they fall (unaligned)."""
    import zipfile
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            with zf.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]))


def test_arrays_are_aligned_in_the_file_and_mapped_read_only(tmp_path):
    cfg = cfg_for("bow", tmp_path, ngrams=2, hash_buckets=16)
    pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model.json").read_text(encoding="utf-8"))
    members = checkpoint._member_arrays(tmp_path / "run" / meta["arrays_file"])
    assert {m[0] for m in members} == set(meta["arrays"])
    assert all(offset % checkpoint.ALIGN == 0 for *_, offset, _ in members)
    model, _, _ = checkpoint.load(tmp_path / "run")
    for a in model.params.values():
        assert not a.flags.writeable and not a.flags.owndata          # a view of the mapped file, no copy
    texts = ["apple mango pear", "owl crow", "drill saw", ""]
    expected = model.proba(texts)
    # An unaligned file of the same arrays (as numpy.savez writes) is read too, by copying.
    with np.load(tmp_path / "run" / meta["arrays_file"]) as z:
        arrays = {k: z[k] for k in z.files}
    _plain_npz(tmp_path / "run" / meta["arrays_file"], arrays)
    assert any(offset % 4 for *_, offset, _ in checkpoint._member_arrays(tmp_path / "run" / meta["arrays_file"]))
    old, _, _ = checkpoint.load(tmp_path / "run")
    assert np.array_equal(old.proba(texts), expected)


def test_a_loaded_model_outlives_its_files_being_replaced(tmp_path):
    """The mapping holds the file it was made from: training again into the folder (which
    removes the old arrays file once the new one is complete) leaves a loaded model intact."""
    cfg = cfg_for("bow", tmp_path)
    pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    model, _, meta = checkpoint.load(tmp_path / "run")
    texts = ["apple mango pear", "owl crow", "drill saw"]
    before = model.proba(texts)
    cfg2 = cfg_for("bow", tmp_path, weighting="tfidf", ngrams=2)
    pipeline.run_train(cfg2, tmp_path, tmp_path / "run", overwrite=True)
    assert not (tmp_path / "run" / meta["arrays_file"]).exists()
    assert np.array_equal(model.proba(texts), before)
    assert checkpoint.load(tmp_path / "run")[2]["sha256"] != meta["sha256"]

"""nlclf compress: int8 rows in a low-rank basis, the size bound, the agreement gate, the
compressed checkpoint format, and compressed models read by every command."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from nlclf import checkpoint, compress, config, pipeline
from nlclf.errors import CheckpointError, ConfigError, GateNotMet
from nlclf.nn.layers import QuantizedRows, SparseBatch, low_rank_basis, quantize_rows, sparse_forward
from conftest import BASE_CONFIG, ENV, FILLER, KEYWORDS, PREDICT_LINES, REPO, TIMEOUT, write_tsv

TEXTS = [t for t, _ in PREDICT_LINES if t]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "nlclf", *map(str, args)], cwd=REPO, env=ENV,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained bag-of-words model (words, bigrams, character n-grams, nb weights; 855
    features, 64 hidden units: 244 kB), and mixed.txt: texts of words of every topic, on which
    a cut model disagrees with it."""
    root = tmp_path_factory.mktemp("compress")
    for split, n, seed in (("train", 40, 1), ("dev", 15, 2), ("test", 15, 3)):
        write_tsv(root / f"{split}.tsv", n, seed)
    rng = random.Random(5)
    words = sum(KEYWORDS.values(), []) + FILLER
    (root / "mixed.txt").write_text("".join(" ".join(rng.sample(words, 4)) + "\n" for _ in range(200)))
    cfg = config.from_dict(dict(json.loads(json.dumps(BASE_CONFIG)), model={"hidden": [64]}), "test")
    pipeline.run_train(cfg, root, root / "model")
    model, cfg, meta = checkpoint.load(root / "model")
    return root, model, cfg, meta


def files_size(folder) -> int:
    return sum(p.stat().st_size for p in checkpoint.model_files(folder))


# --- the math -------------------------------------------------------------------------------

def test_int8_rows_are_the_reference_rounding_exactly():
    rng = np.random.default_rng(0)
    W = (rng.normal(size=(50, 12)) * rng.uniform(0.01, 3, size=(50, 1))).astype(np.float32)
    W[7] = 0.0
    q, s = quantize_rows(W)
    ref_s = (np.abs(W).max(axis=1) / np.float32(127)).astype(np.float32)
    assert s.dtype == np.float32 and np.array_equal(s, ref_s)
    safe = np.where(ref_s > 0, ref_s, np.float32(1))
    ref_q = np.clip(np.rint(W / safe[:, None]), -127, 127).astype(np.int8)
    assert q.dtype == np.int8 and np.array_equal(q, ref_q)
    assert np.abs(q).max() == 127 and not q[7].any() and s[7] == 0
    err = np.abs(q * s[:, None] - W)
    assert (err <= s[:, None] / 2 * (1 + 1e-6) + 1e-12).all()            # rounding: half a step at most


def test_low_rank_basis_is_the_top_singular_subspace():
    rng = np.random.default_rng(1)
    W = (rng.normal(size=(300, 3)) @ rng.normal(size=(3, 10))).astype(np.float32)   # rank 3
    B = low_rank_basis(W, 3)
    assert B.shape == (3, 10) and np.allclose(B @ B.T, np.eye(3), atol=1e-5)
    assert np.allclose((W @ B.T) @ B, W, atol=1e-4)                       # exact at the true rank


@pytest.mark.parametrize("with_basis", [False, True])
def test_quantized_rows_forward_is_the_dense_dequantized_layer(with_basis):
    rng = np.random.default_rng(2)
    V, R, H = 40, 5 if with_basis else 7, 7
    keep = rng.random(V) < 0.6
    keep[1] = True
    q = rng.integers(-127, 128, size=(int(keep.sum()), R)).astype(np.int8)
    s = rng.uniform(0.001, 0.1, size=len(q)).astype(np.float32)
    basis = rng.normal(size=(R, H)).astype(np.float32) if with_basis else None
    Wq = QuantizedRows(q, s, keep, V, basis)
    dense = np.zeros((V, R), np.float64)
    dense[keep] = q.astype(np.float64) * s[:, None]
    if with_basis:
        dense = dense @ basis
    X = sp.random(9, V, density=0.3, random_state=3, format="csr", dtype=np.float32)
    b = rng.normal(size=H).astype(np.float32)
    y, _ = sparse_forward(Wq, b, SparseBatch.of(X, prepare=False))
    assert y.dtype == np.float32 and Wq.shape == (V, H)
    assert np.allclose(y, X.toarray() @ dense + b, atol=1e-4)
    ids = np.array([[0, 1], [5, 39]])
    assert np.allclose(Wq[ids], dense[ids], atol=1e-5)


# --- compressing a model --------------------------------------------------------------------

def test_round_trip_keeps_the_compressed_arrays_and_predictions(run, tmp_path):
    root, model, cfg, _ = run
    small, size = compress.fit_size(model, cfg, files_size(root / "model") // 4)
    files = checkpoint.save(tmp_path, small, cfg)
    back, _, meta = checkpoint.load(tmp_path)
    assert meta["format_version"] == checkpoint.COMPRESSED_FORMAT and meta["compressed"]["bits"] == 8
    assert files_size(tmp_path) == size
    a, b = small.params["H1"], back.params["H1"]
    assert isinstance(b, QuantizedRows) and np.array_equal(a.q, b.q) and np.array_equal(a.scale, b.scale)
    assert np.array_equal(a.keep, b.keep) and (a.basis is None) == (b.basis is None)
    assert not b.q.flags.owndata                                          # mapped, not copied
    assert np.array_equal(small.proba(TEXTS), back.proba(TEXTS))
    stored = meta["arrays"]
    assert stored["param.U"]["dtype"] == "<f2" and stored["features.weights"]["dtype"] == "<f2"
    assert stored["param.bU"]["dtype"] == "<f4" and stored["quant.H1.q"]["dtype"] == "|i1"
    assert back.params["U"].dtype == np.float32                          # float16 stored, float32 computed
    assert files[0].startswith("model.") and files[1] == "model.json"


def test_the_size_bound_is_honoured_and_rows_go_when_the_rank_is_spent(run):
    root, model, cfg, _ = run
    seen = []
    for limit in (500_000, 60_000, 40_000, 27_000):
        small, size = compress.fit_size(model, cfg, limit)
        assert size <= limit and size == checkpoint.encoded_size(small, cfg)
        c = small.compression
        seen.append((c["rank"] or c["width"], c["rows_kept"]))
    assert seen[0] == (64, 855)                                           # room for every row at full width
    assert [r for r, _ in seen] == sorted((r for r, _ in seen), reverse=True)
    assert seen[-1][0] == compress.MIN_RANK and seen[-1][1] < seen[0][1]  # at the smallest rank, rows dropped
    with pytest.raises(ConfigError, match="cannot hold"):
        compress.fit_size(model, cfg, 1000)


def test_importance_keeps_unk_and_orders_by_norm_scale_and_count(run):
    _, model, _, _ = run
    score = compress.importance(model)
    W = model.params["H1"]
    fz = model.featurizer
    j = 5
    want = np.linalg.norm(W[j].astype(np.float64)) * abs(float(fz.column_scale()[j])) * max(int(fz.vocab.counts[j]), 1)
    assert score[1] == np.inf and np.isclose(score[j], want, rtol=1e-6)
    small = compress.build(model, 3)
    assert small.params["H1"].keep[1] and small.compression["rows_kept"] == 3


def test_agreement_is_measured_and_a_low_one_is_refused(run, tmp_path):
    root, model, cfg, _ = run
    test = root / "test.tsv"
    figures = pipeline.run_compress(root / "model", tmp_path / "ok", "60kB", check=test, min_agreement=0.0)
    small, _, _ = checkpoint.load(tmp_path / "ok")
    from nlclf import data
    labels, texts = data.read_labelled(str(test), cfg.data)
    a, b = model.proba(texts).argmax(1), small.proba(texts).argmax(1)
    assert figures["check"]["agreement"] == pytest.approx(float((a == b).mean()))
    y = np.array([model.labels.index(l) for l in labels])
    assert figures["check"]["accuracy_compressed"] == pytest.approx(float((b == y).mean()))
    assert json.loads((tmp_path / "ok" / "compress.json").read_text())["size_bytes"] == files_size(tmp_path / "ok")
    mixed = pipeline.run_compress(root / "model", tmp_path / "mixed", "25kB", check=root / "mixed.txt",
                                  min_agreement=0.0)["check"]
    assert 0.5 < mixed["agreement"] < 0.99 and mixed["n"] == 200 and "accuracy_original" not in mixed
    with pytest.raises(GateNotMet, match="below --agreement") as e:
        pipeline.run_compress(root / "model", tmp_path / "no", "25kB", check=root / "mixed.txt")
    assert e.value.exit_code == 7 and not (tmp_path / "no").exists()      # nothing written


def test_the_default_check_set_is_the_runs_dev_file(run, tmp_path):
    root, _, _, _ = run
    figures = pipeline.run_compress(root / "model", tmp_path / "c", "10MB")
    assert figures["check"]["file"] == str(root / "dev.tsv") and figures["check"]["agreement"] == 1.0


def test_uncompressed_checkpoints_are_unchanged(run):
    _, _, _, meta = run
    assert meta["format_version"] == 2 and "compressed" not in meta
    assert meta["config"]["output"] == {"dir": BASE_CONFIG["output"]["dir"]}   # no new keys at their defaults
    assert not any(k.startswith("quant.") for k in meta["arrays"])


def test_a_compressed_model_is_not_compressed_again_and_embedding_models_are_refused(run, tmp_path):
    root, model, cfg, _ = run
    small = compress.build(model, 10)
    with pytest.raises(ConfigError, match="compressed already"):
        compress.build(small, 5)
    with pytest.raises(ConfigError, match="bits"):
        compress.build(model, 5, bits=4)


def test_a_damaged_compressed_layer_is_refused(run, tmp_path):
    root, model, cfg, _ = run
    checkpoint.save(tmp_path, compress.build(model, 10, rank=4), cfg)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["arrays"]["quant.H1.q"]["shape"][0] += 1
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path)


def test_train_with_output_compress_saves_the_compressed_model(run, tmp_path):
    root, *_ = run
    raw = json.loads(json.dumps(BASE_CONFIG))
    raw["output"]["compress"] = "60kB"
    logs = []
    r = pipeline.run_train(config.from_dict(raw, "test"), root, tmp_path / "c", log=logs.append)
    _, _, meta = checkpoint.load(tmp_path / "c")
    assert meta["format_version"] == 3 and files_size(tmp_path / "c") <= 60000
    assert r["compress"]["check"]["file"].endswith("dev.tsv") and "test" in r["compress"]
    assert any("compressed the model" in m for m in logs)
    assert "Compressed (output.compress):" in (tmp_path / "c" / "report.md").read_text()
    raw["output"].update(compress="25kB")             # too small to agree on mixed texts: the full model stays
    raw["data"]["dev"] = str(tmp_path / "mixed.tsv")
    labels = sorted(KEYWORDS)
    (tmp_path / "mixed.tsv").write_text("".join(f"{labels[i % 3]}\t{t}" for i, t in
                                                enumerate((root / "mixed.txt").read_text().splitlines(True))))
    logs.clear()
    r = pipeline.run_train(config.from_dict(raw, "test"), root, tmp_path / "f", log=logs.append)
    _, _, meta = checkpoint.load(tmp_path / "f")
    assert meta["format_version"] == 2 and r["compress"]["kept_full_model"]
    assert any("the full model is kept" in m for m in logs)


def test_bad_output_compress_values_are_config_errors():
    for bad in ("8XB", "-1MB", "0"):
        with pytest.raises(ConfigError, match="output.compress"):
            config.from_dict({"data": {"train": "t.tsv"}, "output": {"compress": bad}}, "test")


# --- the command line ---------------------------------------------------------------------------

def test_cli_compress_then_predict_eval_inspect_and_the_error_codes(run, tmp_path):
    root, model, _, _ = run
    m, out = root / "model", tmp_path / "small"
    r = cli("compress", m, "--out", out, "--max-size", "40kB", "--agreement", "0")
    assert r.returncode == 0 and "agreement with the original" in r.stdout and r.stderr == "", r.stderr
    assert files_size(out) <= 40000
    import nlclf
    api = nlclf.load(out)
    small, _, _ = checkpoint.load(out)
    p = subprocess.run([sys.executable, "-m", "nlclf", "predict", str(out)], cwd=REPO, env=ENV, timeout=TIMEOUT,
                       input="".join(t + "\n" for t in TEXTS), capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.split() == api.predict(TEXTS)
    assert api.predict(TEXTS) == [small.labels[i] for i in small.proba(TEXTS).argmax(1)]
    ev = cli("eval", out, root / "test.tsv", "--report", "-")
    assert ev.returncode == 0 and 0 <= json.loads(ev.stdout)["accuracy"] <= 1
    ins = cli("inspect", out, "--json")
    info = json.loads(ins.stdout)
    assert info["compressed"]["bits"] == 8 and info["size_bytes"] == files_size(out)
    text = cli("inspect", out).stdout
    assert "rows kept" in text and "size:" in text
    codes = {"missing model": cli("compress", tmp_path / "nothing", "--out", tmp_path / "x").returncode,
             "bad size": cli("compress", m, "--out", tmp_path / "x", "--max-size", "eight").returncode,
             "bad bits": cli("compress", m, "--out", tmp_path / "x", "--bits", "4").returncode,
             "too small": cli("compress", m, "--out", tmp_path / "x", "--max-size", "1kB").returncode,
             "below agreement": cli("compress", m, "--out", tmp_path / "x", "--max-size", "25kB",
                                    "--check", root / "mixed.txt").returncode,
             "exists": cli("compress", m, "--out", out, "--agreement", "0").returncode,
             "missing check": cli("compress", m, "--out", tmp_path / "x", "--check", tmp_path / "no.tsv").returncode}
    assert codes == {"missing model": 4, "bad size": 2, "bad bits": 2, "too small": 2, "below agreement": 7,
                     "exists": 5, "missing check": 3}
    assert not (tmp_path / "x").exists()
    again = cli("compress", m, "--out", out, "--agreement", "0", "--max-size", "30kB", "--overwrite")
    assert again.returncode == 0 and files_size(out) <= 30000
    assert len(list(out.glob("model.*.npz"))) == 1                        # the old arrays file replaced

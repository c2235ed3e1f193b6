"""Ensembles: K members merged into one network whose logits are the members' mean."""

import numpy as np
import pytest
import scipy.sparse as sp

from nlclf.nn import mlp

CASES = [("bow", ()), ("bow", (4,)), ("bow", (4, 3)), ("embed_mean", ()), ("embed_mean", (5,)),
         ("embed_concat", ()), ("embed_concat", (4,)), ("embed_concat", (4, 2))]


@pytest.mark.parametrize("kind,hidden", CASES)
@pytest.mark.parametrize("biases", [True, False])
def test_merged_network_gives_the_mean_of_the_members_logits(kind, hidden, biases, rng):
    spec = mlp.NetSpec(kind, 11, 3, hidden=hidden, activation="tanh", hidden_bias=biases, output_bias=biases,
                       embed_dim=2 if kind != "bow" else 0, max_tokens=3 if kind == "embed_concat" else 0,
                       dropout=0.5)
    members = []
    for _ in range(3):
        p = mlp.init_params(spec, rng, np.float64)
        members.append({k: v + rng.normal(size=v.shape) if k.startswith("b") else v for k, v in p.items()})
    if kind == "embed_concat":
        X = rng.integers(0, 11, size=(6, 3)).astype(np.int32)
    else:
        X = sp.random(6, 11, density=0.4, random_state=1, format="csr")
    wide, params = mlp.merge(spec, members)
    assert {k: v.shape for k, v in params.items()} == mlp.param_shapes(wide)
    assert wide.hidden == tuple(3 * h for h in hidden) and wide.embed_dim == 3 * spec.embed_dim
    expected = np.mean([mlp.forward(m, spec, X)[0] for m in members], axis=0)
    assert np.allclose(mlp.forward(params, wide, X)[0], expected, atol=1e-12)
    if "E" in params:
        assert not params["E"][spec.pad_id].any()


def test_one_member_is_that_network(rng):
    spec = mlp.NetSpec("bow", 7, 2, hidden=(3,))
    p = mlp.init_params(spec, rng)
    wide, merged = mlp.merge(spec, [p])
    assert wide == spec and all(np.array_equal(merged[k], p[k]) for k in p)


# ---------------------------------------------------------------- training an ensemble

from nlclf import rundir, checkpoint, config, pipeline          # noqa: E402
from nlclf.errors import Interrupted                    # noqa: E402

from conftest import write_data                    # noqa: E402

ENSEMBLE = """seed: 3
data: {train: train.tsv, dev: dev.tsv, test: test.tsv}
features: {kind: bow}
model: {hidden: [8], dropout: 0.2}
train: {lr: 0.01, batch_size: 8, epochs: 3, patience: 0, checkpoint_seconds: 0, ensemble: 3}
"""


def test_an_ensemble_trains_each_member_and_saves_one_merged_network(tmp_path):
    write_data(tmp_path)
    cfg = config.load_text(ENSEMBLE)
    r = pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    assert len(r["members"]) == 3 and [m["epochs"] for m in r["members"]] == [3, 3, 3]
    assert [h["member"] for h in r["history"]] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert r["model"]["ensemble"] == 3 and r["final"]["test"]["accuracy"] >= 0.9
    model, _, _ = checkpoint.load(tmp_path / "run")
    assert model.spec.hidden == (24,) and model.params["H1"].shape[1] == 24
    blocks = np.split(model.params["H1"], 3, axis=1)        # members start from different weights
    assert not np.allclose(blocks[0], blocks[1]) and not np.allclose(blocks[1], blocks[2])
    assert "ensemble of 3" in (tmp_path / "run" / "report.md").read_text()
    # member 1 is the run a one-network config trains: the same seed, the same weights
    one = pipeline.run_train(config.load_text(ENSEMBLE, overrides=["train.ensemble=1"]), tmp_path,
                             tmp_path / "one")
    single, _, _ = checkpoint.load(tmp_path / "one")
    assert np.array_equal(blocks[0], single.params["H1"]) and one["members"] == []


def test_an_interrupted_ensemble_resumes_to_the_same_bytes(tmp_path):
    write_data(tmp_path)
    cfg = config.load_text(ENSEMBLE)
    pipeline.run_train(cfg, tmp_path, tmp_path / "ref")
    n_batches = 3 * int(np.ceil(90 / 8))                    # one member: 3 epochs of 90 examples
    for stop_at in (n_batches + 5, 2 * n_batches + 1):      # inside member 2, then member 3
        calls = {"n": 0}

        def should_stop():
            calls["n"] += 1
            return calls["n"] == stop_at
        run = tmp_path / f"run{stop_at}"
        with pytest.raises(Interrupted):
            pipeline.run_train(cfg, tmp_path, run, should_stop=should_stop)
        state, _ = checkpoint.load_state(run / rundir.PARTIAL)
        assert state.member == stop_at // n_batches and len(state.members) == state.member
        pipeline.run_train(cfg, tmp_path, run, resume=True)
        got, ref = checkpoint.model_files(run), checkpoint.model_files(tmp_path / "ref")
        assert [f.name for f in got] == [f.name for f in ref]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(got, ref))

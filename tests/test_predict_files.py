"""Many files into an output folder (`nlclf predict FILE... --out-dir DIR`): parts of a file read
as the whole file is, outputs identical to stdout's, the folder rules, and a real Dask cluster."""

import json
import subprocess
import sys

import pytest

from nlclf import data, pipeline, predict
from nlclf.config import DataConfig
from nlclf.errors import ConfigError, DataError, OutputError

from conftest import ENV, REPO, TIMEOUT, TOPICS, assert_ok, cfg_for

WORDS = " ".join(TOPICS.values()).split()


def lines(n: int, seed: int = 0) -> list:
    import random
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6))) for _ in range(n)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pf")
    pipeline.run_train(cfg_for("bow", tmp), tmp, tmp / "run")
    return tmp


def nlclf(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nlclf.cli", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=TIMEOUT)


# --- parts of a file --------------------------------------------------------------------

@pytest.mark.parametrize("fmt,body", [
    ("tsv", "\ufeffa b\n\nc\td\n" + "".join(f"w{i}\n" for i in range(40)) + "last, no newline"),
    ("fasttext", "".join(f"__label__x t{i} u\n" for i in range(23))),
    ("jsonl", "".join(json.dumps({"text": f"t{i}", "id": i}) + "\n" for i in range(17)) + "\n\n"),
    ("tsv", ""),
])
@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_the_parts_of_a_file_hold_its_records_in_order(tmp_path, fmt, body, size):
    path = tmp_path / "in.txt"
    path.write_text(body, encoding="utf-8")
    opts = DataConfig(format=fmt)
    whole = list(data.iter_records([path], opts))
    parts = data.line_parts(path, opts, size)
    assert all(p.first_line == 1 + i * size for i, p in enumerate(parts))
    assert parts[0].start == 0 and parts[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    assert [r for p in parts for r in data.iter_records([p], opts)] == whole
    n_lines = body.count("\n") + (not body.endswith("\n") and body != "")
    assert len(parts) == max(1, -(-n_lines // size))


def test_a_bad_line_in_a_later_part_is_named_by_its_line_and_byte_in_the_file(tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [json.dumps({"text": f"t{i}"}) for i in range(9)]
    rows[6] = "{not json"
    path.write_text("\n".join(rows) + "\n")
    opts = DataConfig(format="jsonl")
    parts = data.line_parts(path, opts, 4)
    with pytest.raises(DataError, match=r"in\.jsonl:7: not valid JSON"):
        list(data.iter_records([parts[1]], opts))
    raw = tmp_path / "in.txt"
    raw.write_bytes(b"ok\nok\nok\nbad \xff here\n")
    with pytest.raises(DataError, match=r"in\.txt:4: not valid UTF-8 at byte 13 of the file"):
        list(data.iter_records([data.line_parts(raw, DataConfig(format="tsv"), 3)[1]], DataConfig(format="tsv")))


def test_csv_is_one_part_its_quoted_fields_may_hold_newlines(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('text,label\n"a\nb",x\nc,y\n')
    assert data.line_parts(path, DataConfig(format="auto"), 1) == [str(path)]


# --- the output folder --------------------------------------------------------------------

def stdout_of(run, files, *opts):
    r = nlclf("predict", "run", *files, "--workers", "1", *opts, cwd=run)
    assert_ok(r)
    return r.stdout


@pytest.mark.parametrize("opts", [(), ("--proba", "--top-k", "2"), ("--format", "jsonl", "--with-text"),
                                  ("--format", "tsv", "--threshold", "0.2"), ("--explain", "2")])
def test_each_output_file_is_what_stdout_shows_for_that_file(run, opts, monkeypatch):
    monkeypatch.setattr(predict, "PART_LINES", 7)           # several parts a file, batches cut short
    (run / "a.txt").write_text("\n".join(lines(40)) + "\n")
    (run / "b.txt").write_text("\n".join(lines(3, 1)))
    out = run / ("out" + "".join(opts).replace("-", "_").replace(".", ""))
    from typer.testing import CliRunner
    from nlclf.cli import app
    r = CliRunner().invoke(app, ["predict", str(run / "run"), str(run / "a.txt"), str(run / "b.txt"),
                                 "--out-dir", str(out), "--batch-size", "3", *opts])
    assert r.exit_code == 0, r.output
    suffix = predict.OUTPUT_SUFFIX[opts[opts.index("--format") + 1] if "--format" in opts else "text"]
    assert sorted(p.name for p in out.iterdir()) == [".nlclf.json", "a" + suffix, "b" + suffix]
    for name in ("a", "b"):
        assert (out / (name + suffix)).read_text() == stdout_of(run, [f"{name}.txt"], *opts)


def test_workers_do_not_change_a_byte(run, monkeypatch):
    monkeypatch.setattr(predict, "PART_LINES", 50)
    (run / "big.txt").write_text("\n".join(lines(1000, 2)) + "\n")
    req = predict.Request(top_k=2, proba=True, many=True)
    one = predict.predict_files(run / "run", [run / "big.txt"], run / "w1", req, workers=1)
    two = predict.predict_files(run / "run", [run / "big.txt"], run / "w2", req, workers=2)
    assert one["files"][0]["bytes"] == two["files"][0]["bytes"] > 0
    assert (run / "w1" / "big.pred").read_bytes() == (run / "w2" / "big.pred").read_bytes()
    assert (run / "w1" / "big.pred").read_text().count("\n") == 1000


def test_a_task_predicts_its_batches_as_the_training_loop_does_and_puts_back_the_heap_before(run, monkeypatch):
    # A Dask worker starts with MALLOC_TRIM_THRESHOLD_=65536, which freezes glibc's mmap
    # threshold at 128 KiB: every batch's temporaries would be mapped and faulted in afresh;
    # and its BLAS may have a thread a core beside the other workers'.
    from nlclf import runtime
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert runtime._started_with() == (128 * 1024, 65536)
    monkeypatch.setattr(runtime, "_malloc_now", [runtime._started_with()])
    calls = []
    monkeypatch.setattr(runtime, "_set_malloc", lambda t: (calls.append(t), runtime._malloc_now.__setitem__(0, t)))
    blas = runtime.blas_threads
    monkeypatch.setattr(runtime, "blas_threads", lambda n=1: (calls.append(("blas", n)), blas(n))[1])
    (run / "t.txt").write_text("apple pear\nowl\n")
    sha, out = predict.predict_part(str(run / "run"), data.line_parts(run / "t.txt", DataConfig(), 10)[0],
                                    predict.Request())
    assert out == b"fruit\nbirds\n"
    assert calls == [(runtime.BATCHES_MALLOC, 2 * runtime.BATCHES_MALLOC), ("blas", 1), (128 * 1024, 65536)]
    assert runtime._malloc_now[0] == (128 * 1024, 65536)


def test_a_large_batch_of_this_process_is_scored_on_one_blas_thread(run, monkeypatch):
    # On one process, OpenBLAS's idle threads spun a second core through a whole file.
    from threadpoolctl import threadpool_info
    from nlclf import runtime
    seen = []
    threads = lambda: {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    model = predict._cached_model(str(run / "run"))[0]
    proba = model.proba
    monkeypatch.setattr(model, "proba", lambda texts: (seen.append(threads()), proba(texts))[1])
    score = predict._on_one_blas_thread(predict._scorer(model, 1, None, 0))
    n = predict.ONE_BLAS_THREAD
    with runtime.blas_threads(2):
        before = threads()                                    # {2}, or what this machine allows
        large, small = score(["apple pear"] * (n - 1) + ["owl"]), score(["owl"] * (n - 1))
    assert [r[0][0] for r in large] == ["fruit"] * (n - 1) + ["birds"] and [r[0][0] for r in small] == ["birds"] * (n - 1)
    assert seen[0] <= {1}                                     # n texts: one thread (none: no BLAS pool)
    assert seen[1] == before                                  # fewer: left as they were
    wrapped = []                                              # run_predict wraps its scorer only in this process
    monkeypatch.setattr(predict, "_on_one_blas_thread", lambda f: (wrapped.append(f), f)[1])
    for workers in (1, 2):
        list(predict.run_predict(str(run / "run"), texts=["owl"] * 3, workers=workers))
    assert len(wrapped) == 1


def test_the_output_folder_is_claimed_like_a_run_folder(run):
    (run / "c.txt").write_text("apple pear\nowl\n")
    req = predict.Request()
    predict.predict_files(run / "run", [run / "c.txt"], run / "o", req, workers=1)
    with pytest.raises(OutputError, match="not empty; use --overwrite"):
        predict.predict_files(run / "run", [run / "c.txt"], run / "o", req, workers=1)
    (run / "o" / "mine.txt").write_text("the user's")
    predict.predict_files(run / "run", [run / "c.txt"], run / "o", req, overwrite=True, workers=1)
    assert (run / "o" / "mine.txt").read_text() == "the user's"
    assert (run / "o" / "c.pred").read_text() == "fruit\nbirds\n"
    (run / "o2").mkdir()
    (run / "o2" / "c.pred").write_text("the user's")
    with pytest.raises(OutputError, match="did not write"):
        predict.predict_files(run / "run", [run / "c.txt"], run / "o2", req, overwrite=True, workers=1)
    assert (run / "o2" / "c.pred").read_text() == "the user's"


def test_inputs_that_would_share_an_output_or_have_none_are_refused_before_any_work(run):
    (run / "d.txt").write_text("x\n")
    (run / "d.tsv").write_text("x\n")
    for files, msg in (([run / "d.txt", run / "d.tsv"], "would both be written to d.pred"),
                       (["-"], "standard input")):
        with pytest.raises(ConfigError, match=msg):
            predict.predict_files(run / "run", files, run / "none", predict.Request(), workers=1)
    with pytest.raises(DataError, match="file not found"):
        predict.predict_files(run / "run", [run / "missing.txt"], run / "none", predict.Request(), workers=1)
    assert not (run / "none").exists()


def test_a_bad_file_fails_alone_with_no_half_written_output(run):
    (run / "e1.txt").write_text("apple\n")
    (run / "e2.txt").write_bytes(b"owl\n\xff\n")
    r = nlclf("predict", "run", "e1.txt", "e2.txt", "--out-dir", "bad", cwd=run)
    assert r.returncode == 3 and "e2.txt:2: not valid UTF-8" in r.stderr, r.stderr
    assert sorted(p.name for p in (run / "bad").iterdir()) == [".nlclf.json", "e1.pred"]
    for args in (("--scheduler", "tcp://127.0.0.1:9"), ("--overwrite",)):
        r = nlclf("predict", "run", "e1.txt", *args, cwd=run)
        assert r.returncode == 2 and "goes with --out-dir" in r.stderr


# --- a real Dask cluster ----------------------------------------------------------------------

@pytest.mark.slow
def test_a_two_worker_dask_cluster_writes_the_same_bytes_as_local_workers(run):
    distributed = pytest.importorskip("distributed")
    for i in range(3):
        (run / f"f{i}.txt").write_text("\n".join(lines(300 + 200 * i, 10 + i)) + "\n")
    files = [f"f{i}.txt" for i in range(3)]
    local = nlclf("predict", "run", *files, "--out-dir", "local", "--proba", "--top-k", "2", cwd=run)
    assert_ok(local)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster:
        remote = nlclf("predict", "run", *files, "--out-dir", "dask", "--proba", "--top-k", "2",
                       "--scheduler", cluster.scheduler_address, cwd=run)
        assert_ok(remote)
        with distributed.Client(cluster) as client:          # each worker loaded the model once
            loaded = client.run(lambda: len(__import__("nlclf.predict").predict._LOADED))
    assert sorted(loaded.values()) == [1, 1] or sorted(loaded.values()) == [0, 1]
    for f in files:
        name = f.replace(".txt", ".pred")
        assert (run / "dask" / name).read_bytes() == (run / "local" / name).read_bytes()
    assert "wrote 3 files into dask" in remote.stderr

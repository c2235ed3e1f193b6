"""Ordered maps over forked workers: same results and order as in-process, errors surface,
streams are not read ahead, and prediction does not depend on the number of workers."""

import threading

import numpy as np
import pytest

from nlclf import parallel, pipeline, predict
from nlclf.errors import DataError

from conftest import cfg_for


def square_with_pid(x):
    import os
    return x * x, os.getpid()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_input_order(workers):
    out = list(parallel.ordered_map(square_with_pid, range(50), workers=workers))
    assert [r for r, _ in out] == [x * x for x in range(50)]
    pids = {p for _, p in out}
    import os
    if workers == 1:
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= workers


def test_fewer_items_than_min_items_stay_in_this_process():
    import os
    out = list(parallel.ordered_map(square_with_pid, [3], workers=2, min_items=2))
    assert out == [(9, os.getpid())]
    assert list(parallel.ordered_map(square_with_pid, [], workers=2)) == []


def test_no_pool_inside_a_worker():
    def inner(x):
        return [p for _, p in parallel.ordered_map(square_with_pid, range(4), workers=2)], parallel.n_workers(2)
    (pids, n), = list(parallel.ordered_map(inner, [0], workers=2))
    assert n == 1 and len(set(pids)) == 1


def test_a_worker_runs_with_the_heap_thresholds_of_a_batch_loop_whatever_its_parent_set():
    # The featurizing parent maps every block of 128 KiB or more (runtime.FEATURIZING_MALLOC), so
    # that freed chunks go back to the system; a worker's chunk temporaries, freed and reused a
    # chunk after another, would then be mapped and faulted in afresh each time.
    from nlclf import runtime
    with runtime.malloc_thresholds(runtime.FEATURIZING_MALLOC):
        seen = list(parallel.ordered_map(lambda x: runtime._malloc_now[0], range(4), workers=2))
        assert runtime._malloc_now[0] == (runtime.FEATURIZING_MALLOC, 2 * runtime.FEATURIZING_MALLOC)
    assert seen == [(runtime.BATCHES_MALLOC, 2 * runtime.BATCHES_MALLOC)] * 4


def fail_on_7(x):
    if x == 7:
        raise DataError(f"bad item {x}")
    return x


def test_an_error_in_a_worker_is_raised_here_after_the_results_before_it():
    got = []
    with pytest.raises(DataError, match="bad item 7"):
        for r in parallel.ordered_map(fail_on_7, range(20), workers=2):
            got.append(r)
    assert got == list(range(7))


def test_an_error_from_the_input_is_raised_here():
    def items():
        yield from range(5)
        raise DataError("input broke")
    got = []
    with pytest.raises(DataError, match="input broke"):
        for r in parallel.ordered_map(fail_on_7, items(), workers=2):
            got.append(r)
    assert got == list(range(5))


def test_a_result_is_handed_back_while_the_input_waits():
    """Interactive input: the first result must not wait for the second item."""
    release = threading.Event()
    waited_out = []

    def items():
        yield 1
        if not release.wait(20):               # the next line has not been typed yet
            waited_out.append(True)
        yield 2
    it = parallel.ordered_map(square_with_pid, items(), workers=2)
    first = next(it)[0]
    release.set()
    assert not waited_out, "the first result came only after the input moved on"
    assert first == 1 and [r for r, _ in it] == [4]


def test_prediction_is_identical_with_one_and_with_two_workers(tmp_path):
    cfg = cfg_for("bow", tmp_path, ngrams=2)
    pipeline.run_train(cfg, tmp_path, tmp_path / "run")
    rng = np.random.default_rng(0)
    words = "apple banana owl crow drill saw hammer plum finch the a of".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 9))) for _ in range(500)]

    def run(workers, **kw):
        return [r for batch in predict.run_predict(tmp_path / "run", texts=iter(texts), batch_size=37,
                                                    workers=workers, **kw) for r in batch]
    one, two = run(1, top_k=3), run(2, top_k=3)
    assert len(one) == 500 and one == two
    assert run(1, explain_k=2) == run(2, explain_k=2)


def test_stopping_early_ends_every_worker_at_once():
    """A reader that goes away (`predict | head -1`) closes the map mid-stream, with results
    still on their way; the workers must be gone when close() returns, every time."""
    import os
    for _ in range(20):
        it = parallel.ordered_map(square_with_pid, range(10_000), workers=2)
        pids = {next(it)[1] for _ in range(5)}
        it.close()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)

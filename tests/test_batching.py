"""The dynamic batcher on its own: each request gets its own rows, padding to the warmed sizes, a full queue
refused at once, and workers that follow how many batches the model runs at once (OpenVINO's streams)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from core.serving.batching import MAX_WORKERS, BatcherClosed, DynamicBatcher, QueueFull, batch_sizes

SHAPE = (2, 2, 3)


def rows(values) -> np.ndarray:
    """One (2, 2, 3) image a value: row i is all values[i]."""
    return np.stack([np.full(SHAPE, v, dtype=np.float32) for v in values])


def echo(batch: np.ndarray) -> dict[str, np.ndarray]:
    return {"value": batch[:, 0, 0, 0].copy()}


def test_padded_sizes_are_fine_steps_up_to_the_max_batch():
    assert batch_sizes(32) == [1, 2, 4, 8, 12, 16, 20, 24, 28, 32]
    assert batch_sizes(1) == [1]


def test_concurrent_requests_share_a_batch_and_each_gets_its_own_rows():
    seen = []

    def forward(batch):
        seen.append(len(batch))
        return echo(batch)

    batcher = DynamicBatcher(forward, SHAPE, max_batch=8, max_wait_ms=50).start()
    try:
        futures = [batcher.submit(rows([i, i + 100])) for i in range(3)]
        answers = [f.result(10)["value"].tolist() for f in futures]
    finally:
        batcher.close()
    assert answers == [[0, 100], [1, 101], [2, 102]]
    assert sum(seen) >= 6 and min(seen) in batch_sizes(8)  # padded to a warmed size
    assert batcher.stats.rows == 6


def test_a_full_queue_is_refused_at_once_and_a_closed_batcher_says_so():
    release = threading.Event()

    def slow(batch):
        release.wait(10)
        return echo(batch)

    batcher = DynamicBatcher(slow, SHAPE, max_batch=1, max_wait_ms=0, max_queue=1).start()
    first = batcher.submit(rows([1]))
    time.sleep(0.2)  # the worker holds the first; the queue has room for one more
    batcher.submit(rows([2]))
    with pytest.raises(QueueFull):
        batcher.submit(rows([3]))
    release.set()
    assert first.result(10)["value"].tolist() == [1]
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit(rows([4]))


def test_workers_follow_the_models_streams_and_run_batches_at_once():
    """Two streams: a second batch starts while the first still runs (they meet at a barrier that a lone
    worker could never pass), each request still gets its own rows, and close stops every worker."""
    streams = {"now": 1}
    meet = threading.Barrier(2, timeout=10)
    met = []

    def forward(batch):
        if streams["now"] == 2:
            met.append(meet.wait() is not None)
        return echo(batch)

    batcher = DynamicBatcher(forward, SHAPE, max_batch=2, max_wait_ms=0, workers=lambda: streams["now"]).start()
    assert batcher.submit(rows([7])).result(10)["value"].tolist() == [7]
    assert batcher.worker_count == 1
    streams["now"] = 2  # the faster runtime took over
    futures = [batcher.submit(rows([v, v + 1])) for v in (10, 20, 30, 40)]
    answers = [f.result(20)["value"].tolist() for f in futures]
    assert answers == [[10, 11], [20, 21], [30, 31], [40, 41]]
    assert batcher.worker_count == 2 and len(met) >= 2
    threads = list(batcher._threads)
    batcher.close()
    assert not any(t.is_alive() for t in threads)


def test_workers_never_pass_the_cap():
    batcher = DynamicBatcher(echo, SHAPE, max_batch=4, max_wait_ms=0, workers=lambda: 99).start()
    try:
        for v in range(3):
            assert batcher.submit(rows([v])).result(10)["value"].tolist() == [v]
        assert batcher.worker_count == MAX_WORKERS
    finally:
        batcher.close()


def test_a_cancelled_request_is_skipped_and_the_model_failing_fails_its_batch_only():
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the model broke")
        return echo(batch)

    batcher = DynamicBatcher(flaky, SHAPE, max_batch=4, max_wait_ms=0).start()
    try:
        with pytest.raises(RuntimeError, match="broke"):
            batcher.submit(rows([1])).result(10)
        assert asyncio.run(batcher.run(rows([5])))["value"].tolist() == [5]
    finally:
        batcher.close()

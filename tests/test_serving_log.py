"""The prediction log: concurrent writers (threads and processes) lose nothing; reading back and --since."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

from core.processes.workers import worker_context
from core.serving.log import LogRecord, LogWriter, PredictionLog, parse_since

pytestmark = pytest.mark.backend_agnostic


def _record(i: int, source: str = "api") -> LogRecord:
    return LogRecord(
        model="production",
        run_id="abc123def456",
        source=source,
        label="rose",
        top_k=[("rose", 0.8), ("tulip", 0.2)],
        max_probability=0.8,
        entropy=0.5,
        ood_score=-3.0,
        ood_flag=False,
        latency_ms=12.5,
        image_sha256=f"{i:064x}",
        features=np.arange(4, dtype=np.float32) * (i % 7),
    )


def _write_many(path: str, start: int, count: int) -> None:
    log = PredictionLog(path)
    for i in range(start, start + count):
        log.record([_record(i, "cli")])


def test_threads_and_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "predictions.sqlite"
    log = PredictionLog(path)
    threads = [threading.Thread(target=_write_many, args=(str(path), 10_000 * t, 150)) for t in range(6)]
    # Flora's spawn (core.processes.workers): plain spawn would first run this worker's `__main__` again, which an
    # earlier page test in it leaves as streamlit_app.py (the whole app and its Keras warm-up: ~4 CPU-s a writer)
    context = worker_context()
    processes = [context.Process(target=_write_many, args=(str(path), 1_000_000 * (p + 1), 150)) for p in range(3)]
    for worker in [*threads, *processes]:
        worker.start()
    for worker in [*threads, *processes]:
        worker.join(120)
    assert all(p.exitcode == 0 for p in processes)
    assert log.count() == 9 * 150
    shas = {row["image_sha256"] for row in log.read()}
    assert len(shas) == 9 * 150
    with sqlite3.connect(log.path) as db:  # WAL mode: readers never wait for the writers above
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rows_read_back_with_their_fields_and_feedback(tmp_path):
    log = PredictionLog(tmp_path / "p.sqlite")
    ids = log.record([_record(1), _record(2, "ui")])
    assert log.add_feedback("tulip", prediction_id=ids[0]) == 1
    assert log.add_feedback("daisy", image_sha256=f"{2:064x}") == 1
    rows = log.read(with_features=True)
    assert [r["source"] for r in rows] == ["api", "ui"]
    assert rows[0]["top_k"] == [["rose", 0.8], ["tulip", 0.2]]
    assert rows[0]["feedback_label"] == "tulip" and rows[1]["feedback_label"] == "daisy"
    np.testing.assert_allclose(rows[1]["features"], [0, 2, 4, 6])  # i=2
    assert rows[0]["ood_flag"] is False


def test_the_log_writer_batches_and_flushes(tmp_path):
    log = PredictionLog(tmp_path / "p.sqlite")
    writer = LogWriter(log)
    for i in range(1000):
        writer.add(_record(i))
    assert writer.flush()
    assert log.count() == 1000
    writer.close()


def test_the_log_writer_under_a_steady_stream_writes_one_transaction_an_interval(tmp_path):
    """A server answering a request every few ms hands the writer one record at a time: it gathers them for an
    interval instead of a connection and commit per record or two; a flush still writes what is queued at once."""
    log = PredictionLog(tmp_path / "p.sqlite")
    transactions = []
    record = log.record
    log.record = lambda records: transactions.append(len(records)) or record(records)
    writer = LogWriter(log, interval=0.2)
    started = time.monotonic()
    for i in range(150):  # about 1 s at one record every 7 ms (the bench server's rate)
        writer.add(_record(i))
        time.sleep(0.007)
    took = time.monotonic() - started
    assert writer.flush(10)
    assert log.count() == 150 and sum(transactions) == 150
    assert len(transactions) <= took / 0.2 + 2, transactions
    writer.add(_record(150))
    flushed = time.monotonic()
    assert writer.flush(10) and time.monotonic() - flushed < 0.2 + 0.15  # at most what is left of an interval
    assert log.count() == 151
    writer.close()


def test_since_accepts_durations_dates_and_epochs():
    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1800000000", now) == 1_800_000_000
    assert parse_since("2027-01-15T10:00:00") > 0
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday-ish")


def test_since_filters_rows(tmp_path):
    log = PredictionLog(tmp_path / "p.sqlite")
    old = _record(1)
    old.time = time.time() - 7200
    log.record([old, _record(2)])
    assert len(log.read(since=parse_since("1h"))) == 1
    assert len(log.read()) == 2

"""The prediction log: one SQLite file in the run store (`models/predictions.sqlite`, WAL mode).

Every predictor writes here: the server (source "api"), the Predict page ("ui") and, when asked,
the CLI ("cli"). A row is one photo's prediction: when, which model (the name asked for and the run
that answered), the photo's sha256 and size, the top-k, the (calibrated) top probability, the
entropy, the out-of-distribution score and flag, the latency, a compact projection of the pooled
features (for input drift) and, once someone corrects it, the right label.

Writers from many threads and processes lose nothing: WAL lets readers run beside one writer,
`BEGIN IMMEDIATE` takes the write lock up front (no lock upgrade to deadlock on) and a generous
busy timeout makes a writer wait its turn instead of failing.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidInput
from core.shared_store import switch_to_wal

LOG_DATABASE = "predictions.sqlite"
SOURCES = ("api", "ui", "cli")
BUSY_TIMEOUT_SECONDS = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    model TEXT NOT NULL,
    run_id TEXT NOT NULL,
    source TEXT NOT NULL,
    image_sha256 TEXT,
    name TEXT,
    width INTEGER,
    height INTEGER,
    label TEXT,
    top_k TEXT,
    max_probability REAL,
    entropy REAL,
    ood_score REAL,
    ood_flag INTEGER,
    latency_ms REAL,
    features BLOB,
    feedback_label TEXT,
    feedback_time REAL
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE INDEX IF NOT EXISTS predictions_run ON predictions (run_id, time);
CREATE INDEX IF NOT EXISTS predictions_sha ON predictions (image_sha256);
"""
COLUMNS = (
    "id",
    "time",
    "model",
    "run_id",
    "source",
    "image_sha256",
    "name",
    "width",
    "height",
    "label",
    "top_k",
    "max_probability",
    "entropy",
    "ood_score",
    "ood_flag",
    "latency_ms",
    "feedback_label",
    "feedback_time",
)


@dataclass
class LogRecord:
    """One prediction as the log stores it."""

    model: str  # the name the client asked for: an alias, a run id or a prefix
    run_id: str
    source: str  # "api" | "ui" | "cli"
    label: str | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    max_probability: float | None = None
    entropy: float | None = None
    ood_score: float | None = None
    ood_flag: bool | None = None
    latency_ms: float | None = None
    image_sha256: str | None = None
    name: str | None = None
    width: int | None = None
    height: int | None = None
    features: np.ndarray | None = None  # a small float vector (the reference PCA projection)
    time: float = field(default_factory=time.time)

    @classmethod
    def of_answer(cls, model: str, run_id: str, source: str, answer, decoded, latency_ms: float) -> LogRecord:
        """The record of one answered photo: `answer` a served model's Answer for it, `decoded` its Decoded (the
        request path and batch prediction both log through this)."""
        return cls(
            model=model,
            run_id=run_id,
            source=source,
            label=answer.label,
            top_k=answer.top,
            max_probability=answer.max_probability,
            entropy=answer.entropy,
            ood_score=answer.ood_score,
            ood_flag=answer.ood_flag,
            latency_ms=latency_ms,
            image_sha256=decoded.sha256,
            name=decoded.name,
            width=decoded.width,
            height=decoded.height,
            features=answer.projection,
        )

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}. Received: source={self.source!r}")

    def row(self) -> tuple:
        features = None
        if self.features is not None:
            features = np.asarray(self.features, dtype=np.float16).tobytes()
        top = json.dumps([[str(label), round(float(p), 6)] for label, p in self.top_k])
        return (
            float(self.time),
            self.model,
            self.run_id,
            self.source,
            self.image_sha256,
            self.name,
            self.width,
            self.height,
            self.label,
            top,
            _float(self.max_probability),
            _float(self.entropy),
            _float(self.ood_score),
            None if self.ood_flag is None else int(bool(self.ood_flag)),
            _float(self.latency_ms),
            features,
        )


def _float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of class probabilities."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


class PredictionLog:
    """The SQLite prediction log of one run store. Safe to use from many threads and processes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._ready = False

    @classmethod
    def of_store(cls, models_root: str | os.PathLike) -> PredictionLog:
        return cls(Path(models_root) / LOG_DATABASE)

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        # A connection per call: sqlite3 connections must not cross threads, and opening one is ~0.1 ms.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            if not self._ready:
                switch_to_wal(connection, BUSY_TIMEOUT_SECONDS)
                connection.executescript(_SCHEMA)
                self._ready = True
            connection.execute("PRAGMA synchronous = NORMAL")  # durable at each WAL checkpoint; safe in WAL
            if write:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            else:
                yield connection
        finally:
            connection.close()

    def record(self, records: Iterable[LogRecord]) -> list[int]:
        """Append records in one transaction; return their row ids."""
        rows = [r.row() for r in records]
        if not rows:
            return []
        ids = []
        with self._connect(write=True) as db:
            for row in rows:
                cursor = db.execute(
                    "INSERT INTO predictions (time, model, run_id, source, image_sha256, name, width, height, "
                    "label, top_k, max_probability, entropy, ood_score, ood_flag, latency_ms, features) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                ids.append(int(cursor.lastrowid))
        return ids

    def add_feedback(self, label: str, prediction_id: int | None = None, image_sha256: str | None = None) -> int:
        """Store the right label for a prediction (by row id) or for every prediction of a photo (by sha256).

        Returns the number of rows updated (0: nothing matched).
        """
        if prediction_id is None and not image_sha256:
            raise InvalidInput("feedback needs a prediction id or an image sha256")
        if prediction_id is not None:
            where, value = "id = ?", int(prediction_id)
        else:
            where, value = "image_sha256 = ?", image_sha256
        with self._connect(write=True) as db:
            cursor = db.execute(
                f"UPDATE predictions SET feedback_label = ?, feedback_time = ? WHERE {where}",
                (label, time.time(), value),
            )
            return int(cursor.rowcount)

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def read(
        self,
        since: float | None = None,
        run_id: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        with_features: bool = False,
    ) -> list[dict[str, Any]]:
        """Rows (oldest first) as dicts; `top_k` decoded, `features` as float32 arrays when asked."""
        if not self.path.exists():
            return []
        clauses, values = [], []
        for column, value in (("time >= ?", since), ("run_id = ?", run_id), ("model = ?", model)):
            if value is not None:
                clauses.append(column)
                values.append(value)
        columns = ", ".join(COLUMNS + (("features",) if with_features else ()))
        query = f"SELECT {columns} FROM predictions"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        if limit is not None:  # the newest `limit`, still returned oldest first
            query = f"SELECT * FROM ({query} ORDER BY id DESC LIMIT {int(limit)}) ORDER BY id"
        else:
            query += " ORDER BY id"
        with self._connect() as db:
            rows = db.execute(query, values).fetchall()
        out = []
        for row in rows:
            item = dict(zip(COLUMNS + (("features",) if with_features else ()), row, strict=True))
            item["top_k"] = json.loads(item["top_k"]) if item["top_k"] else []
            item["ood_flag"] = None if item["ood_flag"] is None else bool(item["ood_flag"])
            if with_features:
                blob = item["features"]
                item["features"] = None if blob is None else np.frombuffer(blob, dtype=np.float16).astype(np.float32)
            out.append(item)
        return out

    def models(self) -> list[tuple[str, str, int]]:
        """(model name, run id, rows) pairs seen in the log, busiest first."""
        if not self.path.exists():
            return []
        with self._connect() as db:
            rows = db.execute(
                "SELECT model, run_id, COUNT(*) FROM predictions GROUP BY model, run_id ORDER BY COUNT(*) DESC"
            ).fetchall()
        return [(str(m), str(r), int(n)) for m, r, n in rows]


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> float:
    """A point in time from '30m', '2h', '7d' (ago), epoch seconds, or an ISO date/time (local time).

    Raises:
        ValueError: none of those forms.
    """
    text = text.strip()
    now = time.time() if now is None else now
    match = _RELATIVE.match(text.lower())
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    with contextlib.suppress(ValueError):
        value = float(text)
        if value > 1e8:  # epoch seconds, not a small number someone meant as minutes
            return value
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InvalidInput(
            f"--since takes a duration ago (30m, 2h, 7d), epoch seconds or an ISO date/time. Received: {text!r}"
        ) from None


class LogWriter:
    """Writes records to a PredictionLog from a thread of its own, many per transaction.

    A server handler calls `add` (no disk wait in the request's path); `close` writes what is left.
    """

    def __init__(self, log: PredictionLog, interval: float = 0.2, max_rows: int = 500):
        import queue
        import threading

        self.log = log
        self.interval = interval
        self.max_rows = max_rows
        self.written = 0
        self.failed = 0
        self.last_error: str | None = None
        self._queue: queue.Queue[LogRecord | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
        self._thread.start()

    def add(self, record: LogRecord) -> None:
        self._queue.put(record)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything added so far is written; False on timeout."""
        import threading

        marker = threading.Event()
        self._queue.put(marker)
        return marker.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        import queue
        import time

        done = False
        last_write = 0.0
        while not done:
            batch: list[LogRecord] = []
            try:
                item = self._queue.get(timeout=self.interval)
            except queue.Empty:
                continue
            # At most one transaction an interval: under load a write per request or two (a connection, a commit
            # and a WAL checkpoint each) cost the server more than the rows; a flush or close writes at once.
            deadline = last_write + self.interval
            markers = []
            while True:
                if item is None:
                    done = True
                    break
                if isinstance(item, LogRecord):
                    batch.append(item)
                else:
                    markers.append(item)
                    break
                if len(batch) >= self.max_rows:
                    break
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                last_write = time.monotonic()
                self._write(batch)
            for marker in markers:
                marker.set()

    def _write(self, batch: list[LogRecord]) -> None:
        for attempt in range(5):
            try:
                self.log.record(batch)
                self.written += len(batch)
                return
            except sqlite3.Error as e:  # locked past the busy timeout, disk full: retry, then count the loss
                self.last_error = str(e)
                time.sleep(0.5 * (attempt + 1))
        self.failed += len(batch)

"""core.shared_store: the one rule every shared store follows (rows in SQLite, WAL, one transaction per change)."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading

import pytest

from core.shared_store import NestedWrite, SharedStore, Table

IMPORTS: list[str] = []  # the folders an import ran for


def _import(db: sqlite3.Connection, home) -> None:
    IMPORTS.append(str(home))
    old = home / "old.json"
    for key, value in (json.loads(old.read_text()) if old.exists() else {}).items():
        db.execute("INSERT INTO things (key, value) VALUES (?, ?)", (key, value))


THINGS = Table("things", ("CREATE TABLE things (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",), _import)


def test_the_first_open_imports_the_old_file_once_even_from_many_threads_at_once(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"a": 1, "b": 2}))
    store = SharedStore(tmp_path / "shared.sqlite", tmp_path)
    IMPORTS.clear()
    barrier = threading.Barrier(8)
    seen = []

    def reader():
        barrier.wait()
        with store.read(THINGS) as db:
            seen.append(dict(db.execute("SELECT key, value FROM things")))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    imported = list(IMPORTS)
    assert imported == [str(tmp_path)] and seen == [{"a": 1, "b": 2}] * 8
    (tmp_path / "old.json").write_text(json.dumps({"c": 3}))  # written after the import: never read
    with store.read(THINGS) as db:
        assert dict(db.execute("SELECT key, value FROM things")) == {"a": 1, "b": 2}
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_write_bumps_the_version_and_a_failed_one_changes_nothing(tmp_path):
    store = SharedStore(tmp_path / "shared.sqlite", tmp_path)
    assert store.version(THINGS) == 0
    with store.write(THINGS) as db:
        db.execute("INSERT INTO things VALUES ('a', 1)")
    assert store.version(THINGS) == 1
    with pytest.raises(RuntimeError, match="half-way"), store.write(THINGS) as db:
        db.execute("UPDATE things SET value = 2")
        raise RuntimeError("failed half-way")
    with store.read(THINGS) as db:
        assert db.execute("SELECT value FROM things").fetchone() == (1,)  # rolled back
    assert store.version(THINGS) == 1


def test_increments_from_many_threads_are_all_kept(tmp_path):
    """A read-change-write of one row inside the transaction: the case a JSON file lost."""
    store = SharedStore(tmp_path / "shared.sqlite", tmp_path)
    with store.write(THINGS) as db:
        db.execute("INSERT INTO things VALUES ('n', 0)")

    def add():
        for _ in range(25):
            with store.write(THINGS) as db:
                (value,) = db.execute("SELECT value FROM things WHERE key = 'n'").fetchone()
                db.execute("UPDATE things SET value = ? WHERE key = 'n'", (value + 1,))

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.read(THINGS) as db:
        assert db.execute("SELECT value FROM things WHERE key = 'n'").fetchone() == (200,)
    assert store.version(THINGS) == 201


def test_a_nested_write_on_the_same_database_is_refused_at_once_not_after_the_timeout(tmp_path):
    store = SharedStore(tmp_path / "shared.sqlite", tmp_path)
    other = Table("other", ("CREATE TABLE other (key TEXT PRIMARY KEY)",))
    with store.write(THINGS):  # made (a table made inside a write is not there yet for another connection)
        pass
    with store.write(THINGS):
        with pytest.raises(NestedWrite), SharedStore(tmp_path / "shared.sqlite", tmp_path).write(THINGS):
            pass
        with pytest.raises(NestedWrite), store.read(other):  # a new table would be made: a write
            pass
        with store.read(THINGS) as db:  # a read of an existing table beside the write: fine (WAL)
            db.execute("SELECT * FROM things").fetchall()
    with store.write(other):  # the outer write ended: free again
        pass


def test_the_data_folders_store_is_private_and_the_run_stores_is_not(tmp_path):
    data = SharedStore.of_data(tmp_path / "data")
    with data.write(THINGS):
        pass
    assert data.path == (tmp_path / "data" / ".flora" / "shared.sqlite").absolute()
    assert stat.S_IMODE(data.path.stat().st_mode) == 0o600
    models = SharedStore.of_models(tmp_path / "models")
    with models.write(THINGS):
        pass
    assert stat.S_IMODE(models.path.stat().st_mode) & 0o044  # readable like the run folders beside it


def test_a_read_where_nothing_was_ever_written_makes_no_folder(tmp_path):
    store = SharedStore.of_models(tmp_path / "mistyped")
    with store.read(THINGS) as db:
        assert db.execute("SELECT COUNT(*) FROM things").fetchone() == (0,)
    assert store.version(THINGS) == 0 and not (tmp_path / "mistyped").exists()

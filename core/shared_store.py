"""Every store that several people or processes write, kept one way: rows in SQLite, changed in a transaction.

  <data>/.flora/shared.sqlite   people and passphrases, sessions, presence, label corrections and proposals,
                                augmentation presets, workspaces, labelled photos, who gave each feedback photo
  <models>/shared.sqlite        aliases (with the run store, where the model server and `core alias` look)

Why: these stores were JSON files read, changed and written back whole, so two writers at once kept only the
last one's change (from two processes, 32 of 60 first sign-ins kept; six students in browsers, one passphrase
of three). SQLite is in Python's standard library and already holds the prediction log and the sign-in counts;
a lock around each JSON file would still rewrite every person's data for one person's change, and every reader
would have to take it too. SQLite gives transactions, row-level updates and concurrent readers for free.

The rule, for every store (a `Table` here, defined in the module that owns its meaning):
- A write is one `BEGIN IMMEDIATE` transaction: the write lock is taken up front (no read-then-upgrade to
  deadlock on), and a writer that finds it held waits its turn (BUSY_TIMEOUT_S) instead of failing.
- It changes the rows of the items it is about (a person, a session, one mark, one preset, one alias),
  never the whole store; what it decides from stored values (is this name free? whose preset is it?) it reads
  inside the same transaction.
- WAL journal: readers never wait for a writer and never see half a change.
- The first use of a table creates it and imports the JSON file(s) it replaces, inside that same transaction,
  so an upgraded Flora loses nothing and two processes upgrading at once import once. The old files are left
  where they were and never read again.
- Every write bumps the table's version (`SharedStore.version`): a cheap way to notice a change (the model
  server polls the aliases' version to hot-swap a moved alias).

Each thread keeps its own connection to each database (sqlite3 connections must not cross threads; the app
serves each browser from its own thread); it goes when the thread does.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.paths import flora_dir

DATABASE = "shared.sqlite"
BUSY_TIMEOUT_S = 60.0  # a writer waits this long for its turn (a class signing in at once is a queue of ms writes)
_VERSIONS = "CREATE TABLE IF NOT EXISTS table_versions (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
# Per thread (sqlite3 connections must not cross threads), never shared: each thread's open connections, and the
# databases it is writing to now (a second write on one from the same thread is refused at once: a bug to fix).
_per_thread = threading.local()


class NestedWrite(RuntimeError):
    """A write (or the first read of a new table) inside a write transaction of the same thread on the same
    database: it would wait for itself. Use the connection the outer transaction gave."""


@dataclass(frozen=True)
class Table:
    """One store: its name, the statements that create it, and how it imports the JSON it replaces.

    `importer(db, home)`: called once, inside the transaction that creates the table, with the folder the
    database serves (the data folder, or the run store); it inserts the old files' items as rows.
    """

    name: str
    schema: tuple[str, ...]
    importer: Callable[[sqlite3.Connection, Path], None] | None = None


class SharedStore:
    """The shared database of one data folder or one run store. Cheap to make; safe from many threads and
    processes (each call opens its own connection)."""

    def __init__(self, path: str | os.PathLike, home: str | os.PathLike, private: bool = False):
        self.path = Path(path).absolute()
        self.home = Path(home)
        self.private = private  # owner-only file (0600): it holds passphrase hashes and session ids

    @classmethod
    def of_data(cls, data_root: str | os.PathLike) -> SharedStore:
        """`<data>/.flora/shared.sqlite`, private to this server's account like the files it replaces."""
        return cls(flora_dir(data_root) / DATABASE, data_root, private=True)

    @classmethod
    def of_models(cls, models_root: str | os.PathLike) -> SharedStore:
        """`<models>/shared.sqlite`, beside the run folders."""
        return cls(Path(models_root) / DATABASE, models_root)

    @contextlib.contextmanager
    def write(self, table: Table) -> Iterator[sqlite3.Connection]:
        """A connection inside a `BEGIN IMMEDIATE` transaction on `table` (created and imported first if new):
        committed, with the table's version bumped, when the block ends; rolled back if it raises."""
        held = _held()
        if self.path in held:
            raise NestedWrite(f"{table.name}: a write inside a write on {self.path.name} in the same thread")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            held.add(self.path)
            try:
                self._ensure(db, table)
                yield db
                db.execute(
                    "INSERT INTO table_versions (name, version) VALUES (?, 1) "
                    "ON CONFLICT(name) DO UPDATE SET version = version + 1",
                    (table.name,),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
            finally:
                held.discard(self.path)

    @contextlib.contextmanager
    def read(self, table: Table) -> Iterator[sqlite3.Connection]:
        """A connection to read `table` (made and imported first, in a write transaction, if it is new). Where the
        database's folder does not exist there is nothing to read or import: an empty table in memory, and no
        folder made (a read never writes one, e.g. a mistyped --models-dir)."""
        if not self.path.parent.is_dir():
            empty = sqlite3.connect(":memory:")
            for statement in table.schema:
                empty.execute(statement)
            try:
                yield empty
            finally:
                empty.close()
            return
        with self._connect() as db:
            if not _exists(db, table.name):
                if self.path in _held():
                    raise NestedWrite(f"{table.name}: made new inside a write on {self.path.name} in the same thread")
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._ensure(db, table)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            yield db

    def version(self, table: Table) -> int:
        """How many writes `table` has had (0: none yet, or no database): changes whenever it does."""
        if not self.path.exists():
            return 0
        with self._connect() as db:
            if not _exists(db, "table_versions"):
                return 0
            row = db.execute("SELECT version FROM table_versions WHERE name = ?", (table.name,)).fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection to the database, opened on first use and kept: closing the last connection
        checkpoints the WAL and removes it, which made every write cost ~18 ms instead of ~1."""
        state = _thread()
        if state.get("pid") != os.getpid():  # a forked child must not use its parent's connections (SQLite's rule)
            state.clear()
            state["pid"] = os.getpid()
        connections = state.setdefault("connections", {})
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            inode = None
        kept = connections.get(self.path)
        if kept is None or kept[0] != inode or inode is None:  # new, or the file was replaced: open again
            if kept is not None:
                kept[1].close()
            db = self._open()
            connections[self.path] = kept = (self.path.stat().st_ino, db)
        try:
            yield kept[1]
        except sqlite3.DatabaseError:
            connections.pop(self.path, None)  # whatever went wrong, the next call starts afresh
            kept[1].close()
            raise

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.private and not self.path.exists():
            # made owner-only before SQLite opens it: its -wal and -shm files take the database file's mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        switch_to_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")  # in WAL: never corrupt; durable at the next checkpoint
        return db

    def _ensure(self, db: sqlite3.Connection, table: Table) -> None:
        """Inside a write transaction: create `table` and import its old files if it does not exist yet."""
        if _exists(db, table.name):
            return
        db.execute(_VERSIONS)
        for statement in table.schema:
            db.execute(statement)
        if table.importer is not None:
            table.importer(db, self.home)


def switch_to_wal(db: sqlite3.Connection, timeout_s: float = BUSY_TIMEOUT_S) -> None:
    """Set WAL on a database that is not in it yet (kept in the file: done once, by its first user).

    SQLite does not wait its busy timeout for this switch where two connections make it at once (it answers one
    of them "database is locked" at once rather than deadlock): several processes opening a new database together
    (a class's first sign-ins, two `core alias` calls, the prediction log's first writers) lost a write that way
    (CI: 1 of 64; 150 of 1,350 in the prediction log's test). So the switch is tried again, with a short sleep,
    until one of them has made it or `timeout_s` has passed. Every SQLite store in Flora opens through this."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if ("locked" not in str(error) and "busy" not in str(error)) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _thread() -> dict:
    """This thread's own: its connections, and the databases it is writing to now."""
    if not hasattr(_per_thread, "state"):
        _per_thread.state = {}
    return _per_thread.state


def _held() -> set[Path]:
    return _thread().setdefault("writing", set())


def _exists(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

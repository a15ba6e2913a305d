"""Aliases: stable names (`production`, `staging`) that point at runs and can move.

Stored with the run store, one row per alias in `models/shared.sqlite` (`core.shared_store`: a transaction per
change, so two writers never lose each other's change and a reader never sees half of one). A running server
polls the aliases' version (a counter bumped by every change) and swaps the model an alias points at without
dropping a request. Aliases kept before the store, in `models/aliases.json`, are imported the first time it is
opened.

A model name a client sends is resolved in this order: an alias, a full run id, a unique prefix.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.fileio import read_json
from core.runs.record import Run, RunNotFound
from core.runs.store import RunStore
from core.shared_store import SharedStore, Table

ALIASES_FILE = "aliases.json"  # in the run store: where aliases were kept before the shared store
PRODUCTION = "production"  # the alias clients are told to use, and what pickers default to
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_HEX = re.compile(r"^[0-9a-f]+$")


class AliasError(InvalidInput):
    """An alias name or target that cannot be used; the message says why."""


@dataclass(frozen=True)
class Resolved:
    """What a model name stands for: the run, and the alias it came through (None for an id)."""

    name: str
    run: Run
    alias: str | None = None


def check_alias_name(name: str) -> str:
    """Return `name` if it can be an alias, else raise AliasError saying why."""
    if not _NAME.match(name or ""):
        raise AliasError(
            f"an alias starts with a letter and has at most 40 letters, digits, '_', '-' or '.'. Received: {name!r}"
        )
    if _HEX.match(name):
        raise AliasError(f"alias {name!r} looks like a run id (only hex digits); choose a word such as 'production'")
    return name


def _import_file(db: sqlite3.Connection, models_root: Path) -> None:
    data = read_json(Path(models_root) / ALIASES_FILE, default={}) or {}
    for alias, entry in data.items() if isinstance(data, dict) else ():
        if isinstance(entry, dict) and entry.get("run_id"):
            db.execute(
                "INSERT OR IGNORE INTO aliases (alias, run_id, updated_at, previous) VALUES (?, ?, ?, ?)",
                (str(alias), str(entry["run_id"]), float(entry.get("updated_at") or 0), entry.get("previous")),
            )


ALIASES = Table(
    "aliases",
    ("CREATE TABLE aliases (alias TEXT PRIMARY KEY, run_id TEXT NOT NULL, updated_at REAL NOT NULL, previous TEXT)",),
    _import_file,
)


class AliasStore:
    """The aliases of one run store."""

    def __init__(self, models_root: str | os.PathLike):
        self.root = Path(models_root)
        self._store = SharedStore.of_models(self.root)

    def all(self) -> dict[str, dict[str, Any]]:
        """{alias: {"run_id", "updated_at", "previous"}}."""
        with self._store.read(ALIASES) as db:
            rows = db.execute("SELECT alias, run_id, updated_at, previous FROM aliases ORDER BY alias").fetchall()
        return {alias: {"run_id": run_id, "updated_at": at, "previous": prev} for alias, run_id, at, prev in rows}

    def get(self, alias: str) -> str | None:
        """The run id `alias` points at, or None."""
        with self._store.read(ALIASES) as db:
            row = db.execute("SELECT run_id FROM aliases WHERE alias = ?", (alias,)).fetchone()
        return row[0] if row else None

    def stamp(self) -> int:
        """Changes whenever an alias does (a cheap read for a server that polls it)."""
        return self._store.version(ALIASES)

    def set(self, alias: str, run_id: str) -> dict[str, Any]:
        """Point `alias` at `run_id` (a run with a saved model); return the new entry.

        Raises:
            AliasError: a bad name, or a run that has no model to serve.
            RunNotFound: no such run.
        """
        check_alias_name(alias)
        store = RunStore(self.root)
        run = store.find(run_id)
        if not run.has_model:
            raise AliasError(f"run {run.run_id} has no saved model (state {run.state}); an alias must point at one")
        with self._store.write(ALIASES) as db:
            row = db.execute("SELECT run_id FROM aliases WHERE alias = ?", (alias,)).fetchone()
            entry = {"run_id": run.run_id, "updated_at": time.time(), "previous": row[0] if row else None}
            db.execute(
                "INSERT INTO aliases (alias, run_id, updated_at, previous) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(alias) DO UPDATE SET run_id = excluded.run_id, updated_at = excluded.updated_at, "
                "previous = excluded.previous",
                (alias, entry["run_id"], entry["updated_at"], entry["previous"]),
            )
        return entry

    def remove(self, alias: str) -> bool:
        """Delete `alias`; False when there was none."""
        with self._store.write(ALIASES) as db:
            return db.execute("DELETE FROM aliases WHERE alias = ?", (alias,)).rowcount > 0


def resolve(store: RunStore, name: str) -> Resolved:
    """The run a model name stands for: an alias, a run id, or a unique prefix of one.

    Raises:
        RunNotFound: nothing by that name.
        KeyError: an ambiguous prefix.
    """
    name = str(name).strip()
    if not name:
        raise RunNotFound(name)
    run_id = AliasStore(store.root).get(name)
    if run_id is not None:
        return Resolved(name, store.get(run_id), alias=name)
    return Resolved(name, store.find(name))

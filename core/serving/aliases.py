"""Aliases: stable names (`production`, `staging`) that point at runs and can move.

Stored in the run store as `models/aliases.json`, written atomically under a file lock, so two
writers never lose each other's change and a reader never sees half a file. A running server
re-reads the file when it changes and swaps the model an alias points at without dropping a request.

A model name a client sends is resolved in this order: an alias, a full run id, a unique prefix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.fileio import read_json, write_json_atomic
from core.runs.record import Run, RunNotFound
from core.runs.store import RunStore

ALIASES_FILE = "aliases.json"
PRODUCTION = "production"  # the alias clients are told to use, and what pickers default to
_LOCK_FILE = ".aliases.lock"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_HEX = re.compile(r"^[0-9a-f]+$")


class AliasError(ValueError):
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


class AliasStore:
    """The aliases of one run store."""

    def __init__(self, models_root: str | os.PathLike):
        self.root = Path(models_root)
        self.path = self.root / ALIASES_FILE

    def all(self) -> dict[str, dict[str, Any]]:
        """{alias: {"run_id", "updated_at", "previous"}}."""
        data = read_json(self.path, default={}) or {}
        return {k: v for k, v in data.items() if isinstance(v, dict) and v.get("run_id")}

    def get(self, alias: str) -> str | None:
        """The run id `alias` points at, or None."""
        entry = self.all().get(alias)
        return entry["run_id"] if entry else None

    def stamp(self) -> float:
        """Changes whenever the file is rewritten (a cheap stat for a server that polls it)."""
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.all()
            yield data
            write_json_atomic(self.path, data)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

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
        with self._locked() as data:
            previous = data.get(alias, {}).get("run_id")
            entry = {"run_id": run.run_id, "updated_at": time.time(), "previous": previous}
            data[alias] = entry
        return entry

    def remove(self, alias: str) -> bool:
        """Delete `alias`; False when there was none."""
        with self._locked() as data:
            return data.pop(alias, None) is not None

    def aliases_of(self, run_id: str) -> list[str]:
        return sorted(alias for alias, entry in self.all().items() if entry["run_id"] == run_id)


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

"""Sign-in that resists guessing: wrong passphrases for a name, and wrong tokens or passphrases from one client,
first slow down and then lock, until the lock cools down or an admin unlocks it.

A name: the first FREE_TRIES wrong passphrases cost nothing, each one after must wait twice as long as the
last (2 s, 4 s, ... at most a minute), and the LOCK_AFTER-th locks the name for LOCK_MINUTES, its right
passphrase included. A client (its address) gets more room, because a classroom behind one router shares
one. The counts live in SQLite (`<data>/.flora/sign-in.sqlite`), so every app thread and a restart agree.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass

from core.paths import flora_dir
from core.sharing.people import name_key

DATABASE = "sign-in.sqlite"
LOCK_MINUTES = 15
MAX_WAIT_S = 60
FORGET_AFTER_S = 3600  # failures older than this (and no lock) are forgotten


@dataclass(frozen=True)
class Rule:
    free_tries: int
    lock_after: int


NAME_RULE = Rule(free_tries=3, lock_after=10)
CLIENT_RULE = Rule(free_tries=10, lock_after=30)


class SignInPaused(RuntimeError):
    """A name or client that must wait, or is locked; the message says which, for how long, and who can unlock."""


def name_key_of(name: str) -> str:
    return f"name:{name_key(name)}"


def client_key_of(address: str | None) -> str:
    return f"client:{address or 'unknown'}"


def _rule(key: str) -> Rule:
    return NAME_RULE if key.startswith("name:") else CLIENT_RULE


def _connect(data_root) -> sqlite3.Connection:
    path = flora_dir(data_root) / DATABASE
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")  # readers beside the writer, as in core.shared_store
    db.execute(
        "CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, label TEXT, count INTEGER NOT NULL, "
        "last_at REAL NOT NULL, locked_until REAL NOT NULL DEFAULT 0)"
    )
    return db


def check(data_root, key: str, label: str, now: float | None = None) -> None:
    """Raise SignInPaused when `key` may not try now (waiting after failures, or locked)."""
    now = time.time() if now is None else now
    with closing(_connect(data_root)) as db:
        row = db.execute("SELECT count, last_at, locked_until FROM failures WHERE key = ?", (key,)).fetchone()
    if row is None:
        return
    count, last_at, locked_until = row
    if locked_until > now:
        minutes = max(1, round((locked_until - now) / 60))
        raise SignInPaused(
            f"{_sentence(label)} is locked after {count} failed sign-ins: try again in about {minutes} min, or ask "
            "an admin to unlock it (the Class page)."
        )
    wait = _wait_after(count, _rule(key))
    if last_at + wait > now:
        raise SignInPaused(
            f"Too many failed sign-ins for {label}: wait {int(last_at + wait - now) + 1} s and try again."
        )


def failed(data_root, key: str, label: str, now: float | None = None) -> str:
    """Count one failure for `key`; returns what the page says about what comes next."""
    now = time.time() if now is None else now
    rule = _rule(key)
    with closing(_connect(data_root)) as db:
        db.execute("BEGIN IMMEDIATE")  # the count read and written in one transaction: no failure goes uncounted
        row = db.execute("SELECT count, last_at, locked_until FROM failures WHERE key = ?", (key,)).fetchone()
        # a cooled-down lock, or failures over an hour old, start afresh
        fresh = row is None or (row[2] and row[2] <= now) or now - row[1] > FORGET_AFTER_S
        count = 1 if fresh else row[0] + 1
        locked_until = now + LOCK_MINUTES * 60 if count >= rule.lock_after else 0.0
        db.execute(
            "INSERT INTO failures (key, label, count, last_at, locked_until) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET label = excluded.label, count = excluded.count, "
            "last_at = excluded.last_at, locked_until = excluded.locked_until",
            (key, label, count, now, locked_until),
        )
        db.execute("COMMIT")
    if locked_until:
        return _sentence(
            f"{label} is now locked for {LOCK_MINUTES} min after {count} failed sign-ins (an admin can unlock it)."
        )
    left = rule.lock_after - count
    if count >= rule.free_tries:
        tries = "failed sign-in locks" if left == 1 else "more failed sign-ins lock"
        return f"{left} {tries} {label} for {LOCK_MINUTES} min; each try now waits longer."
    return ""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def succeeded(data_root, key: str) -> None:
    """A right sign-in clears the name's (or client's) count."""
    with closing(_connect(data_root)) as db:
        db.execute("DELETE FROM failures WHERE key = ?", (key,))


def unlock(data_root, key: str) -> bool:
    """An admin frees a name or client at once; True when there was something to free."""
    with closing(_connect(data_root)) as db:
        return db.execute("DELETE FROM failures WHERE key = ?", (key,)).rowcount > 0


def troubled(data_root, now: float | None = None) -> list[dict]:
    """Names and clients with failed sign-ins, the locked first: key, label, failures, locked_until (0: not)."""
    now = time.time() if now is None else now
    with closing(_connect(data_root)) as db:
        rows = db.execute("SELECT key, label, count, last_at, locked_until FROM failures").fetchall()
    found = [
        {"key": k, "label": label, "failures": count, "last_at": last, "locked_until": until if until > now else 0.0}
        for k, label, count, last, until in rows
    ]
    return sorted(found, key=lambda row: (-row["locked_until"], -row["failures"]))


def _wait_after(count: int, rule: Rule) -> float:
    if count < rule.free_tries:
        return 0.0
    return float(min(MAX_WAIT_S, 2 ** (count - rule.free_tries + 1)))

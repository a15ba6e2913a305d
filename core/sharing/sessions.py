"""Token sign-in sessions: a random id the page keeps in a cookie (never in the link people copy or project),
valid for SESSION_HOURS, closed by signing out here or everywhere, and listed for the instructor's view.

One row per session and one per person's last visit in the data folder's shared store (`core.shared_store`),
so a class signing in at once keeps every session."""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path

from core.fileio import read_json
from core.paths import flora_dir
from core.shared_store import SharedStore, Table
from core.sharing import User

SESSIONS_FILE = "sessions.json"  # where sessions were kept before the shared store (imported once)
PRESENCE_FILE = "presence.json"  # {name: last seen}, likewise
ACTIVE_MINUTES = 15  # seen this recently: "active" in the instructor's view
SESSION_HOURS = 12
SEEN_EVERY_S = 60  # how often a session's "last seen" is written (each page draw would be too often)
_COLUMNS = ("name", "admin", "expires", "started", "seen")


def _import_sessions(db: sqlite3.Connection, data_root: Path) -> None:
    raw = read_json(flora_dir(data_root) / SESSIONS_FILE, default={}) or {}
    for session_id, entry in raw.items() if isinstance(raw, dict) else ():
        if isinstance(entry, dict) and entry.get("name"):
            started = float(entry.get("started", 0))
            db.execute(
                "INSERT OR IGNORE INTO sessions (id, name, admin, expires, started, seen) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    str(session_id),
                    str(entry["name"]),
                    int(bool(entry.get("admin"))),
                    float(entry.get("expires", 0)),
                    started,
                    float(entry.get("seen", started)),
                ),
            )


def _import_presence(db: sqlite3.Connection, data_root: Path) -> None:
    raw = read_json(flora_dir(data_root) / PRESENCE_FILE, default={}) or {}
    for name, seen in raw.items() if isinstance(raw, dict) else ():
        if isinstance(seen, (int, float)):
            db.execute("INSERT OR IGNORE INTO presence (name, seen) VALUES (?, ?)", (str(name), float(seen)))


SESSIONS = Table(
    "sessions",
    (
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT NOT NULL, admin INTEGER NOT NULL, "
        "expires REAL NOT NULL, started REAL NOT NULL, seen REAL NOT NULL)",
        "CREATE INDEX sessions_name ON sessions (name)",
    ),
    _import_sessions,
)
PRESENCE = Table("presence", ("CREATE TABLE presence (name TEXT PRIMARY KEY, seen REAL NOT NULL)",), _import_presence)


def open_session(data_root, name: str, admin: bool, now: float | None = None) -> str:
    """A new session id for `name` (the page keeps it in a cookie, so a reload stays signed in)."""
    now = time.time() if now is None else now
    session_id = secrets.token_urlsafe(24)
    with SharedStore.of_data(data_root).write(SESSIONS) as db:
        db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        db.execute(
            "INSERT INTO sessions (id, name, admin, expires, started, seen) VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, name, int(bool(admin)), now + SESSION_HOURS * 3600, now, now),
        )
    return session_id


def session_user(data_root, session_id: str | None, now: float | None = None) -> User | None:
    """The user of a live session id, or None (unknown, expired or signed out); notes when it was last seen."""
    if not session_id:
        return None
    now = time.time() if now is None else now
    store = SharedStore.of_data(data_root)
    with store.read(SESSIONS) as db:
        row = db.execute(
            "SELECT name, admin, seen FROM sessions WHERE id = ? AND expires > ?", (str(session_id), now)
        ).fetchone()
    if row is None:
        return None
    name, admin, seen = row
    if now - float(seen) > SEEN_EVERY_S:
        with store.write(SESSIONS) as db:
            db.execute("UPDATE sessions SET seen = ? WHERE id = ? AND seen < ?", (now, str(session_id), now))
    return User(str(name), str(name), admin=bool(admin), how="token")


def close_session(data_root, session_id: str | None) -> None:
    with SharedStore.of_data(data_root).write(SESSIONS) as db:
        db.execute("DELETE FROM sessions WHERE id = ?", (str(session_id),))


def close_sessions_of(data_root, name: str) -> int:
    """Sign `name` out everywhere (every browser, every computer); returns how many sessions ended."""
    with SharedStore.of_data(data_root).write(SESSIONS) as db:
        return db.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount


def active_people(data_root, now: float | None = None) -> list[dict]:
    """Who is signed in (live sessions), one row per name: sessions, admin, first sign-in and last seen."""
    now = time.time() if now is None else now
    with SharedStore.of_data(data_root).read(SESSIONS) as db:
        rows = db.execute(
            "SELECT name, MAX(admin), COUNT(*), MIN(started), MAX(seen) FROM sessions WHERE expires > ? GROUP BY name",
            (now,),
        ).fetchall()
    people = [
        {"name": name, "admin": bool(admin), "sessions": count, "started": float(started), "seen": float(seen)}
        for name, admin, count, started, seen in rows
    ]
    return sorted(people, key=lambda row: -row["seen"])


def note_presence(data_root, name: str, now: float | None = None) -> None:
    """Record that `name` used a page now (the app calls it at most once a minute per browser)."""
    now = time.time() if now is None else now
    with SharedStore.of_data(data_root).write(PRESENCE) as db:
        db.execute(
            "INSERT INTO presence (name, seen) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seen = MAX(seen, ?)",
            (name, now, now),
        )


def last_seen(data_root) -> dict[str, float]:
    """When each person last used a page (names never seen are absent)."""
    with SharedStore.of_data(data_root).read(PRESENCE) as db:
        return {str(name): float(seen) for name, seen in db.execute("SELECT name, seen FROM presence")}


def forget_presence(data_root, name: str) -> None:
    """Forget when `name` was last seen (a removed name leaves the Class page's list unless it owns runs)."""
    with SharedStore.of_data(data_root).write(PRESENCE) as db:
        db.execute("DELETE FROM presence WHERE name = ?", (name,))

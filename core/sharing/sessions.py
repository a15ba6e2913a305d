"""Token sign-in sessions: a random id the page keeps in a cookie (never in the link people copy or project),
valid for SESSION_HOURS, closed by signing out here or everywhere, and listed for the instructor's view."""

from __future__ import annotations

import json
import os
import secrets
import time

from core.fileio import read_json, write_bytes_atomic
from core.paths import flora_dir
from core.sharing import User

SESSIONS_FILE = "sessions.json"
PRESENCE_FILE = "presence.json"  # {name: last seen}: every signed-in person, token or identity provider
ACTIVE_MINUTES = 15  # seen this recently: "active" in the instructor's view
SESSION_HOURS = 12
SEEN_EVERY_S = 60  # how often a session's "last seen" is written (each page draw would be too often)


def _path(data_root):
    return flora_dir(data_root) / SESSIONS_FILE


def _live(data_root, now: float) -> dict:
    raw = read_json(_path(data_root), default={}) or {}
    return {k: v for k, v in raw.items() if isinstance(v, dict) and v.get("expires", 0) > now}


def _save(data_root, sessions: dict) -> None:
    path = _path(data_root)
    write_bytes_atomic(path, json.dumps(sessions, indent=2, ensure_ascii=False).encode())
    os.chmod(path, 0o600)


def open_session(data_root, name: str, admin: bool, now: float | None = None) -> str:
    """A new session id for `name` (the page keeps it in a cookie, so a reload stays signed in)."""
    now = time.time() if now is None else now
    sessions = _live(data_root, now)
    session_id = secrets.token_urlsafe(24)
    sessions[session_id] = {
        "name": name,
        "admin": bool(admin),
        "expires": now + SESSION_HOURS * 3600,
        "started": now,
        "seen": now,
    }
    _save(data_root, sessions)
    return session_id


def session_user(data_root, session_id: str | None, now: float | None = None) -> User | None:
    """The user of a live session id, or None (unknown, expired or signed out); notes when it was last seen."""
    if not session_id:
        return None
    now = time.time() if now is None else now
    sessions = _live(data_root, now)
    entry = sessions.get(str(session_id))
    if entry is None:
        return None
    if now - float(entry.get("seen", 0)) > SEEN_EVERY_S:
        entry["seen"] = now
        _save(data_root, sessions)
    return User(str(entry["name"]), str(entry["name"]), admin=bool(entry.get("admin")), how="token")


def close_session(data_root, session_id: str | None) -> None:
    sessions = read_json(_path(data_root), default={}) or {}
    if sessions.pop(str(session_id), None) is not None:
        _save(data_root, sessions)


def close_sessions_of(data_root, name: str) -> int:
    """Sign `name` out everywhere (every browser, every computer); returns how many sessions ended."""
    sessions = read_json(_path(data_root), default={}) or {}
    kept = {k: v for k, v in sessions.items() if not (isinstance(v, dict) and v.get("name") == name)}
    if len(kept) != len(sessions):
        _save(data_root, kept)
    return len(sessions) - len(kept)


def active_people(data_root, now: float | None = None) -> list[dict]:
    """Who is signed in (live sessions), one row per name: sessions, admin, first sign-in and last seen."""
    now = time.time() if now is None else now
    people: dict[str, dict] = {}
    for entry in _live(data_root, now).values():
        row = people.setdefault(
            entry["name"], {"name": entry["name"], "admin": False, "sessions": 0, "started": now, "seen": 0.0}
        )
        row["sessions"] += 1
        row["admin"] = row["admin"] or bool(entry.get("admin"))
        row["started"] = min(row["started"], float(entry.get("started", now)))
        row["seen"] = max(row["seen"], float(entry.get("seen", entry.get("started", 0))))
    return sorted(people.values(), key=lambda row: -row["seen"])


def note_presence(data_root, name: str, now: float | None = None) -> None:
    """Record that `name` used a page now (the app calls it at most once a minute per browser)."""
    now = time.time() if now is None else now
    path = flora_dir(data_root) / PRESENCE_FILE
    seen = read_json(path, default={}) or {}
    seen[name] = now
    write_bytes_atomic(path, json.dumps(seen, indent=2, ensure_ascii=False).encode())


def last_seen(data_root) -> dict[str, float]:
    """When each person last used a page (names never seen are absent)."""
    seen = read_json(flora_dir(data_root) / PRESENCE_FILE, default={}) or {}
    return {str(k): float(v) for k, v in seen.items() if isinstance(v, (int, float))}

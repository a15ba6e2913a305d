"""Sign-in that resists guessing without letting one person lock another out: wrong tokens and passphrases slow
down and then lock, counted so that a classmate's tries never make you wait.

Each try comes from a client (core.sharing.clients): the address counted (X-Forwarded-For believed only from a
configured proxy) and a browser id kept in a cookie. Failures count under several keys:

  name in a browser     `name:<key>|browser:<id>`  NAME_RULE: the first FREE_TRIES cost nothing, each one after
                        waits twice as long as the last (2 s, 4 s, ... at most a minute), the LOCK_AFTER-th
                        locks it for LOCK_MINUTES, right passphrase included
  name, new browsers    `name:<key>|new`           every browser that never signed in as that name, together:
                        NEW_BROWSERS_RULE, roomier; checked only from such browsers, so whoever guesses a
                        classmate's passphrase (clearing cookies or not) never locks the classmate's own browser
  a browser             `client:<address>|browser:<id>`  wrong tokens and passphrases: CLIENT_RULE
  an address            `client:<address>`         browsers that never signed in and began failing, each counted
                        once (one browser's own tries are its own key's): ADDRESS_RULE, generous (a classroom
                        behind one router or proxy shares it); it holds back only what clears its cookie at
                        every try, and a browser that has signed in here before is not held by it

A right sign-in clears its browser's counts and remembers the browser for that name. The counts live in SQLite
(`<data>/.flora/sign-in.sqlite`, each change in one transaction), so every app thread, process and a restart agree.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass

from core.errors import Busy
from core.paths import flora_dir
from core.shared_store import switch_to_wal
from core.sharing.people import name_key

DATABASE = "sign-in.sqlite"
LOCK_MINUTES = 15
MAX_WAIT_S = 60
FORGET_AFTER_S = 3600  # failures older than this (and no lock) are forgotten


@dataclass(frozen=True)
class Rule:
    free_tries: int
    lock_after: int


NAME_RULE = Rule(free_tries=3, lock_after=10)  # one name from one browser
NEW_BROWSERS_RULE = Rule(free_tries=10, lock_after=50)  # one name from every browser new to it, together
CLIENT_RULE = Rule(free_tries=10, lock_after=30)  # one browser
ADDRESS_RULE = Rule(free_tries=60, lock_after=200)  # browsers new here that began failing at one address


class SignInPaused(Busy):
    """A name or client that must wait, or is locked; the message says which, for how long, and who can unlock."""


@dataclass(frozen=True)
class Client:
    """Who tries: the address counted (core.sharing.clients.client_address) and the browser's id (its cookie)."""

    address: str
    browser: str

    @property
    def browser_key(self) -> str:
        return f"client:{self.address}|browser:{self.browser}"

    @property
    def address_key(self) -> str:
        return f"client:{self.address}"

    @property
    def browser_label(self) -> str:
        return f"a browser at {self.address} (…{self.browser[-4:]})"

    @property
    def address_label(self) -> str:
        return f"browsers new to this Flora at {self.address}"  # counted once each, as they begin to fail


def name_key_of(name: str, browser: str | None = None) -> str:
    """The key of `name` tried from `browser`, or from browsers new to it (None)."""
    return f"name:{name_key(name)}|" + (f"browser:{browser}" if browser else "new")


def _rule(key: str) -> Rule:
    if key.startswith("name:"):
        return NEW_BROWSERS_RULE if key.endswith("|new") else NAME_RULE
    return CLIENT_RULE if "|browser:" in key else ADDRESS_RULE


def _connect(data_root) -> sqlite3.Connection:
    path = flora_dir(data_root) / DATABASE
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    switch_to_wal(db, timeout_s=10)  # readers beside the writer, as in core.shared_store
    db.execute(
        "CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, label TEXT, count INTEGER NOT NULL, "
        "last_at REAL NOT NULL, locked_until REAL NOT NULL DEFAULT 0)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS browsers (browser TEXT NOT NULL, name TEXT NOT NULL, signed_in_at REAL NOT NULL, "
        "PRIMARY KEY (browser, name))"
    )
    return db


# ----------------------------------------------------------------------------- one sign-in, every key it counts under


def check_sign_in(data_root, client: Client, name: str | None, now: float | None = None) -> None:
    """Raise SignInPaused when this browser (or, for a browser new here, its address; for a browser new to `name`,
    the name's new browsers) must wait or is locked. `name`: as registered (the page looks it up), so the message
    names the person as they wrote it, not the spelling just typed."""
    known_here, known_for_name = _known(data_root, client.browser, name)
    check(data_root, client.browser_key, "this browser", now, words=_browser_words)
    if not known_here:
        check(data_root, client.address_key, client.address_label, now, words=_address_words(client.address))
    if name:
        check(data_root, name_key_of(name, client.browser), f"“{name}” in this browser", now, words=_name_words(name))
        if not known_for_name:
            check(data_root, name_key_of(name), _new_label(name), now, words=_new_browsers_words(name))


def _new_label(name: str) -> str:
    return f"the name “{name}” from browsers it has not signed in from"


def failed_token(data_root, client: Client, now: float | None = None) -> str:
    """Count a wrong access token; returns what the page says about what comes next."""
    _count_new_browser(data_root, client, now)
    return failed(data_root, client.browser_key, client.browser_label, now, shown="this browser")


def failed_passphrase(data_root, client: Client, name: str, now: float | None = None) -> str:
    """Count a wrong passphrase for a claimed name (`name` as registered); returns what the page says about what
    comes next (the lock it counts towards is this browser's: other browsers that signed in as the name are never
    held back by it)."""
    _, known_for_name = _known(data_root, client.browser, name)
    _count_new_browser(data_root, client, now)
    failed(data_root, client.browser_key, client.browser_label, now)
    if not known_for_name:
        failed(data_root, name_key_of(name), _new_label(name), now)
    key = name_key_of(name, client.browser)
    return failed(
        data_root, key, f"the name “{name}” in {client.browser_label}", now, shown=f"“{name}” in this browser"
    )


# What a paused or locked sign-in says, by what holds it: (while waiting, seconds) and (while locked, minutes, count).
_UNLOCK = "or ask an admin to unlock it (the Class page)"


def _browser_words(wait: int | None, minutes: int | None, count: int) -> str:
    if minutes is not None:
        return f"This browser is locked after {count} failed sign-ins: try again in about {minutes} min, {_UNLOCK}."
    return f"Too many failed sign-ins from this browser: wait {wait} s and try again."


def _name_words(name: str):
    def words(wait: int | None, minutes: int | None, count: int) -> str:
        if minutes is not None:
            return (
                f"“{name}” is locked in this browser after {count} wrong passphrases: try again in about {minutes} "
                f"min, {_UNLOCK}. A browser that has signed in as {name} before is not held back."
            )
        return f"Too many wrong passphrases for “{name}” in this browser: wait {wait} s and try again."

    return words


def _new_browsers_words(name: str):
    def words(wait: int | None, minutes: int | None, count: int) -> str:
        why = (
            f"Someone has given {count} wrong passphrases for “{name}” from browsers that never signed in as that "
            "name, so every such browser, this one included,"
        )
        if minutes is not None:
            held = f"is locked out of “{name}” for about {minutes} min"
        else:
            held = f"waits {wait} s before trying it"
        return (
            f"{why} {held}. A browser that has signed in as {name} before is not held back: use one of those, wait, "
            f"{_UNLOCK}."
        )

    return words


def _address_words(address: str):
    def words(wait: int | None, minutes: int | None, count: int) -> str:
        held = f"are locked for about {minutes} min" if minutes is not None else f"wait {wait} s before each try"
        return (
            f"{count} browsers new to this Flora began failing to sign in from this address ({address}; a classroom "
            f"behind one router shares it), so new browsers here {held}. A browser that has signed in here before "
            f"is not held back: use one of those, wait, {_UNLOCK}."
        )

    return words


def signed_in(data_root, client: Client, name: str, now: float | None = None) -> None:
    """A right sign-in: this browser's counts are cleared and it is remembered for `name` (and as known here)."""
    now = time.time() if now is None else now
    with closing(_connect(data_root)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM failures WHERE key IN (?, ?)", (client.browser_key, name_key_of(name, client.browser)))
        db.execute(
            "INSERT INTO browsers (browser, name, signed_in_at) VALUES (?, ?, ?) "
            "ON CONFLICT(browser, name) DO UPDATE SET signed_in_at = excluded.signed_in_at",
            (client.browser, name_key(name), now),
        )
        db.execute("COMMIT")


def _count_new_browser(data_root, client: Client, now: float | None) -> None:
    """A browser that never signed in here and fails for the first time counts once for its address."""
    if _known(data_root, client.browser, None)[0]:
        return
    with closing(_connect(data_root)) as db:
        begun = db.execute("SELECT 1 FROM failures WHERE key = ?", (client.browser_key,)).fetchone()
    if not begun:
        failed(data_root, client.address_key, client.address_label, now)


def _known(data_root, browser: str, name: str | None) -> tuple[bool, bool]:
    """(signed in here before as anyone, signed in before as `name`) from this browser."""
    with closing(_connect(data_root)) as db:
        rows = {row[0] for row in db.execute("SELECT name FROM browsers WHERE browser = ?", (browser,))}
    return bool(rows), bool(name) and name_key(name) in rows


# ----------------------------------------------------------------------------- one key


def check(data_root, key: str, label: str, now: float | None = None, words=None) -> None:
    """Raise SignInPaused when `key` may not try now (waiting after failures, or locked). `words(wait_s, lock_min,
    count)`: what the message says (default: a sentence naming `label`)."""
    now = time.time() if now is None else now
    with closing(_connect(data_root)) as db:
        row = db.execute("SELECT count, last_at, locked_until FROM failures WHERE key = ?", (key,)).fetchone()
    if row is None:
        return
    count, last_at, locked_until = row
    if locked_until > now:
        minutes = max(1, round((locked_until - now) / 60))
        if words is not None:
            raise SignInPaused(words(None, minutes, count))
        raise SignInPaused(
            f"{_sentence(label)} is locked after {count} failed sign-ins: try again in about {minutes} min, {_UNLOCK}."
        )
    wait = _wait_after(count, _rule(key))
    if last_at + wait > now:
        seconds = int(last_at + wait - now) + 1
        if words is not None:
            raise SignInPaused(words(seconds, None, count))
        raise SignInPaused(f"Too many failed sign-ins for {label}: wait {seconds} s and try again.")


def failed(data_root, key: str, label: str, now: float | None = None, shown: str | None = None) -> str:
    """Count one failure for `key` (`label`: what the Class page calls it); returns what the page says about what
    comes next, naming it `shown` (default: the label)."""
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
    shown = shown or label
    if locked_until:
        return _sentence(
            f"{shown} is now locked for {LOCK_MINUTES} min after {count} failed sign-ins (an admin can unlock it)."
        )
    left = rule.lock_after - count
    if count >= rule.free_tries:
        tries = "failed sign-in locks" if left == 1 else "more failed sign-ins lock"
        return f"{left} {tries} {shown} for {LOCK_MINUTES} min; each try now waits longer."
    return ""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def succeeded(data_root, key: str) -> None:
    """A right sign-in clears the key's count."""
    with closing(_connect(data_root)) as db:
        db.execute("DELETE FROM failures WHERE key = ?", (key,))


def forget_name(data_root, name: str) -> int:
    """Forget every count kept for `name` (in each browser, and from new browsers) and the browsers remembered for it:
    after an admin resets or removes it, whoever signs in with it next starts clean. Returns the counts forgotten."""
    key = name_key(name)
    with closing(_connect(data_root)) as db:
        db.execute("BEGIN IMMEDIATE")
        forgotten = db.execute(
            "DELETE FROM failures WHERE key = ? OR substr(key, 1, ?) = ?",
            (name_key_of(name), len(f"name:{key}|browser:"), f"name:{key}|browser:"),
        ).rowcount
        db.execute("DELETE FROM browsers WHERE name = ?", (key,))
        db.execute("COMMIT")
    return forgotten


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

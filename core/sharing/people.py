"""Who may take a name on a token-shared Flora: a name is an identity, never just what someone typed.

With the class's access token each person gives a name and a passphrase; the first to use a name sets its
passphrase (`claim_name`). Some names are nobody's to claim there, because they already own work made
outside this sign-in: "local" (every run made before Flora was shared), this server's own user (every
`python -m core train` run, "root" on many servers), OpenID Connect identities (e-mails, subjects) and any
other owner of runs or sweeps that no token sign-in made. Names are compared by their Unicode skeleton
(UTS #39 confusables, NFKC, case folded), so "аlice" with a Cyrillic а is "alice", and the message says why
a name is taken.
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
import sqlite3
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from core.errors import Conflict, InvalidInput
from core.fileio import read_json
from core.paths import flora_dir
from core.shared_store import SharedStore, Table
from core.sharing import LOCAL_USER

PEOPLE_FILE = "people.json"  # where people were kept before the shared store (imported once)
MIN_PASSPHRASE = 4
SERVER_ACCOUNTS = ("root",)  # besides this process's own user: the usual owner of command-line runs
ROLE_NAMES = ("admin", "administrator")  # a student named "admin" would read as the one who runs the class


# Characters that show as nothing, or as a blank, beside a name's letters: Hangul fillers, the blank Braille
# pattern, variation selectors, the grapheme joiner, Khmer's inherent vowels, Mongolian's selectors, the null
# notehead. With every format character (Cf: zero-width spaces and joiners, tags, bidi marks), control, private-use
# and unassigned one, a name holding one is refused: "alice" + U+2800 would read as a second "alice".
_BLANKS = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0, 0x1D159})
_BLANK_RANGES = ((0x180B, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
_UNSEEN_CATEGORIES = ("Cc", "Cf", "Co", "Cs", "Cn")


def invisible(char: str) -> bool:
    """True for a character that does not show as itself in a name (a filler, a blank, a selector, a format mark)."""
    code = ord(char)
    return (
        unicodedata.category(char) in _UNSEEN_CATEGORIES
        or code in _BLANKS
        or any(low <= code <= high for low, high in _BLANK_RANGES)
    )


class NameTaken(Conflict, ValueError):
    """A name that is someone's (or nobody's to take); the message says why and what to do."""


@lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """The form two names are compared in: spaces collapsed, NFKC, look-alike letters mapped to their Latin
    prototype (Unicode's confusables), case folded. "Alice", "ALICE", "аlice" (Cyrillic а) and "Ａlice" agree."""
    from confusable_homoglyphs import confusables  # the Unicode confusables table, loaded on first use

    text = unicodedata.normalize("NFKC", " ".join(name.split()))
    mapped = []
    for char in text:
        found = confusables.is_confusable(char, preferred_aliases=["latin"], greedy=False) if not char.isascii() else 0
        mapped.append(found[0]["homoglyphs"][0]["c"] if found else char)
    return unicodedata.normalize("NFKC", "".join(mapped)).casefold()


def server_users() -> set[str]:
    """The OS accounts whose runs the command line records: this process's user and the usual server ones."""
    try:
        me = getpass.getuser()
    except (KeyError, OSError):
        me = ""
    return {name for name in (me, *SERVER_ACCOUNTS) if name}


def _import_people(db: sqlite3.Connection, data_root: Path) -> None:
    raw = read_json(flora_dir(data_root) / PEOPLE_FILE, default={}) or {}
    for key, entry in raw.items() if isinstance(raw, dict) else ():
        if isinstance(entry, dict):
            name = str(entry.get("name", key))
            db.execute(
                "INSERT OR IGNORE INTO people (key, name, how, salt, hash) VALUES (?, ?, ?, ?, ?)",
                (name_key(name), name, entry.get("how") or "token", entry.get("salt"), entry.get("hash")),
            )


# each token name's passphrase (scrypt) and each OpenID Connect identity seen, one row each, keyed by name_key
PEOPLE = Table(
    "people",
    ("CREATE TABLE people (key TEXT PRIMARY KEY, name TEXT NOT NULL, how TEXT NOT NULL, salt TEXT, hash TEXT)",),
    _import_people,
)


def _load(data_root) -> dict:
    """Everyone known, by name_key: {"name", "how", "salt"?, "hash"?}."""
    with SharedStore.of_data(data_root).read(PEOPLE) as db:
        rows = db.execute("SELECT key, name, how, salt, hash FROM people").fetchall()
    return {key: _entry(name, how, salt, hash_) for key, name, how, salt, hash_ in rows}


def _entry(name: str, how: str, salt: str | None, hash_: str | None) -> dict:
    entry = {"name": name, "how": how}
    if hash_:
        entry.update(salt=salt, hash=hash_)
    return entry


def _find(data_root, key: str) -> dict | None:
    with SharedStore.of_data(data_root).read(PEOPLE) as db:
        row = db.execute("SELECT name, how, salt, hash FROM people WHERE key = ?", (key,)).fetchone()
    return _entry(*row) if row else None


def token_names(data_root) -> set[str]:
    """The names people have claimed with the access token (as first written)."""
    return {str(entry["name"]) for entry in _load(data_root).values() if entry.get("hash")}


def remember_identity(data_root, identity: str) -> None:
    """Record an OpenID Connect identity (e-mail or subject) that signed in: nobody can claim it as a name later,
    even before it owns a run."""
    with SharedStore.of_data(data_root).write(PEOPLE) as db:
        db.execute(
            "INSERT OR IGNORE INTO people (key, name, how) VALUES (?, ?, 'oidc')", (name_key(identity), identity)
        )


def why_reserved(name: str, data_root, owners: Iterable[str] = ()) -> str | None:
    """Why `name` cannot be claimed with the token, or None: it owns work made outside this sign-in."""
    if any(invisible(char) for char in name):
        return (
            "it holds invisible characters (a zero-width space, or a blank such as U+3164 or U+2800, makes a copy of "
            "someone's name look the same)"
        )
    key = name_key(name)
    if key in {name_key(role) for role in ROLE_NAMES}:
        return "it reads as the role of whoever runs this Flora; admins sign in with their own token"
    if key == name_key(LOCAL_USER):
        return f"“{LOCAL_USER}” owns every run made on this Flora before it was shared"
    if key in {name_key(user) for user in server_users()}:
        return "that is this server's own account, which owns the runs started from the command line"
    if "@" in name:
        return "names with an @ are e-mail addresses, which belong to sign-ins through an identity provider"
    entry = _find(data_root, key)
    if entry and entry.get("how") == "oidc":
        return "that is the identity of someone who signed in through the identity provider"
    for owner in owners:
        if name_key(owner) == key and not (entry and entry.get("hash")):
            return f"“{owner}” owns runs made outside this sign-in (the command line, or an identity provider)"
    return None


def claim_name(data_root, name: str, passphrase: str, owners: Iterable[str] = ()) -> str:
    """Sign in as `name` with `passphrase`: the first person to use a name sets its passphrase, later sign-ins
    must give it. `owners`: everyone who owns runs or sweeps (those no token sign-in made are not claimable).
    Returns the name as first written.

    Raises:
        NameTaken: the name is reserved, someone else's, or looks the same as someone else's;
        ValueError: a passphrase too short.
    """
    name = " ".join(name.split())
    reason = why_reserved(name, data_root, owners)
    if reason:
        raise NameTaken(f"You cannot sign in as “{name}”: {reason}. Choose another name.")
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput(f"choose a passphrase of at least {MIN_PASSPHRASE} characters (you will need it next time)")
    key = name_key(name)
    entry = _find(data_root, key)
    if entry is None:
        # hashed before the transaction (scrypt takes ~50 ms: a class signing in must not queue behind it); the
        # row goes in only if the name is still free, in one statement, so one first passphrase wins
        salt = secrets.token_bytes(16)
        hashed = _hash(passphrase, salt)
        with SharedStore.of_data(data_root).write(PEOPLE) as db:
            taken = db.execute(
                "INSERT OR IGNORE INTO people (key, name, how, salt, hash) VALUES (?, ?, 'token', ?, ?)",
                (key, name, salt.hex(), hashed),
            )
            if taken.rowcount == 1:
                return name
        entry = _find(data_root, key)  # claimed in between: whoever did set its passphrase
    if not entry.get("hash"):  # an identity provider's, recorded in between
        raise NameTaken(f"You cannot sign in as “{name}”: someone signed in through the identity provider as it.")
    given = _hash(passphrase, bytes.fromhex(entry["salt"]))
    if not secrets.compare_digest(given, entry["hash"]):
        same = "" if entry["name"] == name else f" (“{name}” reads the same as “{entry['name']}”)"
        raise NameTaken(
            f"{entry['name']} has signed in here before with another passphrase{same}. If that is you, use "
            "your passphrase; if not, choose another name."
        )
    return str(entry["name"])


def _hash(passphrase: str, salt: bytes) -> str:
    return hashlib.scrypt(passphrase.encode(), salt=salt, n=2**14, r=8, p=1).hex()


def layer_of(owner: str | None) -> str:
    """Whose work `owner` is: the person at this machine ("local", this server's account and "root", who share
    the app that is not shared and the command line) is one; everyone else is themselves."""
    if not owner or owner == LOCAL_USER or owner in server_users():
        return LOCAL_USER
    return owner


def same_person(a: str | None, b: str | None) -> bool:
    return layer_of(a) == layer_of(b)

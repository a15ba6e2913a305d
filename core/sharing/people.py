"""Who may take a name on a token-shared Flora: a name is an identity, never just what someone typed.

With the class's access token each person gives a name and a passphrase; the first to use a name sets its
passphrase (`claim_name`). Some names are nobody's to claim there, because they already own work made
outside this sign-in: "local" (every run made before Flora was shared), this server's own user (every
`python -m core train` run, "root" on many servers), OpenID Connect identities (e-mails, subjects) and any
other owner of runs or sweeps that no token sign-in made. Names are compared by their Unicode skeleton
(UTS #39 confusables, NFKC, accents and other combining marks dropped, case folded), so "аlice" with a Cyrillic а,
"ạlice" and "álice" are "alice", and the message says why a name is taken. A new name is letters and digits with
spaces and a few joining marks (NAME_RULE): no markup, no path, no address.

An admin resets a name's passphrase (the next sign-in with it sets a new one) or removes a name (a look-alike
squatter, a name from before the rule): `core.sharing.admin` does both, with the sessions and sign-in counts that go
with them, and each is kept in the `people_events` table.
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

from core.errors import Conflict, InvalidInput, NotFound
from core.fileio import read_json
from core.paths import flora_dir
from core.shared_store import SharedStore, Table
from core.sharing import LOCAL_USER

PEOPLE_FILE = "people.json"  # where people were kept before the shared store (imported once)
MIN_PASSPHRASE = 4
MAX_NAME_CHARS = 40
NAME_JOINERS = "-_.'’"  # besides letters, digits and spaces: O'Brien, anne-marie, j.doe, ada_l
NAME_RULE = (
    f"letters and digits, with spaces and {' '.join(NAME_JOINERS)} between them, starting with a letter or a digit, "
    f"at most {MAX_NAME_CHARS} characters"
)
SERVER_ACCOUNTS = ("root",)  # besides this process's own user: the usual owner of command-line runs
ROLE_NAMES = ("admin", "administrator")  # a student named "admin" would read as the one who runs the class


# Characters that show as nothing, or as a blank, beside a name's letters: Hangul fillers, the blank Braille
# pattern, variation selectors, the grapheme joiner, Khmer's inherent vowels, Mongolian's selectors, the null
# notehead. With every format character (Cf: zero-width spaces and joiners, tags, bidi marks), control, private-use
# and unassigned one, a name holding one is refused: "alice" + U+2800 would read as a second "alice".
_BLANKS = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0, 0x1D159})
_BLANK_RANGES = ((0x180B, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
_UNSEEN_CATEGORIES = ("Cc", "Cf", "Co", "Cs", "Cn")
_MARKS = ("Mn", "Me")  # dropped from the compared form: "bo̵b" (U+0335 overlay) reads as "bob"


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
    """The form two names are compared in: spaces collapsed, NFKC, combining marks dropped (accents, dots below,
    overlays: NFKD, then every Mn and Me character), look-alike letters mapped to their Latin prototype (Unicode's
    confusables), case folded. "Alice", "ALICE", "аlice" (Cyrillic а), "Ａlice", "ạlice" and "álice" agree; so do
    "José" and "Jose" (whoever comes first owns both)."""
    from confusable_homoglyphs import confusables  # the Unicode confusables table, loaded on first use

    text = unicodedata.normalize("NFKC", " ".join(name.split()))
    unmarked = (c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) not in _MARKS)
    text = unicodedata.normalize("NFC", "".join(unmarked))  # recomposed: Hangul syllables again, not their jamo
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


# what an admin did to a name (core.sharing.admin): reset its passphrase, removed it
PEOPLE_EVENTS = Table(
    "people_events",
    ("CREATE TABLE people_events (at REAL NOT NULL, action TEXT NOT NULL, name TEXT NOT NULL, by TEXT NOT NULL)",),
)
TOKEN, RESET, REMOVED, OIDC = "token", "reset", "removed", "oidc"  # a row's `how`
_REKEYED: set[Path] = set()  # the stores whose rows were keyed again by this name_key (once per process)


def _store(data_root) -> SharedStore:
    """The data folder's shared store, its people keyed by today's name_key: a row written under an older key (before
    combining marks were dropped: "José" under "josé") moves to its new key once, where that key is free; where a
    look-alike holds it already, the row keeps its old key and its own passphrase (`_lookup` finds it by its exact
    spelling), and the Class page shows it as a look-alike an admin may remove."""
    store = SharedStore.of_data(data_root)
    if store.path in _REKEYED or not store.path.parent.is_dir():
        return store
    with store.write(PEOPLE) as db:
        for key, name in db.execute("SELECT key, name FROM people ORDER BY rowid").fetchall():
            new = name_key(name)
            if new != key:
                db.execute("UPDATE OR IGNORE people SET key = ? WHERE key = ?", (new, key))
    _REKEYED.add(store.path)
    return store


def _load(data_root) -> dict:
    """Everyone known, by key: {"name", "how", "salt"?, "hash"?}."""
    with _store(data_root).read(PEOPLE) as db:
        rows = db.execute("SELECT key, name, how, salt, hash FROM people").fetchall()
    return {key: _entry(name, how, salt, hash_) for key, name, how, salt, hash_ in rows}


def _entry(name: str, how: str, salt: str | None, hash_: str | None) -> dict:
    entry = {"name": name, "how": how}
    if hash_:
        entry.update(salt=salt, hash=hash_)
    return entry


def _find(data_root, key: str) -> dict | None:
    with _store(data_root).read(PEOPLE) as db:
        row = db.execute("SELECT name, how, salt, hash FROM people WHERE key = ?", (key,)).fetchone()
    return _entry(*row) if row else None


def _lookup(data_root, name: str) -> tuple[str, dict | None]:
    """(key, entry) of the token name `name` reads as: its own row when a look-alike from before the rule kept its
    exact spelling under an old key, else the row of its name_key (None: nobody's)."""
    key = name_key(name)
    entry = _find(data_root, key)
    if entry is None or entry["name"] != name:
        with _store(data_root).read(PEOPLE) as db:
            row = db.execute(
                "SELECT key, name, how, salt, hash FROM people WHERE name = ? AND key != ? AND how IN (?, ?)",
                (name, key, TOKEN, RESET),
            ).fetchone()
        if row is not None:
            return row[0], _entry(*row[1:])
    return key, entry


def registered_name(data_root, name: str) -> str:
    """The name as it was first written when someone holds it ("BOB" -> "bob"), else `name` itself."""
    entry = _lookup(data_root, " ".join(name.split()))[1]
    return str(entry["name"]) if entry and entry["how"] in (TOKEN, RESET) else " ".join(name.split())


def token_names(data_root) -> set[str]:
    """The names people have claimed with the access token (as first written)."""
    return {str(entry["name"]) for entry in _load(data_root).values() if entry.get("hash")}


def registered(data_root) -> list[dict]:
    """Every name claimed with the token, for an admin: {"name", "key", "state" ("passphrase set" or "reset: the next
    sign-in sets it"), "looks_like" (the name holding its compared form, for a look-alike kept from before the rule,
    else None), "breaks_rule" (why it would be refused today, else None)}, by name."""
    known = _load(data_root)
    rows = []
    for key, entry in known.items():
        if entry["how"] not in (TOKEN, RESET):
            continue
        holder = known.get(name_key(entry["name"]))
        rows.append(
            {
                "name": entry["name"],
                "key": key,
                "state": "passphrase set" if entry["how"] == TOKEN else "reset: the next sign-in sets it",
                "looks_like": holder["name"] if key != name_key(entry["name"]) and holder else None,
                "breaks_rule": name_problem(entry["name"]),
            }
        )
    return sorted(rows, key=lambda row: (row["key"], row["name"]))


def remember_identity(data_root, identity: str) -> None:
    """Record an OpenID Connect identity (e-mail or subject) that signed in: nobody can claim it as a name later,
    even before it owns a run."""
    with _store(data_root).write(PEOPLE) as db:
        db.execute(
            "INSERT OR IGNORE INTO people (key, name, how) VALUES (?, ?, 'oidc')", (name_key(identity), identity)
        )


def name_problem(name: str) -> str | None:
    """Why `name` breaks NAME_RULE (markup, a path, an address, too long), in words, or None."""
    if len(name) > MAX_NAME_CHARS:
        return f"it is {len(name)} characters long, and a name is at most {MAX_NAME_CHARS}"
    if not name or not (name[0].isalpha() or name[0].isdigit()):
        return "a name starts with a letter or a digit"
    bad = sorted({c for c in name if not _name_char(c)}, key=name.index)
    if bad:
        shown = " ".join(c if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}" for c in bad)
        return f"it holds {shown}, and a name is {NAME_RULE}"
    return None


def _name_char(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] == "L" or category[0] == "M" or category == "Nd" or char == " " or char in NAME_JOINERS


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
    if entry and entry.get("how") == OIDC:
        return "that is the identity of someone who signed in through the identity provider"
    for owner in owners:
        if name_key(owner) == key and entry is None:  # no token sign-in ever held it (a removed one did)
            return f"“{owner}” owns runs made outside this sign-in (the command line, or an identity provider)"
    return None


class WrongPassphrase(NameTaken):
    """A claimed name, another passphrase: `registered` is the name as its owner first wrote it."""

    def __init__(self, message: str, registered: str):
        super().__init__(message)
        self.registered = registered


def _shown(name: str) -> str:
    """A name as a message echoes it: a very long one cut short."""
    return name if len(name) <= MAX_NAME_CHARS + 10 else f"{name[:MAX_NAME_CHARS]}…"


def claim_name(data_root, name: str, passphrase: str, owners: Iterable[str] = ()) -> str:
    """Sign in as `name` with `passphrase`: the first person to use a name sets its passphrase, later sign-ins
    must give it (after an admin's reset, the next one sets it again; after a removal, the next one takes the name
    as they write it). `owners`: everyone who owns runs or sweeps (those no token sign-in made are not claimable).
    Returns the name as first written.

    Raises:
        NameTaken: the name is reserved, someone else's, or looks the same as someone else's (WrongPassphrase: a
            claimed name and another passphrase);
        InvalidInput: a new name that breaks NAME_RULE, or a passphrase too short.
    """
    name = " ".join(name.split())
    reason = why_reserved(name, data_root, owners)
    if reason:
        raise NameTaken(f"You cannot sign in as “{_shown(name)}”: {reason}. Choose another name.")
    key, entry = _lookup(data_root, name)
    if entry is None or entry["how"] == REMOVED:
        problem = name_problem(name)
        if problem:
            raise InvalidInput(f"You cannot sign in as “{_shown(name)}”: {problem}. Choose another name.")
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput(f"choose a passphrase of at least {MIN_PASSPHRASE} characters (you will need it next time)")
    if entry is None or entry["how"] in (RESET, REMOVED):
        # hashed before the transaction (scrypt takes ~50 ms: a class signing in must not queue behind it); the
        # row goes in (or a reset or removed one is taken) only if it is still free, in one statement, so one first
        # passphrase wins
        salt = secrets.token_bytes(16)
        hashed = _hash(passphrase, salt)
        with _store(data_root).write(PEOPLE) as db:
            if entry is None:
                taken = db.execute(
                    "INSERT OR IGNORE INTO people (key, name, how, salt, hash) VALUES (?, ?, 'token', ?, ?)",
                    (key, name, salt.hex(), hashed),
                )
            else:  # a removed name is taken as written now; a reset one keeps its spelling
                taken = db.execute(
                    "UPDATE people SET name = CASE how WHEN 'removed' THEN ? ELSE name END, how = 'token', salt = ?, "
                    "hash = ? WHERE key = ? AND how IN ('reset', 'removed')",
                    (name, salt.hex(), hashed, key),
                )
            if taken.rowcount == 1:
                return name if entry is None or entry["how"] == REMOVED else str(entry["name"])
        entry = _find(data_root, key)  # claimed in between: whoever did set its passphrase
    if not entry.get("hash"):  # an identity provider's, recorded in between
        raise NameTaken(f"You cannot sign in as “{name}”: someone signed in through the identity provider as it.")
    given = _hash(passphrase, bytes.fromhex(entry["salt"]))
    if not secrets.compare_digest(given, entry["hash"]):
        same = "" if entry["name"] == name else f" (“{_shown(name)}” reads the same as “{entry['name']}”)"
        raise WrongPassphrase(
            f"{entry['name']} has signed in here before with another passphrase{same}. If that is you, use "
            "your passphrase; if not, choose another name.",
            str(entry["name"]),
        )
    return str(entry["name"])


def reset_passphrase(data_root, name: str, by: str) -> str:
    """An admin's reset: the token name `name` reads as keeps its spelling, and the next sign-in with it sets a new
    passphrase. Returns the name as registered; NotFound when nobody holds it."""
    return _admin_change(data_root, name, by, RESET)


def remove_name(data_root, name: str, by: str) -> str:
    """An admin's removal: the token name `name` reads as is nobody's again (the next to sign in with it, or with a
    look-alike, takes it as they write it). The runs recorded under it stay, under that spelling. Returns the name
    as registered; NotFound when nobody holds it."""
    return _admin_change(data_root, name, by, REMOVED)


def _admin_change(data_root, name: str, by: str, how: str) -> str:
    import time

    key, entry = _lookup(data_root, " ".join(name.split()))
    if entry is None or entry["how"] not in (TOKEN, RESET):
        raise NotFound(f"nobody has signed in here with the name “{_shown(name)}”")
    store = _store(data_root)
    with store.read(PEOPLE_EVENTS):
        pass  # made before the transaction below writes to it
    with store.write(PEOPLE) as db:
        changed = db.execute(
            "UPDATE people SET how = ?, salt = NULL, hash = NULL WHERE key = ? AND how IN ('token', 'reset')",
            (how, key),
        ).rowcount
        if changed:
            db.execute(
                "INSERT INTO people_events (at, action, name, by) VALUES (?, ?, ?, ?)",
                (time.time(), how, entry["name"], by),
            )
    if not changed:
        raise NotFound(f"nobody has signed in here with the name “{_shown(name)}”")
    return str(entry["name"])


def events(data_root, limit: int = 50) -> list[dict]:
    """What admins did to names, newest first: {"at", "action" ("reset" or "removed"), "name", "by"}."""
    with _store(data_root).read(PEOPLE_EVENTS) as db:
        rows = db.execute(
            "SELECT at, action, name, by FROM people_events ORDER BY at DESC LIMIT ?", (limit,)
        ).fetchall()
    return [{"at": at, "action": action, "name": name, "by": by} for at, action, name, by in rows]


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

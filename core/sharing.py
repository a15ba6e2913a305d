"""Flora shared by a class or a team: when it is shared, how people sign in, who is an admin, how many
runs one person may queue. No Streamlit here: `python -m core share-check` and the app both use it.

Flora is shared when the app listens beyond this machine (`make run HOST=0.0.0.0`), or when
FLORA_SHARED=1 says so (behind a reverse proxy on 127.0.0.1). Shared means signed in, one of:

- OpenID Connect through Streamlit's own `st.login`: an `[auth]` section in `.streamlit/secrets.toml`
  (redirect_uri, cookie_secret, client_id, client_secret, server_metadata_url).
- An access token, Jupyter-style, for a class without an identity provider: FLORA_ACCESS_TOKEN, or
  FLORA_AUTH=token to have one made at start (kept in `<data>/.flora/access-token`, printed with the URL).
  Each person then gives their name and a passphrase: the first to use a name sets it, so nobody can sign in
  as a classmate. The session is kept in the page's URL, so a reload stays signed in.

Shared with neither: `share-check` (run by `make run`) refuses to start and the app shows only that.
Admins (FLORA_ADMINS: e-mail addresses or subjects of OpenID Connect users; with the token, whoever signs in
with FLORA_ADMIN_TOKEN instead of the class's) may delete any run,
move aliases, start and stop the model server and change data roots; everyone else works on their own
runs and sees the others' read-only. Not shared, the one person at the keyboard is "local" and an admin.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

from core.fileio import read_json, write_bytes_atomic
from core.paths import PROJECT_ROOT, flora_dir

SHARED_ENV = "FLORA_SHARED"
AUTH_ENV = "FLORA_AUTH"  # "token": make an access token at start when FLORA_ACCESS_TOKEN is not set
TOKEN_ENV = "FLORA_ACCESS_TOKEN"
ADMINS_ENV = "FLORA_ADMINS"
MAX_QUEUED_ENV = "FLORA_MAX_QUEUED_RUNS"
DEFAULT_MAX_QUEUED = 3  # runs one person may have waiting for the device at once (shared only)
LOCAL_USER = "local"
TOKEN_FILE = "access-token"
AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")


class NotReadyToShare(RuntimeError):
    """Shared without a way to sign in; the message says which setting to add."""


@dataclass(frozen=True)
class User:
    """Who is using Flora: `id` is what runs are recorded under (an e-mail, a subject, a name, or "local")."""

    id: str
    name: str
    admin: bool
    how: str  # "local", "oidc" or "token"

    @property
    def label(self) -> str:
        return self.name if self.name == self.id else f"{self.name} ({self.id})"


LOCAL = User(LOCAL_USER, LOCAL_USER, admin=True, how="local")


def is_loopback(host: str) -> bool:
    """True when an address is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_shared(host: str | None) -> bool:
    """Shared: listening beyond loopback, or FLORA_SHARED=1 (a reverse proxy in front)."""
    if os.environ.get(SHARED_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    return host is not None and not is_loopback(host)


def secrets_files(project: Path = PROJECT_ROOT) -> list[Path]:
    """Where Streamlit looks for secrets.toml (its default `secrets.files`): the user's, then the project's."""
    return [Path.home() / ".streamlit" / "secrets.toml", project / ".streamlit" / "secrets.toml"]


def oidc_configured(files: list[Path] | None = None) -> str | None:
    """The secrets file whose [auth] section has everything st.login needs, or None."""
    for path in files or secrets_files():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        auth = data.get("auth") or {}
        providers = [value for value in auth.values() if isinstance(value, dict)]
        if all(key in auth for key in AUTH_KEYS[:2]) and (
            all(key in auth for key in AUTH_KEYS[2:]) or any(all(k in p for k in AUTH_KEYS[2:]) for p in providers)
        ):
            return str(path)
    return None


def token_file(data_root: str | os.PathLike) -> Path:
    return flora_dir(data_root) / TOKEN_FILE


def access_token(data_root: str | os.PathLike, create: bool = False) -> str | None:
    """The class's access token: FLORA_ACCESS_TOKEN, else the one kept in the data folder (made when `create`
    and FLORA_AUTH=token), else None."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = token_file(data_root)
    try:
        kept = path.read_text().strip()
    except OSError:
        kept = ""
    if kept:
        return kept
    if create and os.environ.get(AUTH_ENV, "").strip().lower() == "token":
        token = secrets.token_urlsafe(24)
        write_bytes_atomic(path, token.encode())
        os.chmod(path, 0o600)
        return token
    return None


def check_ready(host: str | None, data_root: str | os.PathLike, files: list[Path] | None = None) -> str:
    """How people will sign in ("local", "oidc", "token"), or raise NotReadyToShare saying what to set."""
    if not is_shared(host):
        return "local"
    if oidc_configured(files):
        return "oidc"
    if access_token(data_root, create=True):
        return "token"
    raise NotReadyToShare(
        f"Flora is shared (it listens on {host or 'a proxied address'}) but nobody could sign in. Set one of:\n"
        "  - OpenID Connect: an [auth] section in .streamlit/secrets.toml with redirect_uri "
        "(http://HOST:PORT/oauth2callback), cookie_secret, client_id, client_secret and server_metadata_url;\n"
        f"  - an access token: {TOKEN_ENV}=<a long random string>, or {AUTH_ENV}=token to have one made now.\n"
        "Or keep it on this machine: make run (HOST=127.0.0.1)."
    )


def admins() -> frozenset[str]:
    """The admin list (FLORA_ADMINS, comma-separated: e-mails, subjects, names), lower-cased, spaces collapsed."""
    raw = os.environ.get(ADMINS_ENV, "")
    return frozenset(" ".join(part.split()).lower() for part in raw.replace("\n", ",").split(",") if part.strip())


def is_admin(*identities: str | None) -> bool:
    listed = admins()
    return any(identity and " ".join(identity.split()).lower() in listed for identity in identities)


def max_queued_runs() -> int:
    try:
        return max(1, int(os.environ.get(MAX_QUEUED_ENV, DEFAULT_MAX_QUEUED)))
    except ValueError:
        return DEFAULT_MAX_QUEUED


ADMIN_TOKEN_ENV = "FLORA_ADMIN_TOKEN"  # token sign-in: whoever signs in with this one is an admin
PEOPLE_FILE = "people.json"  # token sign-in: each name's passphrase (scrypt), so nobody else can take the name
SESSIONS_FILE = "sessions.json"  # token sign-in: session ids kept in the page's URL, so a reload stays signed in
SESSION_HOURS = 12
MIN_PASSPHRASE = 4


class NameTaken(ValueError):
    """A name someone else already signed in with, and a passphrase that is not theirs."""


def admin_token() -> str | None:
    return os.environ.get(ADMIN_TOKEN_ENV, "").strip() or None


def claim_name(data_root: str | os.PathLike, name: str, passphrase: str) -> str:
    """Sign in as `name` with `passphrase`: the first person to use a name sets its passphrase, later sign-ins
    must give it (with a shared class token anyone could otherwise type a classmate's name, or an admin's).
    Returns the name as first written.

    Raises:
        NameTaken: the name is someone's and the passphrase is not theirs; ValueError: a passphrase too short.
    """
    if len(passphrase) < MIN_PASSPHRASE:
        raise ValueError(f"choose a passphrase of at least {MIN_PASSPHRASE} characters (you will need it next time)")
    key = " ".join(name.split()).lower()
    path = flora_dir(data_root) / PEOPLE_FILE
    people = read_json(path, default={}) or {}
    entry = people.get(key)
    if entry:
        salt = bytes.fromhex(entry["salt"])
        given = hashlib.scrypt(passphrase.encode(), salt=salt, n=2**14, r=8, p=1).hex()
        if not secrets.compare_digest(given, entry["hash"]):
            raise NameTaken(
                f"{entry['name']} has signed in here before with another passphrase. If that is you, use your "
                "passphrase; if not, choose another name."
            )
        return str(entry["name"])
    salt = secrets.token_bytes(16)
    people[key] = {
        "name": " ".join(name.split()),
        "salt": salt.hex(),
        "hash": hashlib.scrypt(passphrase.encode(), salt=salt, n=2**14, r=8, p=1).hex(),
    }
    write_bytes_atomic(path, json.dumps(people, indent=2).encode())
    os.chmod(path, 0o600)
    return people[key]["name"]


def open_session(data_root: str | os.PathLike, name: str, admin: bool, now: float | None = None) -> str:
    """A session id for a token sign-in (kept in the page's URL: a reload stays signed in)."""
    now = time.time() if now is None else now
    path = flora_dir(data_root) / SESSIONS_FILE
    sessions = {k: v for k, v in (read_json(path, default={}) or {}).items() if v.get("expires", 0) > now}
    session_id = secrets.token_urlsafe(24)
    sessions[session_id] = {"name": name, "admin": bool(admin), "expires": now + SESSION_HOURS * 3600}
    write_bytes_atomic(path, json.dumps(sessions, indent=2).encode())
    os.chmod(path, 0o600)
    return session_id


def session_user(data_root: str | os.PathLike, session_id: str | None, now: float | None = None) -> User | None:
    """The user of a live session id, or None (unknown or expired)."""
    if not session_id:
        return None
    now = time.time() if now is None else now
    entry = (read_json(flora_dir(data_root) / SESSIONS_FILE, default={}) or {}).get(str(session_id))
    if not isinstance(entry, dict) or entry.get("expires", 0) <= now:
        return None
    return User(str(entry["name"]), str(entry["name"]), admin=bool(entry.get("admin")), how="token")


def close_session(data_root: str | os.PathLike, session_id: str | None) -> None:
    path = flora_dir(data_root) / SESSIONS_FILE
    sessions = read_json(path, default={}) or {}
    if sessions.pop(str(session_id), None) is not None:
        write_bytes_atomic(path, json.dumps(sessions, indent=2).encode())


def tokens_match(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and secrets.compare_digest(str(given).encode(), str(expected).encode())

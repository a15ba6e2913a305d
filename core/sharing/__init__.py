"""Flora shared by a class or a team: when it is shared, how people sign in, who is an admin, how many
runs one person may queue. No Streamlit here: `python -m core share-check` and the app both use it.

Flora is shared when the app listens beyond this machine (`make run HOST=0.0.0.0`), or when
FLORA_SHARED=1 says so (behind a reverse proxy on 127.0.0.1). Shared means signed in, one of:

- OpenID Connect through Streamlit's own `st.login`: an `[auth]` section in `.streamlit/secrets.toml`
  (redirect_uri, cookie_secret, client_id, client_secret, server_metadata_url).
- An access token, Jupyter-style, for a class without an identity provider: FLORA_ACCESS_TOKEN, or
  FLORA_AUTH=token to have one made at start (kept in `<data>/.flora/access-token`, printed with the URL).
  Each person then gives their name and a passphrase: the first to use a name sets it, so nobody can sign in
  as a classmate (`core.sharing.people`; names that own work outside this sign-in are nobody's to take).
  The session is a cookie the page sets, never part of the link people copy (`core.sharing.sessions`);
  repeated wrong tokens or passphrases slow down and then lock the name or the client
  (`core.sharing.attempts`) until it cools down or an admin unlocks it.

How people sign in is decided once, when the app starts (`auth_mode`): writing an [auth] section into
secrets.toml under a running token-mode Flora changes nothing until a restart.

Shared with neither: `share-check` (run by `make run`) refuses to start and the app shows only that.
Admins (FLORA_ADMINS: verified e-mail addresses or subjects of OpenID Connect users, never their display
names; with the token, whoever signs in with FLORA_ADMIN_TOKEN instead of the class's) may delete any run,
move aliases, start and stop the model server, change data roots, unlock names and see the class; everyone
else works on their own runs and sees the others' read-only. Not shared, the one person at the keyboard is
"local" and an admin.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import tomllib

from core.errors import InvalidInput
from core.fileio import write_bytes_atomic
from core.paths import PROJECT_ROOT, flora_dir

SHARED_ENV = "FLORA_SHARED"
AUTH_ENV = "FLORA_AUTH"  # "token": make an access token at start when FLORA_ACCESS_TOKEN is not set
TOKEN_ENV = "FLORA_ACCESS_TOKEN"
ADMIN_TOKEN_ENV = "FLORA_ADMIN_TOKEN"  # token sign-in: whoever signs in with this one is an admin
ADMINS_ENV = "FLORA_ADMINS"
MAX_QUEUED_ENV = "FLORA_MAX_QUEUED_RUNS"
DEFAULT_MAX_QUEUED = 3  # runs one person may have waiting for the device at once (shared only)
LOCAL_USER = "local"
TOKEN_FILE = "access-token"
MIN_TOKEN_CHARS = 16  # a class token shorter than this could be guessed; secrets.token_urlsafe(24) gives 32
MIN_TOKEN_BITS = 48  # length x the entropy of its characters' spread; secrets.token_urlsafe(24) gives about 150
TOKEN_RULE = (
    f"at least {MIN_TOKEN_CHARS} characters, at least {MIN_TOKEN_BITS} bits by how its characters spread (length "
    "times the entropy of their frequencies: 24 copies of one letter have none), not a run such as abcd… or 1234…, "
    "and the admin token different from the class's"
)
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'
AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")


class NotReadyToShare(InvalidInput, RuntimeError):
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
    token = access_token(data_root, create=True)
    if token:
        weak = [
            f"{name} is {why}"
            for name, value in (("the access token", token), ("FLORA_ADMIN_TOKEN", admin_token()))
            if value and (why := token_weakness(value))
        ]
        if admin_token() and admin_token() == token:
            weak.append("FLORA_ADMIN_TOKEN is the class's token (every student would be an admin)")
        if weak:
            said = "; ".join(weak)
            raise NotReadyToShare(
                f"{said[0].upper()}{said[1:]}. A shared Flora's tokens resist guessing: {TOKEN_RULE}. Make one "
                f"with\n  {MAKE_TOKEN}\nand set it as {TOKEN_ENV} or {ADMIN_TOKEN_ENV} (or {AUTH_ENV}=token, with "
                f"{TOKEN_ENV} unset, to have the class's made)."
            )
        return "token"
    raise NotReadyToShare(
        f"Flora is shared (it listens on {host or 'a proxied address'}) but nobody could sign in. Set one of:\n"
        "  - OpenID Connect: an [auth] section in .streamlit/secrets.toml with redirect_uri "
        "(http://HOST:PORT/oauth2callback), cookie_secret, client_id, client_secret and server_metadata_url;\n"
        f"  - an access token: {TOKEN_ENV}=<a long random string>, or {AUTH_ENV}=token to have one made now.\n"
        "Or keep it on this machine: make run (HOST=127.0.0.1)."
    )


def token_weakness(token: str) -> str | None:
    """Why `token` could be guessed (TOKEN_RULE), in words, or None."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"too short to resist guessing ({len(token)} of the {MIN_TOKEN_CHARS} characters needed)"
    if len(set(token)) == 1:
        return f"one character repeated ({token[0]!r} {len(token)} times)"
    counts = [token.count(char) for char in set(token)]
    bits = -len(token) * sum(n / len(token) * math.log2(n / len(token)) for n in counts)
    if bits < MIN_TOKEN_BITS:
        return f"too regular to resist guessing (about {bits:.0f} bits by its characters' spread)"
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(token)]
    if max(steps.count(step) for step in set(steps)) >= 0.8 * len(steps):
        return "a run of evenly spaced characters (like abcd… or 1234…)"
    return None


_MODES: dict[tuple, str] = {}


def auth_mode(host: str | None, data_root: str | os.PathLike, files: list[Path] | None = None) -> str:
    """`check_ready`, decided once per process for the same settings: the app's sign-in mode is the one it
    started with, whatever is written into secrets.toml while it runs (a restart picks the change up).
    A refusal is not remembered: fixing the settings and reloading lets people in."""
    key = (
        host,
        str(data_root),
        tuple(str(f) for f in files or ()),
        *(os.environ.get(name, "") for name in (SHARED_ENV, AUTH_ENV, TOKEN_ENV, ADMIN_TOKEN_ENV)),
    )
    if key not in _MODES:
        _MODES[key] = check_ready(host, data_root, files)
    return _MODES[key]


def admins() -> frozenset[str]:
    """The admin list (FLORA_ADMINS, comma-separated: e-mails or subjects), lower-cased, spaces collapsed."""
    raw = os.environ.get(ADMINS_ENV, "")
    return frozenset(" ".join(part.split()).lower() for part in raw.replace("\n", ",").split(",") if part.strip())


def is_admin(*identities: str | None) -> bool:
    """Whether any of `identities` (a verified e-mail, a subject) is in FLORA_ADMINS. Never pass a display name:
    some providers let people set their own."""
    listed = admins()
    return any(identity and " ".join(identity.split()).lower() in listed for identity in identities)


def max_queued_runs() -> int:
    try:
        return max(1, int(os.environ.get(MAX_QUEUED_ENV, DEFAULT_MAX_QUEUED)))
    except ValueError:
        return DEFAULT_MAX_QUEUED


def admin_token() -> str | None:
    return os.environ.get(ADMIN_TOKEN_ENV, "").strip() or None


def tokens_match(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and secrets.compare_digest(str(given).encode(), str(expected).encode())

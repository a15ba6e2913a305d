"""core.sharing and `share-check`: when Flora is shared, and the refusal to share it with nobody able to sign in."""

from __future__ import annotations

import stat

import pytest

from core import sharing
from core.cli import main as cli
from core.sharing import attempts, people, sessions


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in (sharing.SHARED_ENV, sharing.AUTH_ENV, sharing.TOKEN_ENV, sharing.ADMINS_ENV, sharing.ADMIN_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)


def test_shared_means_beyond_loopback_or_said_so(monkeypatch):
    assert not sharing.is_shared("127.0.0.1") and not sharing.is_shared("localhost") and not sharing.is_shared("::1")
    assert sharing.is_shared("0.0.0.0") and sharing.is_shared("192.168.1.20")
    monkeypatch.setenv(sharing.SHARED_ENV, "1")  # behind a reverse proxy on loopback
    assert sharing.is_shared("127.0.0.1")


def test_share_check_refuses_a_shared_app_nobody_can_sign_in_to(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sharing, "secrets_files", lambda: [tmp_path / "none.toml"])
    assert cli(["share-check", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nobody could sign in" in err and "FLORA_ACCESS_TOKEN" in err and "[auth]" in err
    assert cli(["share-check", "--host", "127.0.0.1", "--data-dir", str(tmp_path)]) == 0
    assert "this machine only" in capsys.readouterr().err


def test_token_mode_makes_a_private_token_and_prints_the_link(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sharing, "secrets_files", lambda: [tmp_path / "none.toml"])
    monkeypatch.setenv(sharing.AUTH_ENV, "token")
    assert cli(["share-check", "--host", "0.0.0.0", "--port", "8600", "--data-dir", str(tmp_path)]) == 0
    token_path = sharing.token_file(tmp_path)
    token = token_path.read_text()
    assert len(token) >= 24 and stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert f":8600/?token={token}" in capsys.readouterr().err
    assert sharing.access_token(tmp_path) == token  # the app reads the same one
    assert sharing.tokens_match(token, token) and not sharing.tokens_match("", token)


def test_oidc_needs_every_setting_st_login_needs(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://x:8501/oauth2callback"\ncookie_secret = "s"\n')
    assert sharing.oidc_configured([secrets]) is None
    secrets.write_text(
        secrets.read_text() + 'client_id = "c"\nclient_secret = "d"\nserver_metadata_url = "http://idp/.well-known"\n'
    )
    assert sharing.oidc_configured([secrets]) == str(secrets)
    named = tmp_path / "named.toml"  # a named provider: [auth.google]
    named.write_text(
        '[auth]\nredirect_uri = "r"\ncookie_secret = "s"\n[auth.google]\nclient_id = "c"\nclient_secret = "d"\n'
        'server_metadata_url = "m"\n'
    )
    assert sharing.oidc_configured([named]) == str(named)
    assert sharing.check_ready("0.0.0.0", tmp_path, [secrets]) == "oidc"


def test_admins_are_listed_by_email_subject_or_name(monkeypatch):
    monkeypatch.setenv(sharing.ADMINS_ENV, "Alice@Example.com, Prof  Oak")
    assert sharing.is_admin("alice@example.com") and sharing.is_admin(None, "prof oak")
    assert not sharing.is_admin("bob@example.com", "Oak")


def test_make_run_binds_this_machine_and_shares_only_when_told():
    """Before: no server.address, so `make run` listened on every interface and printed a Network URL."""
    import tomllib

    from tests.conftest import PROJECT_ROOT

    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "HOST ?= 127.0.0.1" in makefile
    assert "--server.address $(HOST)" in makefile and "core share-check --host $(HOST)" in makefile


def test_a_name_is_claimed_by_its_first_passphrase_and_sessions_expire(tmp_path):
    assert people.claim_name(tmp_path, "Ash  Ketchum", "pikachu") == "Ash Ketchum"
    assert people.claim_name(tmp_path, "ash ketchum", "pikachu") == "Ash Ketchum"  # the same person, any case
    with pytest.raises(people.NameTaken, match="another passphrase"):
        people.claim_name(tmp_path, "ASH KETCHUM", "charmander")
    with pytest.raises(ValueError, match="at least 4 characters"):
        people.claim_name(tmp_path, "Misty", "abc")
    stored = sorted((tmp_path / ".flora").glob("shared.sqlite*"))  # the database, its -wal and -shm
    assert stored and all(b"pikachu" not in path.read_bytes() for path in stored)
    assert {stat.S_IMODE(path.stat().st_mode) for path in stored} == {0o600}  # hashes and session ids: private
    session = sessions.open_session(tmp_path, "Ash Ketchum", admin=False, now=1000.0)
    assert sessions.session_user(tmp_path, session, now=1001.0).id == "Ash Ketchum"
    assert sessions.session_user(tmp_path, session, now=1000.0 + 13 * 3600) is None  # expired
    assert sessions.session_user(tmp_path, "forged", now=1001.0) is None
    sessions.close_session(tmp_path, session)
    assert sessions.session_user(tmp_path, session, now=1001.0) is None
    # signing out everywhere ends every browser's session of that name, nobody else's
    one, two = (sessions.open_session(tmp_path, "Ash Ketchum", admin=False, now=1000.0) for _ in range(2))
    misty = sessions.open_session(tmp_path, "Misty", admin=False, now=1000.0)
    assert [p["name"] for p in sessions.active_people(tmp_path, now=1001.0)] == ["Ash Ketchum", "Misty"]
    assert sessions.close_sessions_of(tmp_path, "Ash Ketchum") == 2
    assert sessions.session_user(tmp_path, one, now=1001.0) is None and sessions.session_user(tmp_path, two) is None
    assert sessions.session_user(tmp_path, misty, now=1001.0).id == "Misty"


def test_names_that_own_work_outside_the_token_sign_in_are_nobodys_to_take(tmp_path, monkeypatch):
    """Before (probe): signing in as `root` owned every command-line run; `local` and `аlice` (Cyrillic а) too."""
    monkeypatch.setattr(people.getpass, "getuser", lambda: "flora-ci")
    for name, why in [
        ("root", "this server's own account"),
        ("Flora-CI", "this server's own account"),
        ("LOCAL", "before it was shared"),
        ("ｌｏｃａｌ", "before it was shared"),  # full-width letters: the same name
        ("ann@example.com", "e-mail"),
        ("Admin", "the role of whoever runs this Flora"),
        ("Prof\u200bOak", "invisible characters"),  # a zero-width space: a copy that reads the same
        ("Prof Oak", "owns runs made outside this sign-in"),  # an OIDC subject or --owner name with runs
    ]:
        with pytest.raises(people.NameTaken, match=why):
            people.claim_name(tmp_path, name, "pikachu", owners=["Prof Oak", "local"])
    people.remember_identity(tmp_path, "sub-1234")  # an OIDC subject seen before it owns anything
    with pytest.raises(people.NameTaken, match="identity provider"):
        people.claim_name(tmp_path, "SUB-1234", "pikachu")
    assert people.claim_name(tmp_path, "alice", "wonderland") == "alice"
    assert people.claim_name(tmp_path, "alice", "wonderland", owners=["alice"]) == "alice"  # her runs stay hers
    with pytest.raises(people.NameTaken, match="reads the same as “alice”"):
        people.claim_name(tmp_path, "\u0430lice", "guessing")  # Cyrillic а
    assert people.claim_name(tmp_path, "ALICE", "wonderland") == "alice"
    assert people.name_key("\u0430lice") == people.name_key("Alice") == "alice"
    assert people.same_person("root", "local") and not people.same_person("alice", "local")


def test_wrong_passphrases_slow_down_then_lock_a_name_until_an_admin_unlocks(tmp_path):
    key, now = attempts.name_key_of("alice", "a-browser-id-0123"), 1000.0
    for tries in range(1, attempts.NAME_RULE.lock_after + 1):
        attempts.check(tmp_path, key, "alice", now=now)  # never refused before its wait is over
        note = attempts.failed(tmp_path, key, "alice", now=now)
        if tries == attempts.NAME_RULE.free_tries:
            with pytest.raises(attempts.SignInPaused, match="wait 2 s"):
                attempts.check(tmp_path, key, "alice", now=now + 0.5)
        now += attempts.MAX_WAIT_S + 1
    assert "locked for 15 min" in note
    with pytest.raises(attempts.SignInPaused, match="locked after 10 failed sign-ins"):
        attempts.check(tmp_path, key, "alice", now=now)  # the right passphrase too: the page checks first
    [row] = attempts.troubled(tmp_path, now=now)
    assert row["label"] == "alice" and row["failures"] == 10 and row["locked_until"] > now
    assert attempts.unlock(tmp_path, key)
    attempts.check(tmp_path, key, "alice", now=now)
    assert attempts.troubled(tmp_path, now=now) == []
    # a lock cools down by itself, and a client gets more room than a name
    for _ in range(attempts.NAME_RULE.lock_after):
        attempts.failed(tmp_path, key, "alice", now=now)
    attempts.check(tmp_path, key, "alice", now=now + attempts.LOCK_MINUTES * 60 + 1)
    assert attempts.CLIENT_RULE.lock_after > attempts.NAME_RULE.lock_after


def test_share_check_refuses_a_token_too_short_to_resist_guessing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sharing, "secrets_files", lambda: [tmp_path / "none.toml"])
    monkeypatch.setenv(sharing.TOKEN_ENV, "x")
    assert cli(["share-check", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "too short" in err and "at least 16 characters" in err and "token_urlsafe" in err
    monkeypatch.setenv(sharing.TOKEN_ENV, "a-long-enough-class-token")
    monkeypatch.setenv(sharing.ADMIN_TOKEN_ENV, "admin")
    assert cli(["share-check", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert "FLORA_ADMIN_TOKEN is too short" in capsys.readouterr().err
    monkeypatch.setenv(sharing.ADMIN_TOKEN_ENV, "a-long-enough-admin-token")
    assert cli(["share-check", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 0


def test_the_sign_in_mode_is_the_one_the_app_started_with(tmp_path, monkeypatch):
    """Before (probe): writing [auth] into secrets.toml under a running token-mode Flora switched it to OIDC."""
    monkeypatch.setenv(sharing.TOKEN_ENV, "a-long-enough-class-token")
    secrets = tmp_path / "secrets.toml"
    assert sharing.auth_mode("0.0.0.0", tmp_path, [secrets]) == "token"
    secrets.write_text(
        '[auth]\nredirect_uri = "r"\ncookie_secret = "s"\nclient_id = "c"\nclient_secret = "d"\n'
        'server_metadata_url = "m"\n'
    )
    assert sharing.check_ready("0.0.0.0", tmp_path, [secrets]) == "oidc"  # what a restart would pick
    assert sharing.auth_mode("0.0.0.0", tmp_path, [secrets]) == "token"


def test_oidc_admin_rights_come_from_the_verified_email_or_the_subject_never_the_name(monkeypatch):
    """Before (probe): `is_admin` was also matched against the name claim, which some providers let users set."""
    from types import SimpleNamespace

    from pages.ui import auth

    def user(**claims):
        monkeypatch.setattr(auth, "st", SimpleNamespace(user=claims))
        return auth._oidc_user()

    monkeypatch.setenv(sharing.ADMINS_ENV, "Prof Oak, oak@school.edu, sub-42")
    assert not user(email="eve@school.edu", sub="sub-7", name="Prof Oak").admin  # a name anyone can set
    assert not user(email="oak@school.edu", email_verified=False, sub="sub-7", name="Oak").admin
    assert user(email="oak@school.edu", email_verified=True, sub="sub-7", name="Oak").admin
    assert user(email="oak@school.edu", sub="sub-7").admin  # a provider that says nothing of verification
    assert user(sub="sub-42", name="Someone").admin and user(sub="sub-42").id == "sub-42"


def test_people_sessions_and_presence_kept_before_the_store_are_imported_once(tmp_path):
    """An upgraded Flora: everyone keeps their name, passphrase and session; nobody can take a name over."""
    import hashlib

    from core.fileio import write_json_atomic

    salt = bytes(16)
    hashed = hashlib.scrypt(b"wonderland", salt=salt, n=2**14, r=8, p=1).hex()
    flora = tmp_path / ".flora"
    write_json_atomic(
        flora / people.PEOPLE_FILE,
        {"alice": {"name": "Alice", "salt": salt.hex(), "hash": hashed}, "sub-9": {"name": "sub-9", "how": "oidc"}},
    )
    write_json_atomic(
        flora / sessions.SESSIONS_FILE,
        {"s1": {"name": "Alice", "admin": False, "expires": 5000.0, "started": 1000.0, "seen": 1500.0}},
    )
    write_json_atomic(flora / sessions.PRESENCE_FILE, {"Alice": 1500.0})
    assert people.claim_name(tmp_path, "alice", "wonderland") == "Alice"
    with pytest.raises(people.NameTaken, match="another passphrase"):
        people.claim_name(tmp_path, "ALICE", "guessing")
    with pytest.raises(people.NameTaken, match="identity provider"):
        people.claim_name(tmp_path, "sub-9", "guessing")
    assert sessions.session_user(tmp_path, "s1", now=1501.0).id == "Alice"
    assert sessions.last_seen(tmp_path) == {"Alice": 1500.0}
    write_json_atomic(flora / people.PEOPLE_FILE, {})  # written after the import: never read
    assert people.token_names(tmp_path) == {"Alice"}

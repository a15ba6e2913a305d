"""core.sharing and `share-check`: when Flora is shared, and the refusal to share it with nobody able to sign in."""

from __future__ import annotations

import stat

import pytest

from core import sharing
from core.cli import main as cli


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in (sharing.SHARED_ENV, sharing.AUTH_ENV, sharing.TOKEN_ENV, sharing.ADMINS_ENV):
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
    assert sharing.claim_name(tmp_path, "Ash  Ketchum", "pikachu") == "Ash Ketchum"
    assert sharing.claim_name(tmp_path, "ash ketchum", "pikachu") == "Ash Ketchum"  # the same person, any case
    with pytest.raises(sharing.NameTaken, match="another passphrase"):
        sharing.claim_name(tmp_path, "ASH KETCHUM", "charmander")
    with pytest.raises(ValueError, match="at least 4 characters"):
        sharing.claim_name(tmp_path, "Misty", "abc")
    people = (tmp_path / ".flora" / "people.json").read_text()
    assert "pikachu" not in people and stat.S_IMODE((tmp_path / ".flora" / "people.json").stat().st_mode) == 0o600
    session = sharing.open_session(tmp_path, "Ash Ketchum", admin=False, now=1000.0)
    assert sharing.session_user(tmp_path, session, now=1001.0).id == "Ash Ketchum"
    assert sharing.session_user(tmp_path, session, now=1000.0 + 13 * 3600) is None  # expired
    assert sharing.session_user(tmp_path, "forged", now=1001.0) is None
    sharing.close_session(tmp_path, session)
    assert sharing.session_user(tmp_path, session, now=1001.0) is None

"""`share-check` refuses tokens a class could guess or that make every student an admin (issue 38, section 3)."""

from __future__ import annotations

import secrets

import pytest

from core import sharing
from core.cli import main as cli


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    for name in (sharing.SHARED_ENV, sharing.AUTH_ENV, sharing.TOKEN_ENV, sharing.ADMINS_ENV, sharing.ADMIN_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sharing, "secrets_files", lambda: [tmp_path / "none.toml"])


def _share_check(tmp_path, capsys) -> tuple[int, str]:
    code = cli(["share-check", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "class_token, admin_token, said",
    [
        ("a" * 24, None, "one character repeated ('a' 24 times)"),  # before (probe): accepted
        ("a-long-enough-class-token", "a-long-enough-class-token", "FLORA_ADMIN_TOKEN is the class's token"),
        ("ab" * 12, None, "too regular to resist guessing (about 24 bits"),
        ("passwordpassword", None, "too regular to resist guessing"),
        ("abcdefghijklmnopqrstuvwx", None, "a run of evenly spaced characters"),
        ("a-long-enough-class-token", "Z" * 30, "FLORA_ADMIN_TOKEN is one character repeated"),
        ("short", None, "too short to resist guessing (5 of the 16 characters needed)"),
    ],
)
def test_share_check_refuses_tokens_a_class_could_guess(tmp_path, capsys, monkeypatch, class_token, admin_token, said):
    monkeypatch.setenv(sharing.TOKEN_ENV, class_token)
    if admin_token:
        monkeypatch.setenv(sharing.ADMIN_TOKEN_ENV, admin_token)
    code, err = _share_check(tmp_path, capsys)
    assert code == 2 and said in err
    assert sharing.TOKEN_RULE in err and "token_urlsafe" in err  # the rule, and how to make a good one


def test_share_check_accepts_tokens_made_as_it_says(tmp_path, capsys, monkeypatch):
    for _ in range(20):
        monkeypatch.setenv(sharing.TOKEN_ENV, secrets.token_urlsafe(24))
        monkeypatch.setenv(sharing.ADMIN_TOKEN_ENV, secrets.token_urlsafe(24))
        code, err = _share_check(tmp_path, capsys)
        assert code == 0, err
    monkeypatch.setenv(sharing.TOKEN_ENV, "class-token-12345")  # the test suite's own: short, yet not regular
    assert sharing.token_weakness("class-token-12345") is None

"""A shared Flora in AppTest: no sign-in configured means nothing but the reason; the access token and a name let
a person in, and the sidebar says who they are (the OpenID Connect sign-in: tests/test_browser_sharing.py)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.pages.conftest import APP, texts


def test_shared_without_a_way_to_sign_in_shows_only_why(app, workspace, monkeypatch):
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.delenv("FLORA_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("FLORA_AUTH", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    at.run()
    assert not at.exception
    assert at.title[0].value == "Flora is not ready to share"
    assert "FLORA_ACCESS_TOKEN" in at.error[0].value and "[auth]" in at.error[0].value
    assert not at.sidebar.markdown  # no pages, no workspace


def _sign_in(at, token: str, name: str, passphrase: str = "pikachu"):
    at.text_input(key="flora_token_field").set_value(token)
    at.text_input(key="flora_name_field").set_value(name)
    at.text_input(key="flora_passphrase_field").set_value(passphrase)
    at.button[0].click().run()
    return at


def test_the_access_token_a_name_and_its_passphrase_let_a_person_in(app, workspace, monkeypatch, tmp_path):
    """Before (walk): anyone with the class token could type a classmate's or the instructor's name and be them."""
    from core import sharing

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-123")
    monkeypatch.setenv("FLORA_ADMIN_TOKEN", "oak-admin-456")
    monkeypatch.setenv("FLORA_ADMINS", "Prof Oak")  # OIDC identities only: a typed name is not an admin
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.sidebar.markdown
    _sign_in(at, "wrong", "Ash")
    assert "That access token is not this server's." in [e.value for e in at.error]
    _sign_in(at, "class-token-123", "Ash")
    assert not at.exception
    shown = " ".join(c.value for c in at.sidebar.caption)
    assert "Ash" in shown and "admin" not in shown
    assert "Finished models: 1" in texts(at)  # Home, drawn
    session = at.query_params["session"]
    assert session and sharing.session_user(data, session).id == "Ash"
    # a reload (a new script session with the URL): still signed in
    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params["session"] = session
    again.run()
    assert "Ash" in " ".join(c.value for c in again.sidebar.caption) and not again.text_input
    # somebody else typing Ash's name (or "prof oak") with the class token is refused or not an admin
    other = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-123", "ash", "guess")
    assert any("has signed in here before with another passphrase" in e.value for e in other.error)
    prof = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-123", "Prof Oak", "letmein")
    assert "admin" not in " ".join(c.value for c in prof.sidebar.caption)
    # the instructor signs in with the admin token
    teacher = AppTest.from_file(APP, default_timeout=60)
    teacher.query_params["token"] = "oak-admin-456"
    teacher.run()
    assert teacher.text_input(key="flora_token_field").value == "oak-admin-456"
    _sign_in(teacher, "oak-admin-456", "Instructor", "bulbasaur")
    assert "Instructor · admin" in " ".join(c.value for c in teacher.sidebar.caption)


def test_others_runs_are_read_only_and_mine_come_first(app, workspace, monkeypatch):
    from pages.ui.navigation import page_file

    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-123")
    monkeypatch.delenv("FLORA_ADMINS", raising=False)
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = "class-token-123"
    at.run()
    _sign_in(at, "class-token-123", "Gary", "eevee")
    at.switch_page(page_file("train")).run()
    assert not at.exception
    assert at.segmented_control(key="train_scope").value == "Everyone's"  # none of Ash's own yet
    assert "local's run: you can look at it, not change it" in texts(at)
    assert not [p for p in at.get("popover") if "Delete" in str(p.proto)]
    assert not [b for b in at.button if b.label in ("Stop", "Delete")]
    at.switch_page(page_file("evaluate")).run()
    assert not at.exception and at.segmented_control(key="evaluate_scope").value == "Everyone's"


def _failing_page():
    from pages.ui import auth

    class Navigation:
        title = "Boom"

        def run(self):
            raise RuntimeError("the secret path /srv/flora/keys")

    auth.run_page(Navigation())


def test_shared_errors_show_an_id_not_the_traceback(monkeypatch, caplog):
    monkeypatch.setenv("FLORA_SHARED", "1")
    at = AppTest.from_function(_failing_page)
    at.run()
    assert not at.exception  # no traceback in the browser
    message = at.error[0].value
    assert "Something went wrong on this page (error " in message and "secret path" not in message
    error_id = message.split("(error ")[1][:8]
    assert f"error {error_id} on page Boom" in caplog.text and "the secret path" in caplog.text  # in the log

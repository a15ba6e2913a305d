"""A shared Flora in AppTest: no sign-in configured means nothing but the reason; the access token and a name let
a person in, and the sidebar says who they are (the OpenID Connect sign-in: tests/test_browser_sharing.py)."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest

from tests.pages.conftest import APP, texts


def errors(at) -> list[str]:
    """The page's error messages as they read (user strings in them are Markdown-escaped)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]


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

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.setenv("FLORA_ADMIN_TOKEN", "oak-admin-token-456")
    monkeypatch.setenv("FLORA_ADMINS", "Prof Oak")  # OIDC identities only: a typed name is not an admin
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.sidebar.markdown
    _sign_in(at, "wrong", "Ash")
    assert "That access token is not this server's." in [e.value for e in at.error]
    # walk of issue 38, item 15: an empty token read as a wrong one, a 300-character name as no name at all
    _sign_in(at, "", "Ash")
    assert [e.value for e in at.error] == ["Type the access token: your instructor has it, or the link they sent."]
    _sign_in(at, "class-token-12345", "x" * 300)
    assert any("it is 300 characters long, and a name is at most 40" in e for e in errors(at))
    _sign_in(at, "class-token-12345", "Ash")
    assert not at.exception
    shown = " ".join(c.value for c in at.sidebar.caption)
    assert "Ash" in shown and "admin" not in shown
    assert "Finished models: 1" in texts(at)  # Home, drawn
    # the session is never in the page's link (a link pasted to a classmate would sign them in): a cookie keeps it
    assert "session" not in at.query_params and "token" not in at.query_params
    from core.sharing import sessions

    [active] = sessions.active_people(data)
    assert active["name"] == "Ash"
    session = sessions.open_session(data, "Ash", admin=False)
    old_link = AppTest.from_file(APP, default_timeout=60)
    old_link.query_params["session"] = session  # a link from before: it signs nobody in
    old_link.run()
    assert [b.label for b in old_link.button] == ["Sign in"] and "session" not in old_link.query_params
    # somebody else typing Ash's name (or "prof oak") with the class token is refused or not an admin
    other = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "ash", "guess")
    assert any("has signed in here before with another passphrase" in e for e in errors(other))
    prof = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "Prof Oak", "letmein")
    assert "admin" not in " ".join(c.value for c in prof.sidebar.caption)
    # the instructor signs in with the admin token
    teacher = AppTest.from_file(APP, default_timeout=60)
    teacher.query_params["token"] = "oak-admin-token-456"
    teacher.run()
    assert teacher.text_input(key="flora_token_field").value == "oak-admin-token-456"
    _sign_in(teacher, "oak-admin-token-456", "Instructor", "bulbasaur")
    assert "Instructor · admin" in " ".join(c.value for c in teacher.sidebar.caption)


def test_signing_out_ends_the_run_without_the_signed_in_pages_live_panels(app, workspace, monkeypatch, tmp_path):
    """Walk (a blank page after "Sign out everywhere", one CI run in a few): the sign-in page drawn by a run that
    ended in st.stop() kept the signed-in page's fragments (the sidebar's Jobs panel, refreshed every 3 s); a refresh
    on its way then drew into a sidebar the sign-in page no longer has, and the browser's app went blank."""
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.setenv("FLORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    at = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "Ash")
    assert not at.exception and "Finished models: 1" in texts(at)
    assert at._fragment_storage.ids_registered_after(-1)  # the sidebar's device line and Jobs panel
    at.button(key="flora_sign_out_everywhere").click().run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"] and not at.sidebar.markdown
    assert at._fragment_storage.ids_registered_after(-1) == frozenset()


def test_guessing_a_passphrase_locks_the_name_and_reserved_names_say_why(app, workspace, monkeypatch, tmp_path):
    """Before (probe): 25 wrong passphrases for alice in 29 s, then the right one signed in; `root` owned the
    command line's runs."""
    from core.sharing import attempts

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    monkeypatch.setattr(attempts, "MAX_WAIT_S", 0)  # the slow-down is the unit test's; here only the lock
    at = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "root", "pikachu")
    assert any("this server's own account" in e for e in errors(at))
    at = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "alice", "wonderland")
    assert not at.error
    alices_browser = at.session_state["flora_browser"]
    guesser = AppTest.from_file(APP, default_timeout=60).run()
    for _ in range(attempts.NAME_RULE.lock_after):
        _sign_in(guesser, "class-token-12345", "Alice", "guess-123")
    assert any("now locked for 15 min" in e for e in errors(guesser))
    _sign_in(guesser, "class-token-12345", "Alice", "wonderland")  # the right one too, from the guesser's browser
    # walk item 8: the lock is this browser's, and names alice as she registered, not as typed
    assert any("“alice” is locked in this browser after 10 wrong passphrases" in e for e in errors(guesser))
    assert not any("Alice" in e for e in errors(guesser))
    # issue 38: the guesser's tries make nobody else wait, alice in another browser included
    owner = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "alice", "wonderland")
    assert not owner.error and "Sign in" not in [b.label for b in owner.button]
    # a guesser clearing cookies at every try: the name's new browsers lock together, alice's own browser does not
    monkeypatch.setattr(attempts, "NEW_BROWSERS_RULE", attempts.Rule(free_tries=1, lock_after=3))
    for _ in range(3):
        _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "alice", "guess-456")
    stranger = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "alice", "wonderland")
    assert any("never signed in as that name" in e and "is locked out of “alice”" in e for e in errors(stranger))
    own = AppTest.from_file(APP, default_timeout=60)
    own.session_state["flora_browser"] = alices_browser  # her browser, as its cookie brings it back
    own = _sign_in(own.run(), "class-token-12345", "alice", "wonderland")
    assert not own.error and "Sign in" not in [b.label for b in own.button]


def test_others_runs_are_read_only_and_mine_come_first(app, workspace, monkeypatch):
    from pages.ui.navigation import page_file

    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.delenv("FLORA_ADMINS", raising=False)
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = "class-token-12345"
    at.run()
    _sign_in(at, "class-token-12345", "Gary", "eevee")
    at.switch_page(page_file("train")).run()
    assert not at.exception
    assert at.segmented_control(key="train_scope").value == "Everyone's"  # none of Ash's own yet
    assert "local's run: you can look at it, not change it" in texts(at)
    assert not [p for p in at.get("popover") if "Delete" in str(p.proto)]
    assert not [b for b in at.button if b.label in ("Stop", "Delete")]
    # walk of issue 38, item 17: Name and Note were editable beside that note (only Save was disabled)
    run_id = workspace["run_id"]
    assert at.text_input(key=f"train_name_{run_id}").disabled and at.text_input(key=f"train_note_{run_id}").disabled
    assert not [b for b in at.button if b.label == "Save name and note"]
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


def test_the_class_page_shows_people_the_cost_and_frees_a_locked_name(app, workspace, monkeypatch, tmp_path):
    """Issue 29, section 9: an admin sees who is here, each person's runs and queue, what the class costs, and can
    unlock a name; students do not get the page at all."""
    from core.sharing import attempts
    from pages.ui.navigation import page_file

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.setenv("FLORA_ADMIN_TOKEN", "oak-admin-token-456")
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    student = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "Misty", "staryu")
    assert "Class" not in [link.label for link in student.sidebar.get("page_link")]
    for _ in range(attempts.NAME_RULE.lock_after):
        attempts.failed(data, attempts.name_key_of("Misty", "a-browser-id-0123"), "the name “Misty” in a browser")
    teacher = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "oak-admin-token-456", "Oak", "bulbasaur")
    assert "Class" in [link.label for link in teacher.sidebar.get("page_link")]
    teacher.switch_page(page_file("class")).run()
    assert not teacher.exception
    shown = texts(teacher)
    assert "A run here has taken about" in shown and "Active now: 2" in shown
    people = teacher.dataframe[0].value
    local = next(name for name in people["name"] if name.startswith("local (this machine: the command line"))
    assert {"Misty", "Oak"} <= set(people["name"]) and people.set_index("name").loc[local, "runs"] >= 1
    assert any("failed sign-in(s), locked for" in m.value for m in teacher.markdown)
    next(b for b in teacher.button if b.label == "Unlock").click().run()
    assert attempts.troubled(data) == [] and "Unlocked" in texts(teacher)


def test_the_class_page_resets_a_passphrase_and_removes_a_squatted_name(app, workspace, monkeypatch, tmp_path):
    """Walk of issue 38, item 4: the Class page offered only Unlock, Cancel their queue and Sign out everywhere; a
    forgotten passphrase, or a look-alike claimed first ("gіna" with a Cyrillic і), blocked a student for good."""
    from core.sharing import people, sessions
    from pages.ui.navigation import page_file

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.setenv("FLORA_ADMIN_TOKEN", "oak-admin-token-456")
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "Misty", "staryu")
    _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "g\u0456na", "squatter")
    teacher = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "oak-admin-token-456", "Oak", "bulbasaur")
    teacher.switch_page(page_file("class")).run()
    listed = teacher.dataframe[1].value
    assert {"Misty", "g\u0456na", "Oak"} == set(listed["name"])
    teacher.selectbox(key="class_name").set_value("Misty").run()
    next(b for b in teacher.button if b.label == "Reset passphrase").click().run()
    assert not teacher.exception and "Reset the passphrase of “Misty”" in texts(teacher)
    assert "Misty" not in {p["name"] for p in sessions.active_people(data)}  # her sessions ended
    back = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "misty", "a new one")
    assert not back.error and "Misty" in " ".join(c.value for c in back.sidebar.caption)
    teacher.selectbox(key="class_name").set_value("g\u0456na").run()
    next(b for b in teacher.button if b.label == "Remove name").click().run()
    assert "free again" in texts(teacher) and "removed" in texts(teacher)
    gina = _sign_in(AppTest.from_file(APP, default_timeout=60).run(), "class-token-12345", "gina", "the real one")
    assert not gina.error and people.token_names(data) == {"Misty", "Oak", "gina"}

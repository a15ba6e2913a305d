"""An admin's reset of a passphrase and removal of a name end the name's sessions and forget its sign-in counts
(walk of issue 38, item 4)."""

from __future__ import annotations

from core.sharing import admin, attempts, people, sessions
from core.sharing.attempts import Client
from core.sharing.clients import new_browser_id


def test_a_reset_ends_the_names_sessions_and_clears_its_locks(tmp_path):
    people.claim_name(tmp_path, "dana", "forgotten")
    laptop, lab_pc = Client("10.0.0.1", new_browser_id()), Client("10.0.0.2", new_browser_id())
    attempts.signed_in(tmp_path, laptop, "dana", now=1.0)
    sessions.open_session(tmp_path, "dana", admin=False)
    sessions.open_session(tmp_path, "erin", admin=False)
    for _ in range(attempts.NAME_RULE.lock_after):
        attempts.failed_passphrase(tmp_path, lab_pc, "dana", now=1000.0)
    done = admin.reset_passphrase(tmp_path, "Dana", by="prof")
    assert done.sessions_ended == 1 and "Reset the passphrase of “dana”" in done.words(people.RESET)
    assert [p["name"] for p in sessions.active_people(tmp_path)] == ["erin"]
    assert not [row for row in attempts.troubled(tmp_path, now=1000.0) if row["key"].startswith("name:")]
    attempts.check_sign_in(tmp_path, Client("10.0.0.3", new_browser_id()), "dana", now=1000.0)  # a new browser: free
    assert people.claim_name(tmp_path, "dana", "remembered") == "dana"


def test_a_removal_frees_the_name_and_forgets_when_it_was_seen(tmp_path):
    people.claim_name(tmp_path, "gina", "squatted")
    sessions.note_presence(tmp_path, "gina")
    done = admin.remove_name(tmp_path, "GINA", by="prof")
    assert done.name == "gina" and "free again" in done.words(people.REMOVED)
    assert "gina" not in sessions.last_seen(tmp_path)
    assert people.claim_name(tmp_path, "Gina", "hers") == "Gina"


def test_the_people_command_lists_resets_and_removes(tmp_path, capsys):
    from core.cli import main as cli
    from core.shared_store import SharedStore

    people.claim_name(tmp_path, "dana", "forgotten")
    with SharedStore.of_data(tmp_path).write(people.PEOPLE) as db:  # kept from before the name rule
        db.execute(
            "INSERT INTO people (key, name, how, salt, hash) VALUES ('<b>bob</b>', '<b>bob</b>', 'token', '', '')"
        )
    assert cli(["people", "--data-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "dana\tpassphrase set" in listed
    assert any(
        line.startswith("<b>bob</b>\tpassphrase set; refused today: a name starts with a letter") for line in listed
    )
    assert cli(["people", "reset", "DANA", "--data-dir", str(tmp_path)]) == 0
    assert "Reset the passphrase of “dana”" in capsys.readouterr().err
    assert cli(["people", "remove", "<b>bob</b>", "--data-dir", str(tmp_path)]) == 0
    assert "Removed “<b>bob</b>”" in capsys.readouterr().err
    assert [row["name"] for row in people.registered(tmp_path)] == ["dana"]
    assert cli(["people", "remove", "nobody", "--data-dir", str(tmp_path)]) != 0
    assert "nobody has signed in here with the name “nobody”" in capsys.readouterr().err

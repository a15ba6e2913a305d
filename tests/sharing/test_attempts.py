"""Sign-in limits that count the right person: per name and browser, new browsers together, an address only for
browsers that never signed in, and a forged X-Forwarded-For changing nothing (issue 38, section 3)."""

from __future__ import annotations

import threading

import pytest

from core.sharing import attempts
from core.sharing.attempts import Client, SignInPaused
from core.sharing.clients import client_address, new_browser_id

CLASSROOM = "127.0.0.1"  # a whole class behind a proxy that sets no X-Forwarded-For: one address


def _tries_ok(data, client, name, now) -> bool:
    try:
        attempts.check_sign_in(data, client, name, now=now)
    except SignInPaused:
        return False
    return True


def test_one_persons_wrong_tries_make_no_classmate_wait(tmp_path):
    """Before (probe): every connection counted under `client:unknown`; one wrong token made a classmate wait 53 s
    and 30 would have locked the whole class out."""
    guesser, classmate, bob = (Client(CLASSROOM, new_browser_id()) for _ in range(3))
    attempts.signed_in(tmp_path, bob, "bob", now=1.0)  # bob has signed in from his browser before
    now = 1000.0
    for _ in range(attempts.NAME_RULE.lock_after):
        attempts.failed_passphrase(tmp_path, guesser, "bob", now=now)
    for _ in range(attempts.CLIENT_RULE.lock_after):
        attempts.failed_token(tmp_path, guesser, now=now)
    with pytest.raises(SignInPaused, match="locked"):
        attempts.check_sign_in(tmp_path, guesser, "alice", now=now)
    assert _tries_ok(tmp_path, classmate, "alice", now)  # another browser at the same address, a first sign-in
    assert _tries_ok(tmp_path, bob, "bob", now)  # and bob in his own browser


def test_a_guesser_clearing_cookies_never_locks_the_owners_browser(tmp_path, monkeypatch):
    monkeypatch.setattr(attempts, "NEW_BROWSERS_RULE", attempts.Rule(free_tries=2, lock_after=5))
    owner = Client(CLASSROOM, new_browser_id())
    attempts.signed_in(tmp_path, owner, "bob", now=1.0)
    now = 1000.0
    for _ in range(5):  # five fresh browsers, one wrong passphrase each
        attempts.failed_passphrase(tmp_path, Client(CLASSROOM, new_browser_id()), "Bob", now=now)
    with pytest.raises(SignInPaused, match=r"browsers that never signed in as that name.*is locked out of “bob”"):
        attempts.check_sign_in(tmp_path, Client(CLASSROOM, new_browser_id()), "bob", now=now)
    assert _tries_ok(tmp_path, owner, "BOB", now)  # bob's own browser signs in as ever
    assert _tries_ok(tmp_path, Client(CLASSROOM, new_browser_id()), "alice", now)  # other names: untouched


def test_a_forged_forwarded_for_from_this_machine_does_not_reset_the_count(tmp_path):
    """Before (probe): a forged X-Forwarded-For from loopback got a fresh counter. Each try here also clears its
    cookie (a new browser): the address's count of new browsers still grows and then holds them."""
    now, held_at = 1000.0, None
    for i in range(attempts.ADDRESS_RULE.free_tries + 1):  # each a new browser: each counts once
        address = client_address(f"10.0.{i}.1", [f"10.0.{i}.1"])  # what Streamlit reports after uvicorn took it
        client = Client(address, new_browser_id())
        if not _tries_ok(tmp_path, client, None, now):
            held_at = i
            break
        attempts.failed_token(tmp_path, client, now=now)
    assert held_at == attempts.ADDRESS_RULE.free_tries
    [row] = [r for r in attempts.troubled(tmp_path, now=now) if r["key"] == f"client:{CLASSROOM}"]
    assert row["failures"] == attempts.ADDRESS_RULE.free_tries
    # a browser that has signed in here before is not held by the address's count
    known = Client(CLASSROOM, new_browser_id())
    attempts.signed_in(tmp_path, known, "carol", now=1.0)
    assert _tries_ok(tmp_path, known, "carol", now)


def test_a_right_sign_in_clears_its_browsers_counts_only(tmp_path):
    one, other = Client(CLASSROOM, new_browser_id()), Client(CLASSROOM, new_browser_id())
    for client in (one, other):
        attempts.failed_passphrase(tmp_path, client, "dana", now=1000.0)
    attempts.signed_in(tmp_path, one, "dana", now=1000.0)
    keys = {row["key"] for row in attempts.troubled(tmp_path, now=1000.0)}
    assert one.browser_key not in keys and attempts.name_key_of("dana", one.browser) not in keys
    assert other.browser_key in keys and attempts.name_key_of("dana", other.browser) in keys
    labels = {row["label"] for row in attempts.troubled(tmp_path, now=1000.0)}
    assert f"the name “dana” in a browser at {CLASSROOM} (…{other.browser[-4:]})" in labels  # the Class page's words


def test_failures_at_the_same_moment_all_count(tmp_path):
    """Each failure is one transaction: eight threads at once lose none."""
    client = Client("198.51.100.7", new_browser_id())

    def fail() -> None:
        for _ in range(10):
            attempts.failed(tmp_path, client.address_key, client.address_label, now=1000.0)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [row] = attempts.troubled(tmp_path, now=1000.0)
    assert row["failures"] == 80


def test_the_lock_a_note_warns_of_is_this_browsers_and_names_the_registered_spelling(tmp_path, monkeypatch):
    """Before (walk, item 8): "7 more failed sign-ins lock the name “BOB” for 15 min", though the lock held only
    that browser and "BOB" was the typed spelling of "bob"."""
    guesser = Client(CLASSROOM, new_browser_id())
    notes = [
        attempts.failed_passphrase(tmp_path, guesser, "bob", now=1000.0) for _ in range(attempts.NAME_RULE.lock_after)
    ]
    assert notes[attempts.NAME_RULE.free_tries - 1].endswith(
        "lock “bob” in this browser for 15 min; each try now waits longer."
    )
    assert (
        notes[-1] == "“bob” in this browser is now locked for 15 min after 10 failed sign-ins (an admin can unlock it)."
    )
    assert not any("the name" in note for note in notes)


def test_a_new_browser_held_by_a_guessers_tries_is_told_why_and_what_to_do(tmp_path, monkeypatch):
    """Before (walk, item 7): the real alice on a new browser read only "Too many failed sign-ins for the name
    “alice” from browsers it has not signed in from: wait 22 s"."""
    for _ in range(attempts.NEW_BROWSERS_RULE.free_tries + 1):
        attempts.failed_passphrase(tmp_path, Client(f"10.1.0.{_}", new_browser_id()), "alice", now=1000.0)
    with pytest.raises(SignInPaused) as held:
        attempts.check_sign_in(tmp_path, Client("10.2.0.1", new_browser_id()), "alice", now=1000.0)
    said = str(held.value)
    assert "Someone has given" in said and "wrong passphrases for “alice”" in said and "unlock" in said


def test_forgetting_a_name_clears_its_counts_and_its_browsers_only(tmp_path):
    one, other = Client(CLASSROOM, new_browser_id()), Client(CLASSROOM, new_browser_id())
    attempts.signed_in(tmp_path, one, "dana", now=1.0)
    attempts.signed_in(tmp_path, one, "erin", now=1.0)
    for client in (one, other):
        attempts.failed_passphrase(tmp_path, client, "dana", now=1000.0)
        attempts.failed_passphrase(tmp_path, client, "erin", now=1000.0)
    assert attempts.forget_name(tmp_path, "DANA") == 3  # dana in two browsers, and from new browsers
    keys = {row["key"] for row in attempts.troubled(tmp_path, now=1000.0)}
    assert not any(key.startswith("name:dana|") for key in keys)
    assert attempts.name_key_of("erin", other.browser) in keys and one.browser_key in keys
    assert attempts._known(tmp_path, one.browser, "dana") == (True, False)  # one still knows erin, not dana

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
    with pytest.raises(SignInPaused, match="from browsers it has not signed in from is locked"):
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

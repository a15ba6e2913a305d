"""Sign-in limits in real browsers (issue 38, section 3): one person's wrong tokens make no classmate in another
browser wait, and a forged X-Forwarded-For from this machine starts no fresh count unless a proxy is configured.

The app is `streamlit run` (tests/test_browser_sharing.py's), so the address goes through the web server's own
proxy-header handling, as in a classroom.
"""

from __future__ import annotations

import pytest

from core.bench.common import free_port
from core.bench.server_cpu import CHROMIUM_ARGS
from core.sharing import attempts
from tests.conftest import make_image_dataset
from tests.test_browser import chromium_path
from tests.test_browser_sharing import _streamlit

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TOKEN = "class-token-for-the-browser"


def _wrong_tokens_with_forged_headers(browser, url: str, tries: int) -> str:
    """One guesser's browser (its cookies kept), each try after a reload under a new forged X-Forwarded-For;
    returns the last try's error."""
    page = browser.new_context().new_page()
    said = ""
    for i in range(tries):
        page.set_extra_http_headers({"X-Forwarded-For": f"10.0.{i}.1"})
        page.goto(url, timeout=60_000)
        page.get_by_role("textbox", name="Access token").fill(f"wrong-token-{i}")
        page.get_by_role("textbox", name="Your name").fill("Gary")
        page.get_by_role("textbox", name="Your passphrase").fill("eevee")
        page.get_by_role("button", name="Sign in").click()
        answer = page.get_by_text("not this server's").or_(page.get_by_text("Too many failed sign-ins"))
        answer.first.wait_for(timeout=60_000)
        said = answer.first.inner_text()
    return said


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_a_guessers_tries_hold_only_their_own_browser(tmp_path, trusted):
    """Before (probe): every connection counted under one key, so one person's wrong token made a classmate wait
    53 s; a forged X-Forwarded-For from loopback got a fresh counter at each try. Whether the last try lands inside
    the short wait the free tries end with depends on the machine's speed, so the count kept says which it did."""
    from playwright.sync_api import sync_playwright

    make_image_dataset(tmp_path / "data" / "flowers", {"daisy": 4, "rose": 4}, size=(48, 40))
    env = {"FLORA_ACCESS_TOKEN": TOKEN, "FLORA_TRUSTED_PROXIES": trusted}
    # untrusted: past the browser's free tries; trusted: each forged address counted apart shows in a few tries
    tries = 3 if trusted else attempts.CLIENT_RULE.free_tries + 1
    with _streamlit(tmp_path, free_port(), env, tmp_path / "no-secrets.toml") as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            said = _wrong_tokens_with_forged_headers(browser, app["url"], tries)
            kept = attempts.troubled(tmp_path / "data")
            counts = [row["failures"] for row in kept if row["key"].startswith("client:") and "|browser:" in row["key"]]
            if trusted:  # the header is believed: each forged address is a client of its own (as configured)
                assert "not this server's" in said and "wait" not in said
                assert counts == [1] * tries  # one browser's tries, none of them counted with another
            else:  # one browser whatever address it forged: its free tries spent, the last try waits or counts
                (count,) = counts
                if count == tries - 1:  # came within the 2 s wait the free tries end with
                    assert "Too many failed sign-ins from this browser: wait" in said
                else:  # came after it (a slow machine: the reload and typing took longer)
                    assert count == tries, counts
                    left = attempts.CLIENT_RULE.lock_after - tries
                    assert f"{left} more failed sign-ins lock this browser for" in said
            classmate = browser.new_context().new_page()  # another browser at the same address, right away
            classmate.goto(f"{app['url']}/?token={TOKEN}", timeout=60_000)
            classmate.get_by_role("textbox", name="Your name").fill("Misty")
            classmate.get_by_role("textbox", name="Your passphrase").fill("staryu")
            classmate.get_by_role("button", name="Sign in").click()
            classmate.get_by_role("button", name="Sign out everywhere").wait_for(timeout=60_000)
        finally:
            browser.close()

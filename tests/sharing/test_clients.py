"""The address a sign-in counts under: X-Forwarded-For believed only from a configured proxy, checked against the
web server's own middleware (uvicorn's, which Streamlit runs with its defaults)."""

from __future__ import annotations

import httpx
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core.sharing.clients import (
    THIS_MACHINE,
    TRUSTED_PROXIES_ENV,
    UNKNOWN_PROXY,
    WEB_SERVER_TRUST_ENV,
    browser_id,
    client_address,
    new_browser_id,
)


@pytest.fixture(autouse=True)
def _defaults(monkeypatch):
    monkeypatch.delenv(TRUSTED_PROXIES_ENV, raising=False)
    monkeypatch.delenv(WEB_SERVER_TRUST_ENV, raising=False)


def _through_web_server(peer: str, forwarded: list[str], trusted: list[str] | None = None) -> str:
    """What Flora counts for a request from `peer` carrying `forwarded`, as Streamlit's server hands it over: the
    client uvicorn's ProxyHeadersMiddleware (default trust) leaves in the scope, None for loopback (st.context)."""
    seen = {}

    async def app(scope, receive, send):
        host = scope["client"][0]
        seen["ip"] = None if host in ("127.0.0.1", "::1") else host
        headers = [v.decode("latin1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        seen["address"] = client_address(seen["ip"], headers, trusted)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    import asyncio

    async def call():
        transport = httpx.ASGITransport(app=ProxyHeadersMiddleware(app, "127.0.0.1,::1"), client=(peer, 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://flora") as http:
            await http.get("/", headers=[("X-Forwarded-For", value) for value in forwarded])

    asyncio.run(call())
    return seen["address"]


def test_a_forged_header_from_this_machine_counts_as_this_machine():
    """Before (probe): a forged X-Forwarded-For from loopback got a fresh counter at each try."""
    for forged in (["10.0.0.1"], ["203.0.113.9"], ["1.2.3.4, 5.6.7.8"], ["[2001:db8::1]:443"], ["127.0.0.1"]):
        assert _through_web_server("127.0.0.1", forged) == THIS_MACHINE, forged
    assert _through_web_server("127.0.0.1", []) == THIS_MACHINE


def test_a_remote_client_is_its_own_address_whatever_it_forges():
    assert _through_web_server("198.51.100.7", []) == "198.51.100.7"
    assert _through_web_server("198.51.100.7", ["10.0.0.1"]) == "198.51.100.7"  # the web server did not believe it


def test_a_configured_proxy_names_the_client(monkeypatch):
    # nginx on this machine, told about: the client it appended, not what the client claimed before it
    assert _through_web_server("127.0.0.1", ["9.9.9.9, 10.0.0.7"], trusted=["127.0.0.1"]) == "10.0.0.7"
    monkeypatch.setenv(TRUSTED_PROXIES_ENV, "127.0.0.1, 192.0.2.0/24")
    assert _through_web_server("127.0.0.1", ["10.0.0.8"]) == "10.0.0.8"
    # a proxy on another machine the web server itself does not trust
    assert _through_web_server("192.0.2.5", ["9.9.9.9, 10.0.0.9"]) == "10.0.0.9"
    assert _through_web_server("198.51.100.7", ["10.0.0.9"]) == "198.51.100.7"  # not a proxy: not believed


def test_a_web_server_told_to_trust_other_hosts_makes_flora_count_the_proxy(monkeypatch):
    monkeypatch.setenv(WEB_SERVER_TRUST_ENV, "192.0.2.5")
    assert client_address("10.0.0.1", ["10.0.0.1"]) == UNKNOWN_PROXY  # the header's address is not believed
    assert client_address("198.51.100.7", ["10.0.0.1"]) == "198.51.100.7"


def test_browser_ids_are_made_here_or_ignored():
    made = new_browser_id()
    assert browser_id(made) == made and new_browser_id() != made
    for forged in (None, "", "x", "a" * 65, "../../etc", "id with spaces and more"):
        assert browser_id(forged) is None

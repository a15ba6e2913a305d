"""Who is signing in, as far as the server can tell: the address to count them under, and their browser.

The address. Streamlit serves through uvicorn, which believes `X-Forwarded-For` from the hosts in
FORWARDED_ALLOW_IPS (loopback when unset): a browser on this machine, or a student whose request reaches the app
through a proxy on it, could name any address in that header and start a fresh count at each try. Flora believes
the header only when FLORA_TRUSTED_PROXIES names the proxy (the model server's setting, `--trusted-proxies`), as
the model server does; otherwise an address the web server took from the header counts as the connection it came
on (this machine). A reverse proxy that sets no header (nginx's default) puts a whole class under one address;
the browser id below tells them apart.

The browser. A random id the sign-in page keeps in a cookie (`new_browser_id`): failures count per browser, so one
person's wrong tries make nobody else wait, and a browser that has signed in as a name before is recognised
there (core.sharing.attempts). Clearing the cookie only makes a browser new again, and new browsers at one address
share a generous count of their own.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets

TRUSTED_PROXIES_ENV = "FLORA_TRUSTED_PROXIES"  # comma-separated addresses whose X-Forwarded-For is believed
WEB_SERVER_TRUST_ENV = "FORWARDED_ALLOW_IPS"  # uvicorn's own list (Streamlit leaves it at its default)
WEB_SERVER_DEFAULT_TRUST = "127.0.0.1,::1"
THIS_MACHINE = "127.0.0.1"  # the address counted for a connection from this machine
UNKNOWN_PROXY = "a forwarding proxy"  # one the web server believed but Flora was not told about (not loopback)
_BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def trusted_proxies() -> list[str]:
    """The proxies whose X-Forwarded-For Flora believes (FLORA_TRUSTED_PROXIES); none when unset."""
    return _hosts(os.environ.get(TRUSTED_PROXIES_ENV, ""))


def client_address(seen: str | None, forwarded_for: list[str], trusted: list[str] | None = None) -> str:
    """The address to count a sign-in under.

    Args:
        seen: the address the web server reports (Streamlit's `st.context.ip_address`: None for loopback; already
            taken from X-Forwarded-For when the connection came from a host the web server trusts).
        forwarded_for: the request's X-Forwarded-For header values, as sent.
        trusted: Flora's trusted proxies (default: FLORA_TRUSTED_PROXIES).
    """
    seen = seen or THIS_MACHINE
    hosts = [host for value in forwarded_for for host in _hosts(value)]
    if not hosts:
        return seen
    trusted = trusted_proxies() if trusted is None else trusted
    web_trust = os.environ.get(WEB_SERVER_TRUST_ENV, WEB_SERVER_DEFAULT_TRUST)
    web_trusted = ["*"] if web_trust.strip() == "*" else _hosts(web_trust)
    if _same(_client_from(hosts, web_trusted), seen):  # the web server took `seen` from the header
        if trusted:
            return _client_from(hosts, [*trusted, *web_trusted])
        # the header is not believed: count the connection it came on, one of the web server's trusted hosts
        return THIS_MACHINE if _all_loopback(web_trusted) else UNKNOWN_PROXY
    if _in(seen, trusted):  # a configured proxy the web server does not trust itself
        return _client_from(hosts, trusted)
    return seen


def new_browser_id() -> str:
    return secrets.token_urlsafe(18)


def browser_id(cookie: str | None) -> str | None:
    """A browser id from its cookie, or None when absent or not one Flora made (a hand-made cookie is ignored)."""
    return cookie if isinstance(cookie, str) and _BROWSER_ID.fullmatch(cookie) else None


def _hosts(value: str) -> list[str]:
    return [_strip_port(part.strip()) for part in value.split(",") if part.strip()]


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:  # v4:port
        return host.split(":", 1)[0]
    return host


def _client_from(hosts: list[str], trusted: list[str]) -> str:
    """What uvicorn takes from X-Forwarded-For: the right-most host not trusted, else the first."""
    if "*" in trusted:
        return hosts[0]
    for host in reversed(hosts):
        if not _in(host, trusted):
            return host
    return hosts[0]


def _in(host: str, trusted: list[str]) -> bool:
    if "*" in trusted:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in trusted
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _same(a: str, b: str) -> bool:
    """Two addresses alike, loopback being one (Streamlit reports none for 127.0.0.1 and ::1)."""
    try:
        left, right = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a == b
    return left == right or (left.is_loopback and right.is_loopback)


def _all_loopback(hosts: list[str]) -> bool:
    """Every host (or network) in the list is on this machine."""
    for host in hosts:
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            return False
        if not (network.network_address.is_loopback and network.broadcast_address.is_loopback):
            return False
    return bool(hosts)

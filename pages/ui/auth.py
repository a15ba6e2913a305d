"""Who is using the app: the sign-in gate of a shared Flora, the signed-in user, and the sidebar's sign-out.

Not shared (the app listens on 127.0.0.1), the person at the keyboard is "local" and an admin, and
nothing here shows. Shared (core.sharing), an unsigned visitor sees the sign-in page and nothing
else: OpenID Connect through Streamlit's `st.login`, or the class's access token and a name.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from pathlib import Path

import streamlit as st

from core import sharing
from core.sharing import LOCAL, User
from pages.ui import common, plain

log = logging.getLogger("flora")
USER_KEY = "flora_user"  # the signed-in user of this browser session (token sign-in)
TOKEN_PARAM = "token"


def oidc_configured() -> str | None:
    """The secrets file (among Streamlit's `secrets.files`) whose [auth] section st.login can use."""
    return sharing.oidc_configured([Path(p) for p in st.get_option("secrets.files") or []])


def shared() -> bool:
    return common.shared()


def listen_address() -> str | None:
    return common.listen_address()


def current_user() -> User:
    """The signed-in user (LOCAL when not shared). Only valid after `gate()` let the page through."""
    if not shared():
        return LOCAL
    user = st.session_state.get(USER_KEY)
    if user is not None:
        return user
    if oidc_configured() and st.user.is_logged_in:
        return _oidc_user()
    return LOCAL  # not reached past the gate


def _oidc_user() -> User:
    info = st.user
    email = str(info.get("email") or "")
    subject = str(info.get("sub") or "")
    identity = email or subject
    name = str(info.get("name") or identity)
    return User(identity, name, admin=sharing.is_admin(email, subject, name), how="oidc")


def gate() -> User:
    """Let a signed-in (or local) user through; draw the sign-in page and stop for anyone else."""
    if not shared():
        return LOCAL
    st.set_option("client.showErrorDetails", False)  # tracebacks go to the server log, with an error id
    try:
        files = [Path(p) for p in st.get_option("secrets.files") or []]
        how = sharing.check_ready(listen_address() or "0.0.0.0", common.data_root(), files)
    except sharing.NotReadyToShare as e:
        st.title("Flora is not ready to share")
        st.error(str(e), icon=":material/lock:")
        st.stop()
    if how == "oidc":
        if st.user.is_logged_in:
            return _oidc_user()
        _sign_in_page("Sign in with your organisation's account to use Flora here.")
        st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login)
        st.stop()
    user = st.session_state.get(USER_KEY)
    if user is not None:
        return user
    _token_sign_in()
    st.stop()


def _sign_in_page(text: str) -> None:
    st.title(":material/local_florist: Flora")
    st.caption("A studio for transfer learning on image datasets, shared on this server.")
    st.info(text, icon=":material/lock:")


def _token_sign_in() -> None:
    expected = sharing.access_token(common.data_root())
    given = st.query_params.get(TOKEN_PARAM) or st.session_state.get("flora_token_given")
    _sign_in_page("This Flora is shared with an access token (your instructor has it, or the link they sent).")
    with st.form("flora_sign_in", enter_to_submit=True):
        token = st.text_input("Access token", value=given or "", type="password", key="flora_token_field")
        name = st.text_input(
            "Your name",
            key="flora_name_field",
            max_chars=60,
            help="Your runs are recorded under it; others see them read-only.",
        )
        if st.form_submit_button("Sign in", type="primary", icon=":material/login:"):
            if not sharing.tokens_match(token.strip(), expected):
                st.error("That access token is not this server's.", icon=":material/key_off:")
            elif not " ".join(name.split()):
                st.error("Give your name: your runs are recorded under it.", icon=":material/badge:")
            else:
                name = " ".join(name.split())
                st.session_state[USER_KEY] = User(name, name, admin=sharing.is_admin(name), how="token")
                st.query_params.pop(TOKEN_PARAM, None)
                st.rerun()


def sign_out() -> None:
    user = current_user()
    st.session_state.pop(USER_KEY, None)
    if user.how == "oidc":
        st.logout()


def sidebar(user: User) -> None:
    """Who is signed in, with a sign-out (shared only)."""
    if user.how == "local":
        return
    role = " · admin" if user.admin else ""
    st.caption(f":material/person: {plain.md(user.label)}{role}")
    st.button("Sign out", key="flora_sign_out", on_click=sign_out, icon=":material/logout:", type="tertiary")


def run_page(navigation) -> None:
    """Run the picked page; when shared, an error shows an id and its traceback goes to the server log."""
    if not shared():
        navigation.run()
        return
    try:
        navigation.run()
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        log.error("error %s on page %s:\n%s", error_id, navigation.title, traceback.format_exc())
        st.error(
            f"Something went wrong on this page (error {error_id}). The server's log has the details; "
            "tell whoever runs this Flora the error id.",
            icon=":material/error:",
        )


def can_change(run) -> bool:
    """Whether the signed-in user may stop, rename or delete `run`: their own, or any for an admin."""
    user = current_user()
    return user.admin or run.owner == user.id


def read_only_note(run) -> None:
    """Say why a run's controls are missing: it is someone else's."""
    st.caption(f":material/visibility: {plain.md(run.owner)}'s run: you can look at it, not change it.")


MINE, EVERYONE = "Mine", "Everyone's"


def scope_runs(runs: list, key: str) -> list:
    """Shared: a "Mine / Everyone's" choice above a run list (mine first by default); otherwise every run."""
    if not shared():
        return runs
    user = current_user()
    mine = [run for run in runs if run.owner == user.id]
    if key not in st.session_state:
        st.session_state[key] = MINE if mine else EVERYONE
    scope = st.segmented_control("Runs", [MINE, EVERYONE], key=key, help="Others' runs are read-only.")
    if scope == EVERYONE or scope is None:
        return runs
    return mine

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
SESSION_PARAM = "session"  # token sign-in: the session id, kept in the URL (a reload stays signed in)
SESSION_KEY = "flora_session"


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
    if user is None:  # a reload or a new page: the session id in the URL signs in again
        user = sharing.session_user(common.data_root(), st.query_params.get(SESSION_PARAM))
        if user is not None:
            st.session_state[USER_KEY] = user
            st.session_state[SESSION_KEY] = st.query_params.get(SESSION_PARAM)
    if user is not None:
        if st.session_state.get(SESSION_KEY):
            st.query_params[SESSION_PARAM] = st.session_state[SESSION_KEY]  # kept in the URL across pages
        return user
    _token_sign_in()
    st.stop()


def _sign_in_page(text: str) -> None:
    st.title(":material/local_florist: Flora")
    st.caption("A studio for transfer learning on image datasets, shared on this server.")
    st.info(text, icon=":material/lock:")


def _token_sign_in() -> None:
    data_root = common.data_root()
    expected, admin_token = sharing.access_token(data_root), sharing.admin_token()
    given = st.query_params.get(TOKEN_PARAM) or ""
    if st.query_params.get(SESSION_PARAM):
        st.caption("Your earlier session has ended (or is not this server's): sign in again.")
    _sign_in_page("This Flora is shared with an access token (your instructor has it, or the link they sent).")
    if given and not (sharing.tokens_match(given, expected) or sharing.tokens_match(given, admin_token)):
        st.warning("The token in this link is not this server's: check the link, or type the token.")
    with st.form("flora_sign_in", enter_to_submit=True):
        token = st.text_input("Access token", value=given, type="password", key="flora_token_field")
        name = st.text_input(
            "Your name",
            key="flora_name_field",
            max_chars=60,
            help="Your runs are recorded under it; others see them read-only.",
        )
        passphrase = st.text_input(
            "Your passphrase",
            type="password",
            key="flora_passphrase_field",
            help="The first time you use a name, the passphrase you type becomes its own: next time (another "
            "computer, another day) the same name needs it, so nobody else can sign in as you.",
        )
        if st.form_submit_button("Sign in", type="primary", icon=":material/login:"):
            admin = sharing.tokens_match(token.strip(), admin_token)
            name = " ".join(name.split())
            if not (admin or sharing.tokens_match(token.strip(), expected)):
                st.error("That access token is not this server's.", icon=":material/key_off:")
            elif not name:
                st.error("Give your name: your runs are recorded under it.", icon=":material/badge:")
            else:
                try:
                    name = sharing.claim_name(data_root, name, passphrase)
                except ValueError as e:  # NameTaken, or a passphrase too short
                    st.error(plain.md(e), icon=":material/badge:")
                    return
                session_id = sharing.open_session(data_root, name, admin)
                st.session_state[USER_KEY] = User(name, name, admin=admin, how="token")
                st.session_state[SESSION_KEY] = session_id
                st.query_params.pop(TOKEN_PARAM, None)
                st.query_params[SESSION_PARAM] = session_id
                st.rerun()


def sign_out() -> None:
    user = current_user()
    sharing.close_session(common.data_root(), st.session_state.pop(SESSION_KEY, None))
    st.query_params.pop(SESSION_PARAM, None)
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
    scope = st.segmented_control(
        "Runs",
        [MINE, EVERYONE],
        key=key,
        required=True,
        help="Mine: the runs you started. Everyone's: every run on this server (others' are read-only to you).",
    )
    if scope == EVERYONE:
        return runs
    if not mine:
        st.caption("You have not started a run yet: start one, or look at Everyone's.")
    return mine

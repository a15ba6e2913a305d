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
from core.errors import InvalidInput
from core.sharing import LOCAL, User, attempts, clients, people, sessions
from pages.ui import common, plain
from pages.ui.script_runs import stops_end_the_script

log = logging.getLogger("flora")
USER_KEY = "flora_user"  # the signed-in user of this browser session (token sign-in)
TOKEN_PARAM = "token"
OLD_SESSION_PARAM = "session"  # links from before the cookie carried the session: dropped, never honoured
SESSION_KEY = "flora_session"
COOKIE_ACTION_KEY = "flora_cookie_action"  # ("set", id) or ("clear", None): written by the next draw
BROWSER_KEY = "flora_browser"  # this browser's id (core.sharing.clients), also kept in a cookie for a year
BROWSER_COOKIE_DAYS = 365


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
    if _mode() == "oidc" and st.user.is_logged_in:
        return _oidc_user()
    return LOCAL  # not reached past the gate


def _mode() -> str:
    """How people sign in, fixed when the app started (raises NotReadyToShare)."""
    files = [Path(p) for p in st.get_option("secrets.files") or []]
    return sharing.auth_mode(listen_address() or "0.0.0.0", common.data_root(), files)


def _oidc_user() -> User:
    """The identity provider's user: recorded under the e-mail (or the subject); an admin only by the verified
    e-mail or the subject, never by the display name, which some providers let people set."""
    info = st.user
    email = str(info.get("email") or "")
    subject = str(info.get("sub") or "")
    identity = email or subject
    name = str(info.get("name") or identity)
    verified = info.get("email_verified") is not False  # a provider that says "not verified" is believed
    return User(identity, name, admin=sharing.is_admin(email if verified else None, subject), how="oidc")


def _cookie_name() -> str:
    return f"flora_session_{st.get_option('server.port') or 8501}"


def _write_cookie() -> None:
    """Set or clear the session cookie in the browser (a script on the page: Streamlit has no cookie writer).
    SameSite=Strict, and Secure when the page came over https."""
    action = st.session_state.pop(COOKIE_ACTION_KEY, None)
    if action is None:
        return
    what, session_id = action
    if what == "set":
        _set_cookie(_cookie_name(), session_id, sessions.SESSION_HOURS * 3600)
    else:
        _set_cookie(_cookie_name(), "", 0)


def _set_cookie(name: str, value: str, max_age: int) -> None:
    st.html(
        f"""<script>document.cookie = "{name}={value}; Max-Age={max_age}; Path=/; SameSite=Strict"
        + (location.protocol === "https:" ? "; Secure" : "");</script>""",
        unsafe_allow_javascript=True,
    )


def _client() -> attempts.Client:
    """Who is trying to sign in: the address to count them under (X-Forwarded-For believed only from a configured
    proxy: core.sharing.clients) and this browser's id, made and kept in a cookie on its first sign-in page."""
    browser = st.session_state.get(BROWSER_KEY) or clients.browser_id(st.context.cookies.get(_browser_cookie()))
    if browser is None:
        browser = clients.new_browser_id()
    if st.session_state.get(BROWSER_KEY) != browser:
        st.session_state[BROWSER_KEY] = browser
        _set_cookie(_browser_cookie(), browser, BROWSER_COOKIE_DAYS * 86400)
    seen = st.context.ip_address
    forwarded = [value for value in st.context.headers.get_all("X-Forwarded-For") if isinstance(value, str)]
    return attempts.Client(clients.client_address(seen if isinstance(seen, str) else None, forwarded), browser)


def _browser_cookie() -> str:
    return f"flora_browser_{st.get_option('server.port') or 8501}"


def gate() -> User | None:
    """Let a signed-in (or local) user through; for anyone else draw the sign-in page and answer None.

    On None the app draws nothing more and its script ends by returning, not by `st.stop()`: Streamlit drops the
    fragments a run did not draw only when its script returns, so after a sign-out ended by `st.stop()` the
    sidebar's Jobs panel (a fragment refreshed every few seconds) could run once more, drawing into a sidebar the
    sign-in page no longer has; the browser's app then failed ("Bad delta path index") and the page went blank.
    """
    if not shared():
        return LOCAL
    st.set_option("client.showErrorDetails", False)  # tracebacks go to the server log, with an error id
    try:
        how = _mode()
    except sharing.NotReadyToShare as e:
        st.title("Flora is not ready to share")
        st.error(str(e), icon=":material/lock:")
        return None
    if how == "oidc":
        if st.user.is_logged_in:
            user = _oidc_user()
            if _note_presence(user):
                people.remember_identity(common.data_root(), user.id)
            return user
        _sign_in_page("Sign in with your organisation's account to use Flora here.")
        st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login)
        return None
    if OLD_SESSION_PARAM in st.query_params:  # an old link: a session never travels in a URL
        st.query_params.pop(OLD_SESSION_PARAM, None)
    _write_cookie()
    user = st.session_state.get(USER_KEY)
    if user is not None and sessions.session_user(common.data_root(), st.session_state.get(SESSION_KEY)) is None:
        st.session_state.pop(USER_KEY, None)  # signed out everywhere (or expired) from another browser
        user = None
    if user is None:  # a reload or a new tab: the session cookie signs in again
        session_id = st.context.cookies.get(_cookie_name())
        user = sessions.session_user(common.data_root(), session_id)
        if user is not None:
            st.session_state[USER_KEY] = user
            st.session_state[SESSION_KEY] = session_id
    if user is not None:
        _note_presence(user)
        return user
    _token_sign_in()
    return None


PRESENCE_KEY = "flora_presence_at"


def _note_presence(user: User) -> bool:
    """Note that `user` is here (for the instructor's Class page), at most once a minute per browser; True when
    it wrote."""
    import time

    now = time.time()
    if now - st.session_state.get(PRESENCE_KEY, 0.0) < sessions.SEEN_EVERY_S:
        return False
    st.session_state[PRESENCE_KEY] = now
    sessions.note_presence(common.data_root(), user.id, now)
    return True


def _sign_in_page(text: str) -> None:
    st.title(":material/local_florist: Flora")
    st.caption("A studio for transfer learning on image datasets, shared on this server.")
    st.info(text, icon=":material/lock:")


def _token_sign_in() -> None:
    data_root = common.data_root()
    expected, admin_token = sharing.access_token(data_root), sharing.admin_token()
    given = st.query_params.get(TOKEN_PARAM) or ""
    _sign_in_page("This Flora is shared with an access token (your instructor has it, or the link they sent).")
    _client()  # this browser's id, kept before the first try
    if given and not (sharing.tokens_match(given, expected) or sharing.tokens_match(given, admin_token)):
        st.warning("The token in this link is not this server's: check the link, or type the token.")
    with st.form("flora_sign_in", enter_to_submit=True):
        token = st.text_input("Access token", value=given, type="password", key="flora_token_field")
        name = st.text_input(
            "Your name",
            key="flora_name_field",  # no max_chars: the page drops a longer pasted value, and the rule says why
            help=f"Your runs are recorded under it; others see them read-only. A name is {people.NAME_RULE}.",
        )
        passphrase = st.text_input(
            "Your passphrase",
            type="password",
            key="flora_passphrase_field",
            help="The first time you use a name, the passphrase you type becomes its own: next time (another "
            "computer, another day) the same name needs it, so nobody else can sign in as you.",
        )
        if st.form_submit_button("Sign in", type="primary", icon=":material/login:"):
            _try_sign_in(data_root, token.strip(), " ".join(name.split()), passphrase, expected, admin_token)


def _try_sign_in(data_root, token: str, name: str, passphrase: str, expected, admin_token) -> None:
    client = _client()
    if not token:
        st.error("Type the access token: your instructor has it, or the link they sent.", icon=":material/key:")
        return
    try:  # the name as registered ("BOB" is bob's): the pause is counted and named by it
        attempts.check_sign_in(data_root, client, people.registered_name(data_root, name) if name else None)
    except attempts.SignInPaused as e:
        st.error(plain.md(e), icon=":material/timer:")
        return
    admin = sharing.tokens_match(token, admin_token)
    if not (admin or sharing.tokens_match(token, expected)):
        note = attempts.failed_token(data_root, client)
        st.error(f"That access token is not this server's. {note}".strip(), icon=":material/key_off:")
        return
    if not name:
        st.error("Give your name: your runs are recorded under it.", icon=":material/badge:")
        return
    try:
        name = people.claim_name(data_root, name, passphrase, owners=common.work_owners())
    except people.WrongPassphrase as e:  # a wrong passphrase for a claimed name counts; a reserved one does not
        note = attempts.failed_passphrase(data_root, client, e.registered)
        st.error(plain.md(f"{e} {note}".strip()), icon=":material/badge:")
        return
    except (people.NameTaken, InvalidInput) as e:  # reserved, a look-alike, a name the rule refuses, a short passphrase
        st.error(plain.md(e), icon=":material/badge:")
        return
    attempts.signed_in(data_root, client, name)
    session_id = sessions.open_session(data_root, name, admin)
    st.session_state[USER_KEY] = User(name, name, admin=admin, how="token")
    st.session_state[SESSION_KEY] = session_id
    st.session_state[COOKIE_ACTION_KEY] = ("set", session_id)
    st.query_params.pop(TOKEN_PARAM, None)
    st.rerun()


def sign_out(everywhere: bool = False) -> None:
    user = current_user()
    data_root = common.data_root()
    if everywhere and user.how == "token":
        sessions.close_sessions_of(data_root, user.id)
    sessions.close_session(data_root, st.session_state.pop(SESSION_KEY, None))
    st.session_state.pop(USER_KEY, None)
    if user.how == "oidc":
        st.logout()
    else:
        st.session_state[COOKIE_ACTION_KEY] = ("clear", None)


def sidebar(user: User) -> None:
    """Who is signed in, with a sign-out (shared only)."""
    if user.how == "local":
        return
    role = " · admin" if user.admin else ""
    st.caption(f":material/person: {plain.md(user.label)}{role}")
    st.button("Sign out", key="flora_sign_out", on_click=sign_out, icon=":material/logout:", type="tertiary")
    if user.how == "token":
        st.button(
            "Sign out everywhere",
            key="flora_sign_out_everywhere",
            on_click=sign_out,
            kwargs={"everywhere": True},
            icon=":material/devices_off:",
            type="tertiary",
            help="Ends your sessions on every browser and computer (one left signed in on a classroom machine, say).",
        )


def run_page(navigation) -> None:
    """Run the picked page; when shared, an error shows an id and its traceback goes to the server log. A page
    that stops itself (`st.stop()`: no run yet, say) ends the app's script as a return would
    (`script_runs.stops_end_the_script`), so the fragments of the page before it are dropped."""
    if not shared():
        with stops_end_the_script():
            navigation.run()
        return
    try:
        with stops_end_the_script():
            navigation.run()
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        log.error("error %s on page %s:\n%s", error_id, navigation.title, traceback.format_exc())
        st.error(
            f"Something went wrong on this page (error {error_id}). The server's log has the details; "
            "tell whoever runs this Flora the error id.",
            icon=":material/error:",
        )


def can_change(thing) -> bool:
    """Whether the signed-in user may stop, rename or delete `thing` (a run, a sweep, anything with an `owner`):
    their own, or any for an admin."""
    user = current_user()
    return user.admin or people.same_person(thing.owner, user.id)


def read_only_note(thing, what: str = "run") -> None:
    """Say why a run's (or sweep's) controls are missing: it is someone else's."""
    whose = plain.md(people.layer_of(thing.owner))
    st.caption(f":material/visibility: {whose}'s {what}: you can look at it, not change it.")


MINE, EVERYONE = "Mine", "Everyone's"


def scope_runs(runs: list, key: str) -> list:
    """Shared: a "Mine / Everyone's" choice above a run list (mine first by default); otherwise every run."""
    if not shared():
        return runs
    user = current_user()
    mine = [run for run in runs if people.same_person(run.owner, user.id)]
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

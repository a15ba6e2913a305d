"""Class: the instructor's view of a shared Flora (admins only). Who is here, what each person runs and waits
for, what the exercise costs in queue time, and the seats to free: a locked name, a person's queue, a forgotten
passphrase, a name that squats a classmate's or is markup."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from core.processes import JobState
from core.runs.curves import format_duration
from core.sharing import admin, attempts, classroom, sessions
from core.sharing import people as names
from core.sharing.people import LOCAL_USER, layer_of, server_users
from core.train import jobs
from pages.ui import auth, common, plain

st.title("Class")
user = auth.current_user()
if not (auth.shared() and user.admin):
    st.info("The Class page is for the admins of a shared Flora.", icon=":material/lock:")
    st.stop()

st.caption(
    "Who is using this Flora, what each person has running and waiting, and what a round of the exercise costs. "
    f"Active: used a page in the last {sessions.ACTIVE_MINUTES} minutes."
)
data_root = common.data_root()
now = time.time()
runs = common.runs()
people = classroom.people_table(runs, sessions.last_seen(data_root), common.sweeps())
active = [p for p in people if p.active(now)]

with st.container(horizontal=True):
    st.metric("Active now", len(active))
    st.metric("People", len(people))
    st.metric("Running", sum(p.running for p in people))
    st.metric("Waiting for the device", sum(p.queued for p in people))

st.info(plain.md(classroom.class_cost(runs, len(active) or len(people))), icon=":material/schedule:")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never on a page"
    return "now" if now - seconds < 60 else f"{format_duration(now - seconds)} ago"


st.subheader("People")
if not people:
    st.caption("Nobody has signed in or run anything yet.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": f"{p.name} (this machine: the command line, {', '.join(sorted(server_users()))})"
                    if p.name == LOCAL_USER
                    else p.name,
                    "active": p.active(now),
                    "last seen": _ago(p.last_seen),
                    "runs": p.runs,
                    "running": p.running,
                    "waiting": p.queued,
                    "device time": format_duration(p.device_seconds) if p.device_seconds else "-",
                }
                for p in people
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def cancel_queue(name: str) -> None:
    """Stop every run of `name` that waits for the device (they end as stopped; nothing trained is lost)."""
    store = common.store()
    waiting = [run for run in common.runs() if layer_of(run.owner) == name and run.state is JobState.QUEUED]
    for run in waiting:
        jobs.stop(store, run.run_id)
    st.session_state["class_notice"] = f"Asked {len(waiting)} waiting run(s) of {name} to stop."


def sign_out_everywhere(name: str) -> None:
    ended = sessions.close_sessions_of(data_root, name)
    st.session_state["class_notice"] = f"Signed {name} out of {ended} session(s)."


def unlock(key: str, label: str) -> None:
    attempts.unlock(data_root, key)
    st.session_state["class_notice"] = f"Unlocked {label}."


if "class_notice" in st.session_state:
    st.success(plain.md(st.session_state.pop("class_notice")), icon=":material/check:")

if people:
    with st.container(horizontal=True, vertical_alignment="bottom"):
        name = st.selectbox("Person", [p.name for p in people], key="class_person")
        waiting = next((p.queued for p in people if p.name == name), 0)
        st.button(
            f"Cancel their queue ({waiting})",
            icon=":material/cancel_schedule_send:",
            on_click=cancel_queue,
            args=(name,),
            disabled=not waiting,
            help="Stops the runs this person has waiting for the device (a stuck seat in the line).",
        )
        st.button(
            "Sign them out everywhere",
            icon=":material/devices_off:",
            on_click=sign_out_everywhere,
            args=(name,),
            help="Ends their sessions on every browser (a computer left signed in in a classroom, say).",
        )

st.subheader("Failed sign-ins")
troubled = attempts.troubled(data_root, now)
if not troubled:
    st.caption("No failed sign-ins to look at.")
for row in troubled:
    with st.container(horizontal=True, vertical_alignment="center"):
        state = f"locked for {format_duration(row['locked_until'] - now)}" if row["locked_until"] else "not locked"
        st.markdown(f"**{plain.md(row['label'])}**: {row['failures']} failed sign-in(s), {state}")
        st.button(
            "Unlock",
            key=f"class_unlock_{row['key']}",
            icon=":material/lock_open:",
            on_click=unlock,
            args=(row["key"], row["label"]),
        )


st.subheader("Names")
registered = names.registered(data_root)
if not registered:
    st.caption("Nobody has signed in with the access token yet.")
else:
    st.caption(
        "The names people signed in with the access token. Reset a forgotten passphrase (the next sign-in with the "
        "name sets a new one) or remove a name (a look-alike squatting a classmate's, markup or a path kept from "
        "before names were checked): either ends the name's sessions."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": plain.visible(row["name"]),
                    "passphrase": row["state"],
                    "reads as": plain.visible(row["looks_like"] or ""),
                    "refused today": row["breaks_rule"] or "",
                }
                for row in registered
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def change_name(name: str, action: str) -> None:
    do = admin.reset_passphrase if action == names.RESET else admin.remove_name
    try:
        st.session_state["class_notice"] = do(data_root, name, by=user.id).words(action)
    except names.NotFound as e:
        st.session_state["class_notice_error"] = str(e)


if "class_notice_error" in st.session_state:
    st.error(plain.md(st.session_state.pop("class_notice_error")), icon=":material/error:")
if registered:
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = st.selectbox("Name", [row["name"] for row in registered], key="class_name", format_func=plain.visible)
        st.button(
            "Reset passphrase",
            icon=":material/key:",
            on_click=change_name,
            args=(chosen, names.RESET),
            help="They forgot it: the next sign-in with this name sets a new passphrase. Tell them to sign in soon.",
        )
        st.button(
            "Remove name",
            icon=":material/person_remove:",
            on_click=change_name,
            args=(chosen, names.REMOVED),
            help="The name is free again; runs recorded under it stay, under that spelling.",
        )
for event in names.events(data_root, limit=5):
    what = "reset the passphrase of" if event["action"] == names.RESET else "removed"
    st.caption(f"{_ago(event['at'])}: {plain.md(event['by'])} {what} {plain.md(event['name'])}")

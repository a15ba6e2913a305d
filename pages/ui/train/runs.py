"""The Train page's run list: the table, who may change a run, stop/force stop/delete/rename, and the run folders
that cannot be read.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.processes import JobState
from core.runs.curves import RunProgress
from core.runs.record import Run, RunUnreadable
from core.sharing.people import layer_of, same_person
from core.train import jobs
from core.train.queue import Place
from pages.ui import auth, common, plain
from pages.ui.navigation import TRAIN_RUN


def allowed(run_id: str) -> bool:
    """Whether the signed-in user may change this run (the buttons only show when so; this checks again)."""
    try:
        run = common.store().get(run_id)
    except (KeyError, ValueError):
        return False
    if auth.can_change(run):
        return True
    whose = layer_of(run.owner)
    st.session_state["train_error_runs"] = f"Run {run_id} is {whose}'s: only they or an admin can change it."
    return False


def stop_run(run_id: str) -> None:
    if allowed(run_id):
        jobs.stop(common.store(), run_id)


def kill_run(run_id: str) -> None:
    if allowed(run_id):
        jobs.kill(common.store(), run_id)


def delete_run(run_id: str) -> None:
    """Remove a finished, failed or stopped run from the store."""
    if not allowed(run_id):
        return
    try:
        common.store().delete(run_id)
    except (ValueError, OSError) as e:
        st.session_state["train_error_runs"] = str(e)
        return
    st.toast(f"Deleted run {run_id}.", icon=":material/delete:")
    st.session_state.pop(TRAIN_RUN, None)


def save_label(run_id: str) -> None:
    if not allowed(run_id):
        return
    try:
        common.store().set_label(
            run_id,
            name=st.session_state.get(f"train_name_{run_id}", ""),
            note=st.session_state.get(f"train_note_{run_id}", ""),
        )
    except (ValueError, OSError) as e:
        st.session_state["train_error_runs"] = str(e)


def show_notice() -> None:
    if "train_error_runs" in st.session_state:
        st.error(plain.md(st.session_state.pop("train_error_runs")), icon=":material/error:")
    notice = st.session_state.pop("train_notice", None)
    if not notice:
        return
    kind, run_id = notice
    try:
        run = common.store().get(run_id)
    except (KeyError, ValueError, OSError):
        run = None
    me = auth.current_user().id
    if kind == "cached" and run is not None and run.reused_from and same_person(run.owner, me):
        source = run.reused_from
        st.info(
            f"Run **{run_id}** is yours: {plain.md(source.get('owner', 'someone'))} had already trained exactly these "
            f"settings on this data (run {plain.md(source['run_id'])}), so its results were reused (the files are "
            "shared on disk, nothing was trained again). Rename it, delete it or train on from it as your own.",
            icon=":material/bolt:",
        )
    elif kind == "active" and run is not None and not same_person(run.owner, me):
        st.info(
            f"{plain.md(run.owner)} is training exactly these settings on this data right now (run **{run_id}**, "
            "shown). When it finishes, launch again: you get a run of your own from it in seconds, nothing trained "
            "twice.",
            icon=":material/sync:",
        )
    elif kind == "cached":
        st.info(
            f"Cached: run **{run_id}** already finished with exactly these settings on this data. Showing it.",
            icon=":material/bolt:",
        )
    elif kind == "active":
        st.info(f"Run **{run_id}** with these settings is already training. Showing it.", icon=":material/sync:")
    else:
        st.success(
            f"Launched run **{run_id}** in the background. It keeps going if you close this tab.",
            icon=":material/rocket_launch:",
        )


def runs_table(runs: list[Run], states: dict[str, RunProgress], line: dict[str, Place] | None = None) -> None:
    """The run list: whose, what tells each run apart, what it is doing now (its place in line while it waits
    for the device), and how far the whole run is."""
    rows = []
    line = line or {}
    # whose, as one name per person: "root" (the command line) and "local" (the app) are the person at this machine
    owners = auth.shared() or len({layer_of(run.owner) for run in runs}) > 1
    # each kind's test figure under its own name, a column only for the kinds listed (walk 54: mAP under 'test
    # accuracy'; a column of Nones)
    single, multi = any(not run.multilabel for run in runs), any(run.multilabel for run in runs)
    for run in runs:
        state = states.get(run.run_id)
        now = state.short_text if state else ""
        if run.run_id in line:
            now = line[run.run_id].waiting_text
        rows.append(
            {
                "run": common.run_title(run),
                **({"owner": layer_of(run.owner)} if owners else {}),
                "dataset": run.dataset_name,
                "state": state.state_label if state else run.state.value,
                "now": now,
                "progress": state.fraction if state else (1.0 if run.state is JobState.DONE else None),
                **({"accuracy": run.status.accuracy} if single else {}),
                **({"mAP": run.status.map} if multi else {}),
                "id": run.run_id,
            }
        )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        key="train_runs_table",
        height=min(320, 35 * (len(rows) + 1) + 3),
        column_config={
            "run": st.column_config.TextColumn("run", help="its name, or the settings that tell it apart"),
            "now": st.column_config.TextColumn("doing now"),
            "progress": st.column_config.ProgressColumn(
                "progress",
                min_value=0,
                max_value=1,
                format="percent",
                help="the whole run: decoding, feature extraction, epochs and evaluation",
            ),
            "accuracy": st.column_config.NumberColumn("test accuracy", format="%.3f", help=common.TEST_ACCURACY_HELP),
            "mAP": st.column_config.NumberColumn("test mAP", format="%.3f", help=common.TEST_MAP_HELP),
        },
    )


def unreadable_runs(problems: list[RunUnreadable]) -> None:
    """Run folders that cannot be read: each with why and where, and a way to remove it."""
    if not problems:
        return
    with st.expander(f"{len(problems)} run folder(s) cannot be read", icon=":material/broken_image:"):
        st.caption(
            "Their config.json or status.json is cut short, not JSON, or holds a value of the wrong kind (a crash "
            "mid-write, or a hand edit). They are left as they are; fix the file, or delete the folder."
        )
        for problem in problems:
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.text(f"{problem.run_id}  unreadable: {problem.reason}\n{problem.directory}")
            right.button(
                "Delete",
                key=f"train_delete_unreadable_{problem.run_id}",
                on_click=delete_unreadable,
                args=(problem.run_id,),
                help="Removes this folder from the run store. This cannot be undone.",
            )


def delete_unreadable(run_id: str) -> None:
    try:
        common.store().delete_unreadable(run_id)
    except (KeyError, ValueError, OSError) as e:
        st.session_state["train_error_runs"] = str(e)

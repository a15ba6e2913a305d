"""A run's background analysis task (core.results.tasks) on a page: start it, watch its progress, stop it.

The task runs in its own process (it survives the tab); the panel polls its job folder every second
in a fragment and redraws the whole page once when it ends, so the page can show the result.

A task writes into the run's folder, so only the run's owner (or an admin) starts or stops one: a student
looking at a classmate's run sees its results once its owner computed them, or trains the same settings, which
gives them their own copy of the run at once (nothing trained twice), and computes it there. On a shared Flora
a run whose photos lie outside the data roots gets no task from the app either.
"""

from __future__ import annotations

import streamlit as st

from core.processes import JobState
from core.results import tasks as run_tasks
from core.runs.record import Run
from pages.ui import auth, common, dataset_choice, plain
from pages.ui.navigation import TRAIN_PREFILL, page_file

POLL_SECONDS = 1.0


def why_not(run: Run) -> str | None:
    """Why the signed-in user may not start work on `run`, in words; None when they may."""
    if not auth.can_change(run):
        return (
            f"This is {plain.md(run.owner)}'s run: only they (or an admin) can compute this on it, since it is kept in "
            "their run's folder."
        )
    refused = dataset_choice.outside_reason(run.dataset_path)
    if refused:
        return f"This run's photos are {refused}: ask whoever runs this Flora."
    return None


def launch(run: Run, kind: str) -> bool:
    """Start task `kind` of `run` when the signed-in user may (`why_not`); True when started."""
    if why_not(run):
        return False
    run_tasks.launch(run, kind, common.data_root())
    return True


def own_copy_link(run: Run) -> None:
    """For someone else's run: the Train form filled with its settings; launching gives them their own copy."""
    st.page_link(
        page_file("train"),
        label="Train the same settings: your own copy of this run at once (nothing is trained twice)",
        icon=":material/content_copy:",
        query_params={TRAIN_PREFILL: run.run_id},
    )


def task_panel(run: Run, kind: str, start_label: str, key: str, subject: str | None = None) -> None:
    """Offer, start and watch task `kind` of `run`; called while its result is missing (a task that ended
    "done" without one, its file since deleted, is simply offered again). `subject`: the run in words ("run
    abc123") when it is not the one the page shows (Robustness measuring another beside it), named in its
    progress and failure: the state shown is always `run`'s own task's."""
    status = run_tasks.task_status(run, kind)
    refused = why_not(run)
    if refused and not (status is not None and status.active):
        st.caption(f":material/visibility: {refused}")
        if not auth.can_change(run) and not dataset_choice.outside_reason(run.dataset_path):
            own_copy_link(run)
        return
    if status is not None and status.active:
        st.fragment(_watch, run_every=POLL_SECONDS)(run, kind, key, subject)
        return
    on = f" on {subject}" if subject else ""
    if status is not None and status.state is JobState.FAILED:
        reason = plain.md(status.error or "no reason recorded")
        st.error(f"The last attempt{on} failed: {reason}", icon=":material/error:")
        log = common.shown_log(run_tasks.task_folder(run, kind).log_tail(20))
        if log:
            with st.expander("Its log", icon=":material/description:"):
                st.code(log, language=None)
    elif status is not None and status.state is JobState.STOPPED:
        st.caption(f"Stopped{on} before it finished ({plain.md(status.note or 'on request')}).")
    if st.button(start_label, key=f"{key}_start", icon=":material/play_arrow:", type="primary"):
        launch(run, kind)
        st.rerun()


def _watch(run: Run, kind: str, key: str, subject: str | None = None) -> None:
    status = run_tasks.task_status(run, kind)
    if status is None or not status.active:
        st.rerun(scope="app")  # it ended: draw the page again with its result (or its error)
    done, total = status.stage_progress or (0, 0)
    stage = status.stage or ("waiting to start" if status.state is JobState.QUEUED else "starting")
    stage = f"{subject}: {stage}" if subject else stage
    fraction = min(1.0, done / total) if total else 0.0
    st.progress(fraction, text=common.progress_text(stage, done, total))
    if auth.can_change(run) and st.button("Stop", key=f"{key}_stop", icon=":material/stop:"):
        run_tasks.stop(run, kind)
        st.caption("Stopping at its next step…")

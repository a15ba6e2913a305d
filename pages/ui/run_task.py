"""A run's background analysis task (core.results.tasks) on a page: start it, watch its progress, stop it.

The task runs in its own process (it survives the tab); the panel polls its job folder every second
in a fragment and redraws the whole page once when it ends, so the page can show the result.
"""

from __future__ import annotations

import streamlit as st

from core.processes import JobState
from core.results import tasks as run_tasks
from core.runs.record import Run
from pages.ui import common, plain

POLL_SECONDS = 1.0


def task_panel(run: Run, kind: str, start_label: str, key: str) -> None:
    """Offer, start and watch task `kind` of `run`; called while its result is missing (a task that ended
    "done" without one, its file since deleted, is simply offered again)."""
    status = run_tasks.task_status(run, kind)
    if status is not None and status.active:
        st.fragment(_watch, run_every=POLL_SECONDS)(run, kind, key)
        return
    if status is not None and status.state is JobState.FAILED:
        st.error(f"The last attempt failed: {plain.md(status.error or 'no reason recorded')}", icon=":material/error:")
        log = run_tasks.task_folder(run, kind).log_tail(20)
        if log:
            with st.expander("Its log", icon=":material/description:"):
                st.code(log, language=None)
    elif status is not None and status.state is JobState.STOPPED:
        st.caption(f"Stopped before it finished ({plain.md(status.note or 'on request')}).")
    if st.button(start_label, key=f"{key}_start", icon=":material/play_arrow:", type="primary"):
        run_tasks.launch(run, kind, common.data_root())
        st.rerun()


def _watch(run: Run, kind: str, key: str) -> None:
    status = run_tasks.task_status(run, kind)
    if status is None or not status.active:
        st.rerun(scope="app")  # it ended: draw the page again with its result (or its error)
    done, total = status.stage_progress or (0, 0)
    stage = status.stage or ("waiting to start" if status.state is JobState.QUEUED else "starting")
    fraction = min(1.0, done / total) if total else 0.0
    st.progress(fraction, text=common.progress_text(stage, done, total))
    if st.button("Stop", key=f"{key}_stop", icon=":material/stop:"):
        run_tasks.stop(run, kind)
        st.caption("Stopping at its next step…")

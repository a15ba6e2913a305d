""" "Compute the analysis" for runs from before analysis.npz existed: a background run task, its
progress, and what a failed or stopped run can and cannot show."""

from __future__ import annotations

import streamlit as st

from core import run_tasks
from core.processes import RunState
from core.runs import ANALYSIS_FILE
from pages.ui import common

KIND = "analysis"


def analysis_stamp(run) -> float | None:
    """The analysis arrays' modification time (a cache key), or None when the run has none."""
    try:
        return run.path(ANALYSIS_FILE).stat().st_mtime
    except OSError:
        return None


def limits_note(run) -> None:
    """What a run that failed or was stopped early can and cannot show."""
    if run.state is RunState.STOPPED:
        st.caption(
            "This run was stopped early: the calibration, heatmaps and confusion matrix describe its best "
            "weights so far, not a finished model."
        )
    elif run.state is RunState.FAILED:
        st.caption(
            "This run failed: with a saved model its analysis can still be computed; without one, only its "
            "training curves (Monitor page) remain."
        )


def offer(run) -> bool:
    """For a run without analysis arrays: the button and the task's progress. True when the arrays exist."""
    if run.has_analysis:
        return True
    if not run.has_model:
        st.info(
            "This run has no saved model, so its calibration and heatmaps cannot be computed; "
            "the metrics above come from its stored test predictions.",
            icon=":material/info:",
        )
        return False
    progress_panel(run)
    return run.has_analysis


@st.fragment(run_every=2.0)
def progress_panel(run) -> None:
    status = run_tasks.task_status(run, KIND)
    if run.has_analysis:
        if status is not None and status.state is RunState.DONE and not st.session_state.get("evaluate_analysis_seen"):
            st.session_state["evaluate_analysis_seen"] = True
            st.rerun(scope="app")  # the sections appear
        return
    if status is not None and status.active:
        stage = common.progress_text(status.stage or "starting", *(status.stage_progress or (0, 0)))
        done, total = status.stage_progress or (0, 0)
        st.progress(done / total if total else 0.0, text=f"Computing the analysis: {stage}")
        if st.button("Stop", key="evaluate_analysis_stop", icon=":material/stop:"):
            run_tasks.stop(run, KIND)
        return
    st.info(
        "This run is from before Flora stored its validation and test logits and features. Compute them once "
        "(a pass of those photos through the model, in the background) to see its calibration and heatmaps.",
        icon=":material/analytics:",
    )
    if status is not None and status.state is RunState.FAILED:
        st.error(f"The last attempt failed: {status.error or 'no reason recorded'}", icon=":material/error:")
    elif status is not None and status.state is RunState.STOPPED:
        st.warning("The last attempt was stopped before it finished.", icon=":material/stop_circle:")
    if st.button("Compute the analysis", key="evaluate_compute_analysis", type="primary", icon=":material/play_arrow:"):
        st.session_state.pop("evaluate_analysis_seen", None)
        try:
            run_tasks.launch(run, KIND, common.data_root())
        except OSError as e:
            st.error(f"The analysis could not be started: {e}", icon=":material/error:")
            return
        st.rerun()  # the progress bar replaces the button

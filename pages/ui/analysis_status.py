""" "Compute the analysis", one component for every page that reads a run's analysis arrays (Evaluate's calibration
and heatmaps, Explore's map and label review, Compare's photo-by-photo comparison): for a run from before
analysis.npz existed, say what it lacks, start the background run task (core.results.tasks), show its progress and Stop,
and draw the page again once it is done. Also: what a failed or stopped run can and cannot show.
"""

from __future__ import annotations

import streamlit as st

from core.processes import JobState
from pages.ui.run_task import task_panel

KIND = "analysis"


def limits_note(run) -> None:
    """What a run that failed or was stopped early can and cannot show."""
    if run.state is JobState.STOPPED:
        st.caption(
            "This run was stopped early: the calibration, heatmaps and confusion matrix describe its best "
            "weights so far, not a finished model."
        )
    elif run.state is JobState.FAILED:
        st.caption(
            "This run failed: with a saved model its analysis can still be computed; without one, only its "
            "training curves (Monitor page) remain."
        )


def offer(run, key: str, needed_for: str) -> bool:
    """True when the run has its analysis arrays; else what it lacks and the button (or the task's progress).

    Args:
        key: the page's widget-key prefix for the task panel ("evaluate_analysis", ...).
        needed_for: what the page would show with them ("its calibration and heatmaps").
    """
    if run.has_analysis:
        return True
    if not run.has_model:
        st.info(
            f"This run has no saved model, so {needed_for} cannot be computed; "
            "its settings, curves and log are on the Train page.",
            icon=":material/info:",
        )
        return False
    st.info(
        f"Run {run.run_id[:6]} is from before Flora stored each validation and test photo's logits and features, "
        f"needed for {needed_for}. Compute them once: the run's model looks at those photos again in "
        "the background (seconds at 64 px, a minute or two for a thousand photos at 224 px). Nothing about the "
        "run itself changes.",
        icon=":material/analytics:",
    )
    task_panel(run, KIND, "Compute the analysis", key=key)
    return False

"""Sweep: Optuna searches the head's settings on cached features; watch the trials; train the best as a run."""

from __future__ import annotations

import streamlit as st

from core import sweeps
from core.sweeps import Sweep
from pages.ui import common, plain, teaching
from pages.ui.navigation import SWEEP_PICK
from pages.ui.sweep import form as sweep_form
from pages.ui.sweep.actions import launch
from pages.ui.sweep.sections import best_trial, details, header, notices, progress, results

LIVE_EVERY = 2.0  # seconds between redraws while a sweep runs


st.title("Sweep")
st.caption(
    "Let Optuna find the head's settings for you. ResNet-50's features are computed once for the whole sweep; "
    "every trial then trains only a new head on them, in seconds, so twenty trials cost little more than one run."
)
st.info(
    "**The validation split chooses; the test split is never used to choose.** Trials are compared on their "
    "validation loss (accuracy shown beside it), and hopeless ones are pruned early. The test photos are not even "
    "loaded: only the run you train from the best trial is scored on them, once, like any other run.",
    icon=":material/visibility_off:",
)
teaching.explain("sweep")


def sweep_area() -> list[Sweep]:
    """The sweep picker and the picked sweep; returns the sweeps as listed."""
    listed = common.sweeps()
    ids = [s.sweep_id for s in listed]
    labels = {s.sweep_id: common.sweep_label(s) for s in listed}
    picked = common.job_picker("Sweep", listed, ids, labels, SWEEP_PICK)
    try:
        sweep = common.sweep_store().refresh(common.sweep_store().get(picked))
    except KeyError:
        st.warning(f"Sweep {picked} is gone.")
        return listed
    snapshot = sweep.trials()
    header(sweep)
    progress(sweep)
    results(sweep, snapshot)
    best_trial(sweep, snapshot.get("best"))
    details(sweep)
    return listed


@st.fragment(run_every=LIVE_EVERY)
def live_sweep_area() -> None:
    if not any(s.active for s in sweep_area()):
        st.rerun(scope="app")  # it ended: draw once more as a still page and stop polling


all_sweeps = common.sweeps()
if "sweep_tab" not in st.session_state:
    st.session_state["sweep_tab"] = "Sweeps" if all_sweeps else "New sweep"
list_tab, new_tab = st.tabs(["Sweeps", "New sweep"], key="sweep_tab", on_change="rerun")

with new_tab:
    request = sweep_form.render()
    if request.error:
        st.error(plain.md(request.error), icon=":material/error:")
    elif request.fixed is not None:
        st.caption("The same sweep from a terminal:")
        st.code(
            sweeps.sweep_command(
                common.shown_path(request.dataset, argument=True),  # `flowers` on a shared Flora, as Train's
                request.fixed,
                request.space,
                request.trials,
                request.timeout,
                corrections="kept" if request.corrections else "none",
                ray=request.ray,
            ),
            language="bash",
            wrap_lines=True,
        )
        st.caption(
            "The first trial uses your settings as they are (where they fall inside the space), so the best is never "
            "worse on validation than what you had."
        )
    if "sweep_error" in st.session_state:
        st.error(plain.md(st.session_state.pop("sweep_error")), icon=":material/error:")
    st.button(
        "Launch sweep",
        type="primary",
        icon=":material/rocket_launch:",
        disabled=request.error is not None,
        key="sweep_launch",
        on_click=launch,
        args=(request,),
    )

with list_tab:
    notices()
    if not all_sweeps:
        st.caption("No sweeps yet. Set one up on the New sweep tab; it runs in the background.")
    elif list_tab.open:
        if any(s.active for s in all_sweeps):
            live_sweep_area()
        else:
            sweep_area()

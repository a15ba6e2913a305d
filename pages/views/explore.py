"""Explore: a run's validation and test photos on a map of its ResNet features, and its suspected label errors (a
multi-label run's: pages.ui.explore.multilabel)."""

from __future__ import annotations

import streamlit as st

from core.processes import JobState
from core.results.probabilities.calibration import stored_temperature
from core.runs.analysis import RunAnalysis
from core.runs.record import Run
from pages.ui import analysis_status, common, last_run, plain
from pages.ui.explore import multilabel
from pages.ui.explore.data_issues import data_issues_section
from pages.ui.explore.label_next import label_next_section
from pages.ui.explore.label_review import review_section
from pages.ui.explore.map import map_section
from pages.ui.navigation import page_file

st.title("Explore")
st.caption("Where the model places each photo, which photos it confuses and why, and which labels are probably wrong.")


@st.cache_resource(show_spinner="Loading the run's analysis…", max_entries=4)
def load_analysis(run_dir: str, stamp: float):
    """The run's stored arrays (shared read-only between sessions; read again when the file changes)."""
    return RunAnalysis.load(run_dir)


def temperature_of(run: Run) -> float | None:

    return stored_temperature(run.directory)


def without_model(run: Run) -> None:
    """What a run without a saved model can and cannot show."""
    if run.state is JobState.FAILED:
        st.error(
            f"This run failed before it saved a model: {plain.md(run.status.error or 'no reason recorded')}",
            icon=":material/error:",
        )
    else:
        st.warning(f"This run ({run.state}) has no saved model.", icon=":material/warning:")
    st.markdown(
        "Without a model there are no predictions or features to map, and no label errors to suspect. "
        "Its settings, curves and log are on the Train page; train it again (or another run) to explore it here."
    )
    st.page_link(page_file("train"), label="Go to Train", icon=":material/arrow_forward:")


runs = [run for run in common.runs() if not run.active]  # multi-label runs too (pages.ui.explore.multilabel)
if not runs:
    st.info(
        "No finished run yet. Train one on the Train page; its photos can be explored here.",
        icon=":material/model_training:",
    )
    st.page_link(page_file("train"), label="Go to Train", icon=":material/arrow_forward:")
    st.stop()

labels = {run.run_id: f"{common.run_label(run)} · {run.state}" for run in runs}
last_run.follow_link("explore_run", list(labels))
if st.session_state.get("explore_run") not in labels:
    newest = next((r.run_id for r in runs if r.evaluated), runs[0].run_id)
    st.session_state["explore_run"] = last_run.opening_run(list(labels), newest, key="explore_run")
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="explore_run", bind="query-params")
last_run.remember_run(run_id, key="explore_run")
run = common.store().get(run_id)

if not run.has_model:
    without_model(run)
    st.stop()
if run.state is JobState.STOPPED:
    st.caption("This run was stopped early: what follows is its best weights so far.")
elif run.state is JobState.FAILED:
    st.warning(
        f"This run failed after saving a model ({plain.md(run.status.error or 'no reason recorded')}). The photos can "
        "still be mapped from that model, if its analysis can be computed; its numbers may not be its final ones.",
        icon=":material/warning:",
    )
if not analysis_status.offer(run, key="explore_analysis", needed_for="the map and the label review"):
    st.stop()
common.random_start_notice(run)

analysis = load_analysis(str(run.directory), run.analysis_mtime)
map_tab, issues_tab, data_tab, next_tab = st.tabs(
    ["Feature map", "Suspected label errors", "Data issues", "Label next"], key="explore_tab", on_change="rerun"
)
if run.multilabel:
    multilabel.tabs(run, analysis, map_tab, issues_tab, data_tab, next_tab)
    st.stop()
temperature = temperature_of(run)
if map_tab.open:
    with map_tab:
        map_section(run, analysis, temperature)
if issues_tab.open:
    with issues_tab:
        review_section(run)
if data_tab.open:
    with data_tab:
        data_issues_section(run)
if next_tab.open:
    with next_tab:
        label_next_section(run)

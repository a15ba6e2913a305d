"""Evaluate's Model card tab: the run's card (Hugging Face's layout) as `core card` writes it, read on the page and
downloaded as README.md; its metadata (with model-index) in an expander."""

from __future__ import annotations

import streamlit as st

from core.results import model_card
from core.runs.files import run_files
from core.runs.store import RunStore


def _read_from(run) -> tuple:
    """The files the card is written from."""
    files = run_files(run)
    return (
        files.evaluation_summary,
        files.calibration,
        files.conformal,
        files.selective,
        files.class_thresholds,
        files.robustness,
        files.data_issues,
        files.reference_summary,
    )


def _stamp(run) -> tuple:
    return tuple(path.stat().st_mtime if path.exists() else 0.0 for path in _read_from(run))


@st.cache_data(show_spinner="Writing the model card from the run's files…", max_entries=32)
def _card(models_root: str, run_id: str, stamp: tuple) -> str:

    return model_card.render(RunStore(models_root).get(run_id))


def section(run) -> None:
    # the words first: writing the card takes seconds the first time (scipy, scikit-learn), under a spinner
    st.caption(
        "Written from what the run stored, in Hugging Face's model card layout: `python -m core card "
        f"{run.run_id}` writes the same file into the run folder, and every export carries it as README.md. "
        "Parts the run has not computed yet name the command (or the tab) that does."
    )
    text = _card(str(run.directory.parent), run.run_id, _stamp(run))
    end = text.find("\n---", 4)
    header, body = text[4:end], text[end + 4 :]
    st.download_button(
        "Download the model card (README.md)",
        text,
        file_name=f"{run.run_id}-README.md",
        mime="text/markdown",
        icon=":material/download:",
        key="evaluate_card_download",
    )
    with st.expander("Its metadata (YAML, with model-index)", icon=":material/data_object:"):
        st.code(header, language="yaml")
    with st.container(border=True):
        st.markdown(body)

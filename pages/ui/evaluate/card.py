"""Evaluate's Model card tab: the run's card (Hugging Face's layout) as `core card` writes it, read on the page and
downloaded as README.md; its metadata (with model-index) in an expander."""

from __future__ import annotations

import streamlit as st

from core.results import model_card
from core.runs.record import (
    CALIBRATION_FILE,
    CLASS_THRESHOLDS_FILE,
    CONFORMAL_FILE,
    DATA_ISSUES_FILE,
    EVALUATION_JSON,
    ROBUSTNESS_FILE,
    SELECTIVE_FILE,
)

READ_FROM = (
    EVALUATION_JSON,
    CALIBRATION_FILE,
    CONFORMAL_FILE,
    SELECTIVE_FILE,
    CLASS_THRESHOLDS_FILE,
    ROBUSTNESS_FILE,
    DATA_ISSUES_FILE,
    "ood.json",
)


def _stamp(run) -> tuple:
    stamps = []
    for name in READ_FROM:
        path = run.directory / name
        stamps.append(path.stat().st_mtime if path.exists() else 0.0)
    return tuple(stamps)


@st.cache_data(show_spinner="Writing the model card…", max_entries=32)
def _card(models_root: str, run_id: str, stamp: tuple) -> str:
    from core.runs.store import RunStore

    return model_card.render(RunStore(models_root).get(run_id))


def section(run) -> None:
    text = _card(str(run.directory.parent), run.run_id, _stamp(run))
    end = text.find("\n---", 4)
    header, body = text[4:end], text[end + 4 :]
    st.caption(
        "Written from what the run stored, in Hugging Face's model card layout: `python -m core card "
        f"{run.run_id}` writes the same file into the run folder, and every export carries it as README.md. "
        "Parts the run has not computed yet name the command (or the tab) that does."
    )
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

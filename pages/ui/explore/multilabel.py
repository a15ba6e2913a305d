"""The Explore page of a multi-label run: its feature map (pages.ui.explore.multilabel_map), the label lists the model
doubts (pages.ui.label_lists, as on Evaluate), and what Data issues and Label next, which read one class a photo, would
need for label lists.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.runs.analysis import RunAnalysis
from core.runs.record import Run
from pages.ui import label_lists
from pages.ui.explore import multilabel_map
from pages.ui.navigation import page_file

DATA_ISSUES_WORDS = (
    "Data issues reads one class a photo (its overlapping classes, label health and underperforming groups come from "
    "scores of one class against the others), so it does not look at a multi-label run yet: it would need each "
    "label's out-of-sample score on every photo and findings per label. This dataset's duplicates, leaks between "
    "splits and photos per label are in the Dataset page's health check, and the label lists the model doubts in "
    "the Suspected label errors tab."
)
LABEL_NEXT_WORDS = (
    "Label next gives each unlabelled photo one class (a copy into that class's folder) and ranks them by how unsure "
    "the model is between classes, so it reads single-label runs only: a multi-label run would need a label list "
    "given to each photo (a row of the label file) and a ranking by each label's uncertainty."
)


def tabs(run: Run, analysis: RunAnalysis, map_tab, issues_tab, data_tab, next_tab) -> None:
    """Fill Explore's four tabs for a multi-label run."""
    if map_tab.open:
        with map_tab:
            multilabel_map.section(run, analysis)
    if issues_tab.open:
        with issues_tab:
            label_lists.section(run, Path(run.dataset_path), key="explore_ml")
    if data_tab.open:
        with data_tab:
            st.info(DATA_ISSUES_WORDS, icon=":material/info:")
            st.page_link(page_file("dataset"), label="Go to Dataset", icon=":material/arrow_forward:")
    if next_tab.open:
        with next_tab:
            st.info(LABEL_NEXT_WORDS, icon=":material/info:")

"""Suspected label errors in a multi-label run's label lists (core.results.labels.multilabel_issues): a label the model
is confident a photo shows but lacks (missing), or carries but does not show (wrong). Shown on Evaluate's multi-label
view and on Explore's Suspected label errors tab.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.results.labels import multilabel_issues
from core.runs.analysis import AnalysisMissing, RunAnalysis
from pages.ui import photo_gallery

PAGE_SIZE = 24


@st.cache_data(show_spinner="Checking the label lists…", max_entries=8)
def _found(run_dir: str, stamp: float | None) -> multilabel_issues.LabelListIssues | None:
    try:
        return multilabel_issues.of_analysis(RunAnalysis.load(run_dir))
    except AnalysisMissing:
        return None


def section(run, dataset_root: Path, key: str) -> None:
    """The suspected photos of a multi-label run: how many, in words, then their table and photos (widget keys
    start with `key`)."""
    found = _found(str(run.directory), run.analysis_mtime)
    if found is None:
        st.caption("The label lists are checked on the run's analysis arrays, which this run does not keep.")
        return
    st.markdown(
        f"**{found.suspected} of {found.photos}** validation and test photos have a label list the model doubts: a "
        "label it is confident the photo shows but lacks (*missing*), or one it is confident the photo does not show "
        "(*wrong*)."
    )
    st.caption(
        "Confident learning one label at a time, as cleanlab's multilabel_classification finds them, on the model's "
        "scores of photos it never trained on; lowest label quality first. A weak model doubts many right lists: "
        "these are photos to look at, not errors found."
    )
    if not found.suspected:
        return
    table = found.table.assign(**{k: found.table[k].map(", ".join) for k in ("labels", "missing", "wrong")})
    st.dataframe(
        table,
        hide_index=True,
        key=f"{key}_issues",
        column_config={"quality": st.column_config.NumberColumn(format="%.3f")},
    )
    items = [
        (
            dataset_root / row.path,
            " · ".join(
                [*([f"missing: {row.missing}"] if row.missing else []), *([f"wrong: {row.wrong}"] if row.wrong else [])]
            )
            + f" · has: {row.labels or 'none'}\n"
            f"{Path(row.path).name}",
        )
        for row in table.head(PAGE_SIZE).itertuples()
    ]
    if found.suspected > PAGE_SIZE:
        st.caption(f"The first {PAGE_SIZE} of {found.suspected} photos.")
    photo_gallery.gallery(items, size=130, key=f"{key}_issue_photos")

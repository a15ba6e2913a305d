"""Suspected label errors in a multi-label run's label lists (core.results.labels.multilabel_issues): a label the model
is confident a photo shows but lacks (missing), or carries but does not show (wrong). Shown on Evaluate's multi-label
view and on Explore's Suspected label errors tab.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.results.evaluation.multilabel import MultilabelEvaluation
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


@st.cache_data(show_spinner=False, max_entries=8)
def _summary(run_dir: str, stamp: tuple) -> dict | None:
    """The run's test figures (mAP, its interval, the random scorer's, per label), or None when it has none."""
    try:
        return MultilabelEvaluation.of_run(run_dir).summary()
    except (OSError, ValueError, KeyError):  # none stored nor makeable (MultilabelEvaluationMissing), or unreadable
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
        "label the photo lacks that the model scores as high as it scores the photos having it (*missing*), or one "
        "the photo carries that it scores as low as the photos without it (*wrong*)."
    )
    weak = multilabel_issues.weak_model_words(
        found, _summary(str(run.directory), (run.multilabel_evaluation_mtime, run.analysis_mtime))
    )
    if weak:
        st.warning(weak, icon=":material/psychology_alt:")
    st.caption(
        "Confident learning one label at a time, as cleanlab's multilabel_classification finds them, on the model's "
        "scores of photos it never trained on; lowest label quality first. A weak model doubts many right lists: "
        "these are photos to look at, not errors found."
    )
    if not found.suspected:
        return
    st.download_button(
        f"Download all {found.suspected} suspects (CSV)",
        data=found.csv,
        file_name=f"label-list-issues-{run.run_id}.csv",
        mime="text/csv",
        icon=":material/download:",
        key=f"{key}_issues_csv",
        help="Every suspected photo, lowest label quality first: its path, split, quality, labels, and the labels "
        "suspected missing and wrong (a cell's labels joined by |).",
    )
    table = found.table.assign(**{k: found.table[k].map(", ".join) for k in ("labels", "missing", "wrong")})
    st.dataframe(
        table,
        hide_index=True,
        key=f"{key}_issues",
        column_config={"quality": st.column_config.NumberColumn(format="%.3f")},
    )
    pages = -(-found.suspected // PAGE_SIZE)
    page = 1
    if pages > 1:  # walk 54: 'the first 24 of 92', and no way to the rest
        st.caption(f"{PAGE_SIZE} photos a page, in the table's order ({found.suspected} in all, {pages} pages).")
        page = st.pagination(pages, key=f"{key}_issue_page")
    start = (page - 1) * PAGE_SIZE
    items = [
        (
            dataset_root / row.path,
            " · ".join(
                [*([f"missing: {row.missing}"] if row.missing else []), *([f"wrong: {row.wrong}"] if row.wrong else [])]
            )
            + f" · has: {row.labels or 'none'}\n"
            f"{Path(row.path).name}",
        )
        for row in table.iloc[start : start + PAGE_SIZE].itertuples()
    ]
    photo_gallery.gallery(items, size=130, key=f"{key}_issue_photos_{page}")

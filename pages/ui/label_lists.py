"""Suspected label errors in a multi-label run's label lists (core.results.labels.multilabel_issues): a label the model
is confident a photo shows but lacks (missing), or carries but does not show (wrong). Shown on Evaluate's multi-label
view and on Explore's Suspected label errors tab, each suspect with the marks a person makes on it (relabel with a
whole new list, exclude, fine: pages.ui.marks), which that person's next run on the dataset applies.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.data.corrections import EXCLUDE, FINE, RELABEL
from core.data.multilabel import NO_LABEL
from core.results.evaluation.multilabel import MultilabelEvaluation
from core.results.labels import multilabel_issues
from core.runs.analysis import AnalysisMissing, RunAnalysis
from pages.ui import auth, marks, photo_gallery, plain

PAGE_SIZE = 10
THUMB_SIZE = 200  # a mosaic or a busy photo needs more than a gallery's thumbnail to judge its labels
SPLIT_WORDS = {"val": "validation", "test": "test"}


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
    corrections = marks.corrections_of(run)
    marked = {path: marks.marked_text(entry) for path, entry in corrections.entries.items()}
    st.download_button(
        f"Download all {found.suspected} suspects (CSV)",
        data=found.csv(marked),
        file_name=f"label-list-issues-{run.run_id}.csv",
        mime="text/csv",
        icon=":material/download:",
        key=f"{key}_issues_csv",
        help="Every suspected photo, lowest label quality first: its path, split, quality, labels, the labels "
        "suspected missing and wrong (a cell's labels joined by |), and your mark.",
    )
    table = found.table.assign(**{k: found.table[k].map(", ".join) for k in ("labels", "missing", "wrong")})
    st.dataframe(
        table.assign(marked=table["path"].map(lambda path: marked.get(path, ""))),
        hide_index=True,
        key=f"{key}_issues",
        column_config={"quality": st.column_config.NumberColumn(format="%.3f")},
    )
    review(run, found, corrections, dataset_root, key)


def suggested(row) -> list[str]:
    """The label list the model suggests for a suspected photo: its labels less the ones suspected wrong, then the
    ones suspected missing (a relabel keeps them in the run's label order)."""
    return [name for name in row.labels if name not in row.wrong] + list(row.missing)


def review(run, found: multilabel_issues.LabelListIssues, corrections, dataset_root: Path, key: str) -> None:
    """Each suspect's photo, its list and what the model doubts, with the marks a person makes on it: relabel (its
    whole new list), exclude, fine, undo (pages.ui.marks). The next run applies them."""
    marks.proposals_section(run)
    marks.what_a_correction_does(run, corrections)
    st.caption(
        "Every photo here is a validation or test photo (the model never trained on them). Correcting one changes "
        "what the next run is tuned and tested against, not what it learns: on the same training photos and seed "
        "it learns the same weights epoch by epoch, but the epoch it keeps and its thresholds (both chosen on "
        "validation) may move, and with them its scores and the labels it answers; its figures are measured against "
        "the corrected test lists, and runs before and after are compared on the test photos whose label lists "
        "they share."
    )
    hide = st.toggle("Hide the ones I reviewed", value=False, key=f"{key}_hide_reviewed")
    rows = [row for row in found.table.itertuples() if not (hide and corrections.action(row.path))]
    if len(rows) < found.suspected:
        st.caption(f"Showing {len(rows)} of the {found.suspected} suspects: the reviewed ones are hidden.")
    if not rows:
        st.caption("No suspect left to review.")
        return
    pages = -(-len(rows) // PAGE_SIZE)
    page = 1
    if pages > 1:  # walk 54: 'the first 24 of 92', and no way to the rest
        st.caption(f"{PAGE_SIZE} photos a page, in the table's order ({len(rows)} in all, {pages} pages).")
        page = st.pagination(pages, key=f"{key}_issue_page")
    start = (page - 1) * PAGE_SIZE
    for row in rows[start : start + PAGE_SIZE]:
        suspect_row(run, row, corrections, dataset_root, key)


def suspect_row(run, row, corrections, dataset_root: Path, key: str) -> None:
    """One suspect: its photo, its list, what the model doubts, the mark made, and the marks to make."""
    row_key = f"{key}_issue_{hashlib.sha1(row.path.encode()).hexdigest()[:10]}"  # follows the photo, not the row
    marked = corrections.entries.get(row.path)
    with st.container(border=True, key=row_key):
        photo, facts, actions = st.columns([3, 6, 6], vertical_alignment="center")
        image, error = photo_gallery.thumb(dataset_root / row.path, THUMB_SIZE)
        photo.image(image, width="stretch")
        doubts = [
            *([f"also shows **{plain.md(', '.join(row.missing))}** (missing from its list)"] if row.missing else []),
            *([f"does not show **{plain.md(', '.join(row.wrong))}** (wrong in its list)"] if row.wrong else []),
        ]
        facts.markdown(
            f"**{plain.md(Path(row.path).name)}** · {SPLIT_WORDS.get(row.split, row.split)} photo  \n"
            f"its labels: **{plain.md(', '.join(row.labels) or NO_LABEL)}**  \n"
            f"the model thinks it {' and that it '.join(doubts)} · label quality {row.quality:.3f}"
        )
        if error:
            facts.caption(plain.md(error))
        if marked:
            facts.markdown(f":green[:material/check: {plain.md(marks.marked_text(marked))}]")
            if not auth.can_change(run):  # a classmate's run: say where the mark goes
                facts.caption(marks.proposal_words(run))
        if marked and isinstance(marked.get("labels"), list):
            chosen, boxed = marked["labels"], "your relabel"
        elif marked and marked.get("action") == FINE:
            chosen, boxed = list(row.labels), "its own labels (marked fine)"
        else:
            chosen, boxed = suggested(row), "the model's suggestion: its labels, plus missing, less wrong"
        labels_key = f"{row_key}_labels"
        # first drawn (or drawn again after another page of suspects): the list the row stands for
        if labels_key not in st.session_state:
            st.session_state[labels_key] = [name for name in chosen if name in run.classes]
        actions.multiselect(
            "Labels",
            run.classes,
            key=labels_key,
            placeholder=f"none: {NO_LABEL}",
            help="The photo's whole label list, as the next run should train and test on it. Filled with the "
            "model's suggestion (its labels, plus the ones suspected missing, less the ones suspected wrong) or "
            "your earlier relabel; empty means none of the labels.",
        )
        buttons = actions.columns(4)
        buttons[0].button(
            "Relabel",
            key=f"{row_key}_relabel",
            on_click=relabel,
            args=(run, row.path, labels_key, list(row.labels)),
            help="Keep the list above as this photo's labels for your next run.",
        )
        buttons[1].button(
            "Exclude",
            key=f"{row_key}_exclude",
            on_click=mark,
            args=(run, row.path, EXCLUDE, labels_key, None),
            help="Leave this photo out of your next run's splits (a photo no list fits, or not a photo of these).",
        )
        buttons[2].button(
            "Fine",
            key=f"{row_key}_fine",
            on_click=mark,
            args=(run, row.path, FINE, labels_key, list(row.labels)),
            help="Its own labels are right: nothing changes in training; the photo counts as reviewed.",
        )
        if marked:
            buttons[3].button(
                "Undo",
                key=f"{row_key}_undo",
                on_click=undo,
                args=(run, row.path, labels_key, suggested(row)),
                help="Forget your mark on this photo.",
            )
        actions.caption(f"In the box first: {boxed}.")


def relabel(run, path: str, labels_key: str, own: list[str]) -> None:
    """Button callback: the photo's new label list, as its multiselect holds it now; its own list again is no
    correction but a review (marked fine)."""
    chosen = list(st.session_state.get(labels_key) or [])
    if sorted(chosen) == sorted(own):
        marks.mark(run, path, FINE)
        st.toast(f"{plain.md(Path(path).name)}: the same as its labels, marked fine", icon=":material/check:")
        return
    marks.mark(run, path, RELABEL, labels=chosen)
    _said(path, marks.corrections_of(run).entries.get(path))


def mark(run, path: str, action: str, labels_key: str, shown: list[str] | None) -> None:
    """Button callback: exclude or fine; the list box then shows what the mark means (fine: the photo's own list)."""
    marks.mark(run, path, action)
    if shown is not None:
        st.session_state[labels_key] = shown
    _said(path, marks.corrections_of(run).entries.get(path))


def undo(run, path: str, labels_key: str, suggestion: list[str]) -> None:
    """Button callback: forget the mark; the list box goes back to the model's suggestion."""
    marks.forget(run, path)
    st.session_state[labels_key] = suggestion
    st.toast(f"{plain.md(Path(path).name)}: mark undone", icon=":material/undo:")


def _said(path: str, entry: dict | None) -> None:
    """A mark confirmed where the person looks: a row hidden once reviewed leaves no other trace on the page."""
    if entry:
        st.toast(f"{plain.md(Path(path).name)}: {plain.md(marks.marked_text(entry))}", icon=":material/check:")

"""The Explore page's suspected label errors: compute them in the background, then review each one.

Each mark ("relabel to X", "exclude", "fine") is written to the dataset's corrections in the data folder
(core.data.corrections, through pages.ui.marks), never to the photos, as the marks of whoever made it. The next
training run of that person applies them; marks on someone else's run are also proposals to its owner,
who (or an admin) accepts or declines them here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.data.corrections import EXCLUDE, FINE, RELABEL, Corrections
from core.data.imaging import ImageError
from core.results.evaluation.explain import Target, overlay
from core.results.labels import issues as label_issues
from core.results.labels import power, verdict
from core.runs.record import Run
from pages.ui import auth, dataset_choice, marks, photo_gallery, plain, run_models, teaching
from pages.ui.explore import fix_worth
from pages.ui.run_task import task_panel

PAGE_SIZE = 10
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test", "all": "dataset"}


def heatmap(run: Run, issue: label_issues.LabelIssue):
    """The photo with its contrast map painted on: red where it says 'suggested' rather than 'given', blue the
    reverse. None (and the reason) when the photo cannot be read."""
    refused = dataset_choice.outside_reason(Path(run.dataset_path) / issue.path)
    if refused:
        return None, refused
    explainer = run_models.explainer(run_models.key_of(run))
    try:
        image = explainer.load(Path(run.dataset_path) / issue.path)
    except (ImageError, OSError) as e:
        return None, str(e)
    target = Target(explainer.class_index(issue.suggested), explainer.class_index(issue.given))
    [result] = explainer.explain(image, [target], layer=explainer.default_layer)
    return overlay(image, result.values, signed=True), None


def review_section(run: Run) -> None:
    teaching.explain("label_issues")
    review = label_issues.load(run.directory)
    if review is None:
        st.markdown(
            "Flora scores **every** photo of this run with a model that never saw it (the run's own predictions "
            "for validation and test; a 5-fold cross-validated classifier on the ResNet features for the "
            "training photos), then flags the photos whose label the evidence disagrees with. It runs in the "
            "background: seconds to a minute, longer the first time the training photos' features are computed."
        )
        task_panel(run, "label-issues", "Find suspected label errors", key="explore_issues")
        return
    corrections = marks.corrections_of(run)
    marks.proposals_section(run)
    marks.what_a_correction_does(run, corrections)
    trust_note(run, review)  # the one verdict: how many to review first and why, the figures behind it
    fix_worth.panel(run, review)  # what fixing these would be worth, before the long run
    if review.issues:  # the whole list, not 50 pages of 10
        st.download_button(
            f"Download all {len(review.issues)} suspects (CSV)",
            data=lambda: label_issues.export_csv(
                label_issues.export_rows(review.issues, corrections, review.supported)
            ),
            file_name=f"label-issues-{run.run_id}.csv",
            mime="text/csv",
            icon=":material/download:",
            key="explore_issues_csv",
            help="Every suspect, most suspicious first, with its split, given and suggested labels, odds, score, "
            "whether the self-test supports it (yes/no) and your mark; the filters below do not apply. "
            "`python -m core label-issues RUN --csv` writes the same.",
        )
    if not review.issues:
        return  # the verdict said so
    filters = st.columns([3, 2])
    splits = sorted({issue.split for issue in review.issues})
    chosen = filters[0].pills(
        "Splits",
        splits,
        selection_mode="multi",
        default=[s for s in splits if s != "test"] or splits,  # test photos: only when asked for (see help)
        format_func=lambda s: SPLIT_NAMES.get(s, s),
        key="explore_issue_splits",
        help="Test photos are left out at first: correcting one changes what every later run is tested on, "
        "and runs before and after are then compared on fewer photos. Add them when you mean to.",
    )
    hide_reviewed = filters[1].toggle("Hide the ones I reviewed", value=False, key="explore_hide_reviewed")
    heatmaps = filters[1].toggle(
        "Show where the model looked",
        value=False,
        key="explore_issue_heatmaps",
        help="Grad-CAM contrast map of each photo: red where it looks like the suggested class rather than its "
        "label, blue the reverse. Loads the model (a few seconds the first time).",
    )
    issues = [
        issue
        for issue in review.issues
        if issue.split in (chosen or []) and not (hide_reviewed and corrections.action(issue.path))
    ]
    hidden = len(review.issues) - len(issues)
    if hidden:
        left_out = [s for s in splits if s not in (chosen or [])]
        count = sum(issue.split in left_out for issue in review.issues)
        names = " and ".join(SPLIT_NAMES.get(s, s) for s in left_out)
        why = f"{count} {names} photo(s) are left out (add them under Splits)" if left_out else ""
        reviewed = "the reviewed ones are hidden" if hide_reviewed else ""
        st.caption(
            f"Showing {len(issues)} of the {len(review.issues)} suspects the verdict above counts: "
            f"{'; '.join(p for p in (why, reviewed) if p)}."
        )
    if not issues:
        st.caption("No suspect left with these filters.")
        return
    if heatmaps:
        explainer = run_models.explainer(run_models.key_of(run))
        st.caption(explainer.grid_note(explainer.default_layer))
    if review.supported is None or (review.supported == 0 and power.inconclusive(review.trust)):
        # no self-test, or one too small to judge the list: nothing bounds it, look by eye (the verdict says so)
        rows_page(run, issues, corrections, heatmaps, key="explore_issue_page")
        return
    supported = {issue.path for issue in review.first}
    first = [issue for issue in issues if issue.path in supported]
    behind = [issue for issue in issues if issue.path not in supported]
    if first:
        st.markdown(f"**Review these first: {len(first)} suspect(s), most suspicious first**")
        rows_page(run, first, corrections, heatmaps, key="explore_issue_page")
    elif review.supported:
        st.caption("None of the suspects the evidence supports is left with these filters.")
    if behind:
        if review.supported:
            label, why = f"{len(behind)} more suspect(s), with weaker evidence", BEHIND_WHY
        else:
            label, why = f"All {len(behind)} suspect(s), none supported by the self-test", NONE_SUPPORTED
        with st.expander(label, icon=":material/low_priority:"):
            st.caption(why)
            rows_page(run, behind, corrections, heatmaps, key="explore_issue_behind_page")


BEHIND_WHY = (
    "Why these are behind: Flora tested its own list by swapping some training labels on purpose and ranking the "
    "photos again. Down to this point in the list, the swapped photos turned up at least twice as often as in "
    "photos picked at random; from here on they did not. So the evidence against these labels is weak: many are "
    "probably the model's own mistakes rather than wrong labels. Look at them after the ones above, if at all."
)

NONE_SUPPORTED = (
    "Flora tested its own list by swapping some training labels on purpose and ranking the photos again: no stretch "
    "at its top held the swapped photos clearly more often than photos picked at random, or often enough to tell "
    "from luck (the figures are above). On this run the list is little better than a guess; look through it by eye "
    "if you like, or train with better features first."
)


def rows_page(run: Run, issues: list, corrections: Corrections, heatmaps: bool, key: str) -> None:
    """One page of PAGE_SIZE suspects' rows, with the pages to turn when there are more."""
    pages = max(1, -(-len(issues) // PAGE_SIZE))
    page = st.pagination(pages, key=key) if pages > 1 else 1
    start = (page - 1) * PAGE_SIZE
    for issue in issues[start : start + PAGE_SIZE]:
        issue_row(run, issue, corrections, heatmaps)


def trust_note(run: Run, review: label_issues.LabelReview) -> None:
    """The review's one verdict (core.results.labels.verdict): how many suspects to review first and why, measured
    against a random pick, with the figures behind it in an expander."""
    said = verdict.verdict(review, run.train_config.weights == "none")
    if not review.issues:
        st.success(said.headline, icon=":material/check_circle:")
    elif said.kind == "warning":
        st.warning(said.headline, icon=":material/casino:")
    else:
        st.info(said.headline, icon=":material/rule:")
    if review.issues:
        st.caption(
            plain.md(verdict.PERCENT_NOTE)
            + " A suspect can be the model's own mistake on a photo labelled right: look at each photo before you "
            "change its label."
        )
    with st.expander("The figures behind this", icon=":material/functions:"):
        for line in said.figures:
            if line != verdict.PERCENT_NOTE:
                st.markdown(f"- {plain.md(line)}")


def issue_row(run: Run, issue: label_issues.LabelIssue, corrections: Corrections, heatmaps: bool = False) -> None:
    key = f"explore_issue_{hashlib.sha1(issue.path.encode()).hexdigest()[:10]}"  # follows the photo, not the row
    marked = corrections.entries.get(issue.path)
    with st.container(border=True, key=key):
        photo, facts, actions = st.columns([1, 3, 3], vertical_alignment="center")
        image, error = photo_gallery.thumb(Path(run.dataset_path) / issue.path, 120)
        photo.image(image, width="stretch")
        if heatmaps and not error:
            painted, problem = heatmap(run, issue)
            if painted is not None:
                photo.image(
                    painted,
                    width="stretch",
                    caption=f"red: {plain.md(issue.suggested)} · blue: {plain.md(issue.given)}",
                )
            else:
                photo.caption(plain.md(problem))
        facts.markdown(
            f"**{plain.md(Path(issue.path).name)}** · {SPLIT_NAMES.get(issue.split, issue.split)} photo  \n"
            f"labelled **{plain.md(issue.given)}**, {plain.md(verdict.suspect_words(issue))}"
        )
        if error:
            facts.caption(plain.md(error))
        if issue.split == "val":
            facts.caption(
                "A validation photo: correcting it changes the score that picks the next run's best epoch"
                + (" (and stops it early)" if run.train_config.early_stopping_patience else "")
                + ", not its test."
            )
        elif issue.split == "test":
            facts.caption("A test photo: correcting it changes what the next run is tested on.")
        if marked:
            text = marks.marked_text(marked)
            facts.markdown(f":green[:material/check: {plain.md(text)}]")
            if not auth.can_change(run):  # a classmate's run: say where the mark goes (walk of issue 38, item 11)
                facts.caption(marks.proposal_words(run))
        classes = run.classes or sorted({issue.given, issue.suggested})
        others = [c for c in classes if c != issue.given]
        relabel = actions.columns([3, 2], vertical_alignment="bottom")
        target = relabel[0].selectbox(
            "Relabel to",
            others,
            index=others.index(issue.suggested) if issue.suggested in others else 0,
            key=f"{key}_to",
        )
        relabel[1].button("Relabel", key=f"{key}_relabel", on_click=marks.mark, args=(run, issue.path, RELABEL, target))
        buttons = actions.columns(3)
        buttons[0].button("Exclude", key=f"{key}_exclude", on_click=marks.mark, args=(run, issue.path, EXCLUDE))
        buttons[1].button("Fine", key=f"{key}_fine", on_click=marks.mark, args=(run, issue.path, FINE))
        if marked:
            buttons[2].button("Undo", key=f"{key}_undo", on_click=marks.forget, args=(run, issue.path))

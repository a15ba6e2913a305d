"""The suspected label errors' panel "What would fixing these be worth?": the fix estimate
(core.results.labels.fix_worth) for the person's marks, every suspect or the top N, in words, with what it cannot see
and the way to the real run."""

from __future__ import annotations

import streamlit as st

from core.data.corrections import Corrections
from core.results.labels import fix_worth
from core.results.labels import issues as label_issues
from core.results.labels.fix_worth_report import caveats, headline, how, touched_words, verdict
from core.runs.record import Run
from pages.ui import auth, common, marks, plain

KEY = "explore_fix_worth"
DEFAULT_TOP = 50


def _choices(marks: int, suspects: int) -> dict[str, str]:
    """The choices this run offers, in words ('your 12 marks', 'every training suspect (40)', 'the top N training
    suspects')."""
    out = {}
    if marks:
        out[fix_worth.MARKED] = fix_worth.Choice(fix_worth.MARKED).words(marks)
    if suspects:
        out[fix_worth.SUSPECTS] = fix_worth.Choice(fix_worth.SUSPECTS).words(suspects)
        out[fix_worth.TOP] = "the top N training suspects"
    return out


def _supported(review: label_issues.LabelReview, entries: dict) -> int:
    """The training suspects (not marked Fine) among the first ones the self-test supports; 0 without a self-test."""
    if review.supported is None:
        return 0
    return len(fix_worth.suspects_as_corrections(review, marks=entries, depth=review.supported))


def panel(run: Run, review: label_issues.LabelReview) -> None:
    """Offer the estimate for a choice of corrections, and show the one stored for it."""
    person = auth.current_user().id
    kept = Corrections.load(common.data_root(), run.dataset_path, person)
    marks = kept.effective()
    suspects = len(fix_worth.suspects_as_corrections(review, marks=kept.entries))
    with st.expander("What would fixing these be worth?", icon=":material/query_stats:"):
        st.caption(
            "Before the long run: Flora retrains a simple head on this run's stored photo features twice, with the "
            "labels as they are and with the fixes, several times over, and measures the change on the validation "
            "photos. It takes seconds; a real corrected run takes as long as this one did."
        )
        choices = _choices(len(marks), suspects)
        if not choices:
            st.caption("Nothing to fix yet: mark a suspect (Relabel or Exclude) below.")
            return
        kind = st.radio(
            "Fix",
            list(choices),
            format_func=choices.get,
            horizontal=True,
            key=f"{KEY}_choice",
            help="Your marks: the relabels and excludes you made below (what your next run applies). Suspects: "
            "those among the training photos, each relabelled to the class it looks like, or as you marked it "
            "(the ones you marked Fine are left out).",
        )
        if kind in (fix_worth.SUSPECTS, fix_worth.TOP):
            st.caption(
                "Only the suspects among the training photos are fixed: fixing a validation photo changes the "
                "measure, not the model. Suspects you marked Fine are left out; the ones you marked take your mark."
            )
        top = 0
        if kind == fix_worth.TOP:
            top = int(
                st.number_input(
                    "How many of the most suspicious",
                    min_value=1,
                    max_value=suspects,
                    value=min(_supported(review, kept.entries) or DEFAULT_TOP, suspects),
                    key=f"{KEY}_top",
                    help="The suspects among the training photos, most suspicious first (the ones you marked Fine left "
                    "out), each relabelled to the class it looks like or as you marked it. It starts at the training "
                    "suspects the evidence supports (the list above shows them first).",
                )
            )
        choice = fix_worth.Choice(kind, top=top)
        try:
            corrections = fix_worth.chosen_corrections(run, common.data_root(), choice, person)
        except fix_worth.FixWorthError as e:
            st.caption(plain.md(e))
            return
        if run.train_features_mtime is None:
            st.caption("It needs the training photos' features, stored when the suspects are found: find them again.")
            return
        stored = fix_worth.find(run.directory, corrections)
        words = choice.words(len(corrections))
        if st.button(
            f"Estimate it again ({words})" if stored else f"Estimate what fixing {words} is worth",
            key=f"{KEY}_go",
            icon=":material/calculate:",
            type="secondary" if stored else "primary",
        ):
            with st.spinner(f"Retraining the head {fix_worth.SEEDS} times with and without the fixes…"):
                fix_worth.estimate_run(run, common.data_root(), corrections, choice)
            st.rerun()  # drawn again from the stored estimate (the button then offers to make it again)
        if stored is None:
            return
        show(run, stored)


def show(run: Run, estimate: fix_worth.Estimate) -> None:
    """The estimate in words: the change and its interval, what it rests on, what it cannot see, what next."""
    accuracy = estimate.results[fix_worth.AS_LABELLED]["accuracy"]
    st.markdown(f"**{headline(estimate)}**")  # Flora's own words and figures: no name of anyone's in them
    st.markdown(
        f"Reading: {verdict(accuracy)}. The fixes change {touched_words(estimate)}. The range in brackets is where "
        "95% of the retrains landed on resamples of the photos: how much the answer moves with which photos happen "
        "to be in training and validation."
    )
    if fix_worth.CORRECTED in estimate.results:
        st.markdown(headline(estimate, fix_worth.CORRECTED))
        st.caption(
            "Its 'from' differs from the figure above because the answer key changed, not the model: these figures "
            "trust the corrected validation labels, so they are only as right as those corrections."
        )
    st.caption(how(estimate))
    st.markdown("**What it cannot see**\n\n" + "\n".join(f"- {note}" for note in caveats(estimate, run)))
    if estimate.choice.get("kind") == fix_worth.MARKED:
        st.markdown(
            "**The real answer** is a run trained with these corrections. Compare then shows this estimate beside "
            "what that run measured, so you learn how far to trust such estimates on your data."
        )
        marks.train_again_link(run)
    else:
        st.markdown(
            "**The real answer** is a run trained with these fixes: mark them first (Relabel on each suspect below, "
            "after a look at the photo), then train again with your corrections. Compare then shows the estimate "
            "made for your marks beside what that run measured."
        )

"""The Predict page's answers with a guarantee: the prediction set at a level the person picks (80-99%), in words,
with what it was measured to do on the run's held-out test photos; and whether the photo was classified in several
views (test-time augmentation) and why."""

from __future__ import annotations

import streamlit as st

from core.results.probabilities import conformal, promise, tta
from pages.ui import plain, teaching


def level_slider(served) -> float | None:
    """The level of the sets shown (a fraction), or None when the run has no sets (and why)."""
    sets = served.sets
    if sets is None:
        st.caption(
            "No prediction sets for this run: its test split is too small to calibrate them on half of it "
            f"(or it has no analysis arrays). `python -m core calibrate {served.run_id} --conformal 0.8` says which."
        )
        return None
    low, high = (round(x * 100) for x in conformal.LEVEL_RANGE)
    percent = st.slider(
        "Prediction set: how often it should hold the right class",
        low,
        high,
        round(conformal.DEFAULT_LEVEL * 100),
        format="%d%%",
        key="predict_set_level",
        help="Instead of one answer, the classes the right one is among, as often as you ask. Higher: larger sets.",
    )
    level = percent / 100
    st.caption(held_caption(sets, level))
    teaching.explain("prediction_sets")
    return level


def shared_classes(sets, level: float) -> list[str]:
    """The classes that share the overall threshold at `level` (too few photos for their own), escaped."""
    return [plain.md(c) for c in sets.few_photos(level)]


def held_caption(sets, level: float) -> str:
    """The promise at `level` (an average over many photos, not each photo), beside what the run's held-out photos
    measured, with their count and whether a shortfall is within the sampling slack; and how often a set held every
    class (no answer)."""
    at = level if sets.at_level(level) else sets.level
    right, photos, full = sets.held_record(at)
    covers = promise.promise_words(at, sets.by_class, shared_classes(sets, at))
    said = (
        f"**The promise**: {covers}. **Measured** on the {photos} test photos this "
        f"run never fitted anything on: sets at {at:.0%} held the right class {promise.held_words(right, photos, at)}"
    )
    if at == sets.level:
        short = [c for c in sets.held_out.by_class if c.coverage is not None and c.coverage < at]
        if short:
            said += f"; by class on this one split, below {at:.0%}: " + ", ".join(
                f"{plain.md(c.name)} {round(c.coverage * c.photos)} of {c.photos}" for c in short
            )
            under = sets.under_covered()  # walk 53: this line named rose, Evaluate and the CLI dandelion alone
            said += (
                f" (over many halvings, {', '.join(plain.md(c) for c in under)} "
                f"{'falls' if len(under) == 1 else 'fall'} short by more than {conformal.UNDER_MARGIN * 100:.0f} "
                "points, as Evaluate says)"
                if under
                else f" (over many halvings no class falls short by more than {conformal.UNDER_MARGIN * 100:.0f} "
                "points: one split's counts move by several)"
            )
    size = (sets.at_level(at) or {"mean_size": sets.held_out.mean_size})["mean_size"]
    said += f"; {size:.1f} of {len(sets.classes)} classes a set on average"
    every = promise.full_words(full / photos if photos else 0.0, len(sets.classes))
    if every:
        said += f"; {every}"
    if sets.spread is not None:
        said += (
            f". Averaged over {sets.spread.splits} random halvings: {sets.spread.coverage_mean:.0%} at {sets.level:.0%}"
        )
    views = f" The sets come from the {sets.views} views' average, as the answers do." if sets.views > 1 else ""
    return said + "." + views


def skipped_words(top: list[tuple[str, float]], names: list[str]) -> str | None:
    """Where the set leaves out a class the model finds likelier than one it holds, that pair named with their
    probabilities and why (each class has its own cut-off); None where the set is the most probable classes."""
    inside = set(names)
    for i, (outside, p_out) in enumerate(top):
        if outside in inside:
            continue
        held = [(n, p) for n, p in top[i + 1 :] if n in inside]
        if held:
            name, p_in = held[-1]
            return (
                f"Dark bars: the set. It holds {plain.md(name)} ({p_in:.1%}) but not {plain.md(outside)} "
                f"({p_out:.1%}), which the model finds likelier: each class has its own cut-off (a class the model "
                "finds hard gets a lower bar to clear), so a less likely class can be "
                "in the set while a likelier one is not."
            )
    return None


def set_line(served, answer, level: float | None) -> set[str] | None:
    """'At 90%: rose or tulip', with what a one-class, wide or all-class set means (for a photo that looks like none
    of the classes: not to be trusted); the set's classes, or None."""
    if level is None or answer is None:
        return None
    names = served.set_of(answer, level)
    if names is None:
        return None
    record = served.sets.size_record(len(names), level) if served.sets is not None else None
    by_class = served.sets.by_class if served.sets is not None else False
    shared = shared_classes(served.sets, level) if by_class else []
    foreign = bool(answer.ood_flag)
    words = conformal.set_words(
        [plain.md(n) for n in names], len(served.classes), level, record, by_class, foreign, shared
    )
    st.markdown(f"**At {level:.0%}:** {words}")
    through = served.reference.detector.let_through_words() if served.reference is not None and not foreign else None
    if through:
        st.caption(
            f"The promise is about photos of this run's classes. This photo was not flagged as unlike them, but "
            f"{through}: if it shows something else, this set means nothing."
        )
    skipped = skipped_words(answer.top, names)
    if skipped:
        st.caption(skipped)
    else:
        st.caption("Dark bars: the classes in the set.")
    return set(names)


def views_caption(served) -> None:
    """Whether each photo is classified in several views, and the measurement that decided it."""
    report = served.tta or tta.load(served.run.directory)
    if report is None:
        return
    if served.views > 1 and report.helped:
        st.caption(
            f"Each photo is classified in {len(report.views)} views ({', '.join(report.views)}) and the answers "
            f"averaged: {plain.md(report.reason)}."
        )
    else:
        st.caption(
            f"Each photo is classified once, as it is: test-time augmentation was measured for this run and "
            f"{plain.md(report.reason)}."
        )
    teaching.explain("tta")

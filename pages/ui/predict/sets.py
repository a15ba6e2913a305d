"""The Predict page's answers with a guarantee: the prediction set at a level the person picks (80-99%), in words,
with what it was measured to do on the run's held-out test photos; and whether the photo was classified in several
views (test-time augmentation) and why."""

from __future__ import annotations

import streamlit as st

from core.results import conformal
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
    held = sets.held_out
    st.caption(
        f"Measured, not promised: on the {held.photos} test photos this run never fitted anything on, sets at "
        f"{sets.level:.0%} held the right class {held.coverage:.0%} of the time, with {held.mean_size:.1f} of "
        f"{len(sets.classes)} classes on average"
        + (" (a threshold per class, so each class is covered)." if sets.by_class else ".")
    )
    teaching.explain("prediction_sets")
    return percent / 100


def set_line(served, answer, level: float | None) -> None:
    """'At 90%: rose or tulip', with what a one-class, wide or all-class set means."""
    if level is None or answer is None:
        return
    names = served.set_of(answer, level)
    if names is None:
        return
    words = conformal.set_words([plain.md(n) for n in names], len(served.classes), level)
    st.markdown(f"**At {level:.0%}:** {words}")


def views_caption(served) -> None:
    """Whether each photo is classified in several views, and the measurement that decided it."""
    from core.results import tta

    report = served.tta or tta.load(served.run.directory)
    if report is None:
        return
    if served.views > 1:
        st.caption(
            f"Each photo is classified in {len(report.views)} views ({', '.join(report.views)}) and the answers "
            f"averaged: {plain.md(report.reason)}."
        )
    else:
        st.caption(f"Test-time augmentation was measured for this run and is off: {plain.md(report.reason)}.")
    teaching.explain("tta")

"""Predict's "answer only when sure": a level ("at most 5% wrong among the photos answered"), the run's threshold for
it and what it did on held-out test photos, and each photo answered or held back with the reason; a run's saved
class thresholds hold answers back the same way."""

from __future__ import annotations

import streamlit as st

from core.results import selective
from core.serving.holding_back import hold_back
from pages.ui import plain, teaching

LEVELS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


def level_control(served) -> float | None:
    """The toggle and the level; None when off (or when the run cannot calibrate a threshold, said why)."""
    on = st.toggle(
        "Answer only when sure",
        key="predict_only_sure",
        help="Hold back photos the model is not sure enough about, so that wrong answers stay under a level you pick "
        "(a promise about photos like the run's test photos, made with 90% confidence).",
    )
    if not on:
        return None
    level = st.select_slider(
        "At most this share wrong among the photos answered",
        options=LEVELS,
        value=selective.DEFAULT_MAX_ERROR,
        format_func=lambda v: f"{v:.0%}",
        key="predict_max_error",
    )
    try:
        served.check_max_error(level)
    except ValueError as e:
        st.warning(plain.md(e), icon=":material/block:")
        return None
    fitted = served.selective
    threshold = fitted.threshold_at(level)
    if threshold is None:
        nearest = fitted.nearest_at(level)
        st.warning(
            f"**No threshold can promise at most {level:.0%} wrong** on this run's photos: every photo is held back. "
            + (
                f"The nearest level it can promise is {nearest[0]:.0%} (answering about "
                f"{fitted.share_at(nearest[1]):.0%} of photos like its test photos)."
                if nearest
                else "No level up to 50% can be promised: its confidence does not tell right answers from wrong ones."
            ),
            icon=":material/block:",
        )
    else:
        st.caption(
            f"Answers when its top probability is **{threshold:.1%}** or more: on test photos it calibrated on, that "
            f"answered {fitted.share_at(threshold):.0%} of them. With probability at least 90%, at most {level:.0%} "
            "of the answers given to photos like the run's test photos are wrong; photos that look like none of its "
            "classes are held back too."
        )
    teaching.explain("selective")
    return level


def apply(served, answer, level: float | None) -> None:
    """Decide the answer's fate at `level` (and the run's class thresholds) on the answer itself."""
    if answer is not None:
        hold_back([answer], served.selective, level, served.class_thresholds)


def notice(answer) -> bool:
    """'Not sure enough to answer' with the reason, for a held-back answer; True when it was held back."""
    if answer is None or not answer.abstained:
        return False
    st.warning(
        f"**Held back**: {plain.md(answer.abstain_reason)}. The model's best guess is below, for what it is worth.",
        icon=":material/pan_tool:",
    )
    return True

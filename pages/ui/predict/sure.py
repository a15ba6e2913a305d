"""Predict's "answer only when sure": a level ("at most 5% wrong among the photos answered"), the run's threshold for
it and what it did on held-out test photos, and each photo answered or held back with the reason; a run's saved
class thresholds hold answers back the same way."""

from __future__ import annotations

import streamlit as st

from core.results.probabilities import class_thresholds as per_class
from core.results.probabilities import selective
from core.serving.holding_back import hold_back
from pages.ui import plain, selective_level, teaching


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
    level = selective_level.slider("predict_max_error")
    try:
        served.check_max_error(level)
    except ValueError as e:
        st.warning(plain.md(e), icon=":material/block:")
        return None
    fitted = served.selective
    threshold = fitted.threshold_at(level)
    if threshold is None:
        selective_level.nearest_warning(fitted, level, "predict_max_error")
    else:
        held = fitted.held_out_at(threshold, level)
        st.caption(
            f"Answers when its top probability is **{threshold:.1%}** or more: on the half of the test photos that "
            f"did not pick the threshold, that answered {held.answered} of {held.photos} "
            f"({held.share_answered:.0%}), {held.errors} of them wrong. With probability at least 90%, at most "
            f"{level:.0%} of the answers given to photos like the run's test photos are wrong; photos that look like "
            "none of its classes are held back too."
        )
        selective_level.fragile_note(fitted, level)
        if served.class_thresholds:
            st.info(
                f"The guarantee covers the {selective.threshold_text(threshold)} threshold alone: your saved "
                f"per-class thresholds ({per_class_list(served.class_thresholds)}) hold back more answers and are not "
                "covered by it (a photo they hold back says so).",
                icon=":material/rule:",
            )
    teaching.explain("selective")
    return level


def per_class_list(thresholds: dict[str, float]) -> str:
    """'tulip 0.70, rose 0.55': the saved per-class thresholds as written on Evaluate."""
    return ", ".join(f"{plain.md(name)} {per_class.figure(value)}" for name, value in thresholds.items())


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

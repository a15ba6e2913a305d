"""The level of "answer only when sure" as Predict and Evaluate ask for it: a slider over every whole percent the
range allows, and, where the level has no threshold, the nearest level that has one (with what it answered on the
held-out half, the words `core calibrate` and the model card give) and a button that moves the slider there."""

from __future__ import annotations

import streamlit as st

from core.results.probabilities import selective


def slider(key: str) -> float:
    """'At most this share wrong among the photos answered': every whole percent the range allows, so the nearest
    level said where one has no threshold can be picked (its button moves the slider through the state under `key`,
    hence the default set there rather than given to the widget)."""
    st.session_state.setdefault(key, selective.DEFAULT_MAX_ERROR)
    return st.select_slider(
        "At most this share wrong among the photos answered",
        options=selective.LEVELS,
        format_func=lambda v: f"{v:.0%}",
        key=key,
    )


def use_level(key: str, level: float) -> None:
    """A button's callback: move the level slider under `key` to `level` (before the slider is drawn again)."""
    st.session_state[key] = level


def nearest_warning(fitted, level: float, key: str) -> None:
    """That no threshold can promise `level`, the nearest level that can with what it answered on the held-out half
    (the words and figures `core calibrate` and the card give), and a button moving the slider under `key` there."""
    nearest = fitted.nearest_at(level)
    cannot, there = selective.no_threshold_words(level, nearest)
    st.warning(f"**{cannot[0].upper()}{cannot[1:]}**. {there[0].upper()}{there[1:]}.", icon=":material/block:")
    if nearest is not None:
        st.button(
            f"Use {nearest['max_error']:.0%}",
            key=f"{key}_nearest",
            on_click=use_level,
            args=(key, nearest["max_error"]),
            help="Move the level to the nearest one this run's threshold can promise.",
        )

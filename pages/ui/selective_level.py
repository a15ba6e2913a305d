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
    fragile = selective.fragile_words(fitted.spread_at(nearest["max_error"])) if nearest is not None else None
    st.warning(
        f"**{cannot[0].upper()}{cannot[1:]}**. {there[0].upper()}{there[1:]}"
        + (f". At {nearest['max_error']:.0%}, {fragile}" if fragile else "")
        + (f". Still, {luck}" if nearest is None and (luck := fitted.no_level_words()) else "")
        + ".",
        icon=":material/block:",
    )
    if nearest is not None:
        st.button(
            f"Use {nearest['max_error']:.0%}",
            key=f"{key}_nearest",
            on_click=use_level,
            args=(key, nearest["max_error"]),
            help="Move the level to the nearest one this run's threshold can promise.",
        )


def fragile_note(fitted, level: float) -> str | None:
    """Beside a promise at `level`: where more than a tenth of the random halvings found no threshold, that in words
    (a warning); the words, or None where the promise does not rest on a lucky halving."""
    fragile = selective.fragile_words(fitted.spread_at(level))
    if fragile:
        st.warning(
            f"**Many halvings find no threshold here.** {fragile[0].upper()}{fragile[1:]}. The promise above holds "
            "over the draw of the photos it calibrated on; whether a threshold is found at all, and what it answers, "
            "depends on that draw.",
            icon=":material/casino:",
        )
    return fragile

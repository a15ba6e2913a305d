"""Evaluate's "When to answer" tab: answering only when sure at a chosen error level (its threshold, what it did on
the held-out half of the test photos and over many halvings), and a threshold per class with a slider each and
the trade-off in words, saved with the run for Predict, the server and the exports."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.results.probabilities import class_thresholds as per_class
from core.results.probabilities import selective
from core.runs.files import run_files
from pages.ui import auth, plain, selective_level, vega
from pages.ui.run_task import why_not

SLIDERS_UP_TO = 12  # more classes than this: pick one to set instead of a slider for every class


def _stamp(run) -> tuple:
    """What the figures depend on: the analysis arrays and test-time augmentation's probabilities."""
    tta = run_files(run).tta
    return run.analysis_mtime, tta.stat().st_mtime if tta.exists() else 0.0


@st.cache_data(show_spinner="Testing thresholds on half the test photos…", max_entries=32)
def _selective(run_dir: str, stamp: tuple, level: float) -> selective.Selective | None:
    try:
        return selective.fit_run(run_dir, level, store=False)
    except (selective.SelectiveError, FileNotFoundError):
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _probabilities(run_dir: str, stamp: tuple):
    return per_class.run_probabilities(run_dir)


def selective_section(run) -> None:
    """'At most 5% wrong among the photos answered': the threshold, the held-out half, the spread; or, where no
    threshold can promise the level, the nearest level that can and what it answers."""
    st.subheader("Answer only when sure")
    st.caption(
        "Pick how many wrong answers you accept among the photos the model answers. Flora finds the confidence "
        "threshold on half of the test photos (Learn then Test) so that, with probability at least 90%, the error "
        "among answered photos like these is at most that. The other half of the test photos played no part in "
        "choosing it, so it shows how the threshold does on photos it never saw. Which photos fall in which half "
        "changes the figures, so Flora also splits the test photos in two at random many times (a *halving*), "
        "chooses a threshold on each, and shows the spread. Predict ('answer only when sure') and the model server "
        "(`max_error`) use the same threshold."
    )
    level = selective_level.slider("evaluate_max_error")
    fitted = _selective(str(run.directory), _stamp(run), level)
    if fitted is None:
        st.caption("Too few test photos to calibrate on one half and check on the other.")
        return
    held, spread = fitted.held_out, fitted.spread
    if fitted.threshold is None:
        selective_level.nearest_warning(fitted, level, "evaluate_max_error")  # Predict and the server say the same
        return
    cols = st.columns(4)
    cols[0].metric(
        "Threshold",
        selective.threshold_text(fitted.threshold),
        help="Answer when the top probability is at least this.",
    )
    cols[1].metric("Answered (held-out half)", f"{held.share_answered:.0%}", help=f"{held.answered} of {held.photos}")
    cols[2].metric(
        "Wrong among answered",
        "-" if held.error is None else f"{held.error:.1%}",
        help=f"{held.errors} of {held.answered}; a true rate of {level:.0%} gives up to {held.allowed_errors} in 95% "
        "of counts this size",
    )
    if spread is not None:
        cols[3].metric(
            "Error among answered, other halvings",
            "-" if spread.error_mean is None else f"{spread.error_mean:.1%} ± {spread.error_sd or 0:.1%}",
            help=f"Over {spread.splits} random halvings, each fitting its own threshold on one half and counting on "
            "the other: the error among the photos answered, over the "
            f"{spread.answered_splits or spread.found} halvings that answered some ({spread.without_threshold} found "
            "no threshold and are left out)",
        )
        selective_level.fragile_note(fitted, level)
        st.caption(
            selective.halvings_words(spread, level) + ". The promise is about photos like the test photos taken "
            "together; a half's own count also moves by chance."
        )


def _curve_chart(rows: list[per_class.ClassAnswers], threshold: float, name: str) -> dict:
    """Precision and recall over the class's threshold, the chosen one a rule: a Vega-Lite spec (pages.ui.vega),
    one for every class's slider at each run of the tab."""
    points = (
        vega.finite({"threshold": r.threshold, "figure": figure, "value": getattr(r, figure)})
        for figure in ("precision", "recall")
        for r in rows
    )
    values = [p for p in points if p["threshold"] is not None and p["value"] is not None]  # pandas' dropna()
    lines = {
        "data": {"values": values},
        "mark": {"type": "line"},
        "encoding": {
            "x": vega.field("threshold", title=f"threshold for {plain.chart(name)}"),
            "y": vega.field("value", scale={"domain": [0, 1]}, axis={"format": "%"}, title=None),
            "color": vega.field("figure", "nominal", title=None),
            "tooltip": [
                vega.field("figure", "nominal"),
                vega.field("threshold", format=".2f"),
                vega.field("value", format=".1%"),
            ],
        },
    }
    rule = {
        "data": {"values": [{"threshold": threshold}]},
        "mark": {"type": "rule", "strokeDash": [4, 3]},
        "encoding": {"x": vega.field("threshold")},
    }
    return {"$schema": vega.SCHEMA, "layer": [lines, rule], "height": 180}


def class_thresholds_section(run) -> None:
    """A slider per class over its confidence threshold with the trade-off in words, saved with the run."""
    st.subheader("A threshold per class")
    try:
        probabilities, labels, classes = _probabilities(str(run.directory), _stamp(run))
    except FileNotFoundError:
        st.caption("The thresholds need the run's analysis (see above).")
        return
    example = plain.md(classes[0])
    st.caption(
        f"An answer '{example}' is given only when the model gives {example} at least its threshold. Moving a slider "
        "up makes that class's answers right more often (precision) and finds fewer of its photos (recall). Figures "
        "on the test photos, with the probabilities Predict shows; the photos that judge a threshold also helped pick "
        "it, so on new photos expect a little less."
    )
    saved = per_class.load(run.directory)
    key = f"evaluate_thresholds_{run.run_id}"
    if key not in st.session_state:
        st.session_state[key] = dict(saved)
    chosen: dict[str, float] = st.session_state[key]
    if len(classes) <= SLIDERS_UP_TO:
        shown = classes
    else:
        shown = [st.selectbox("Class", classes, key="evaluate_threshold_class", help="Pick a class to set.")]
    for name in shown:
        c = classes.index(name)
        # over the probabilities the run gives: from 1/k (no threshold) to the highest this class gets
        span = per_class.slider_range(probabilities, c, saved.get(name, 0.0))
        value = st.slider(
            f"Threshold for {plain.md(name)}",
            span.low,
            span.high,
            min(span.high, max(span.low, float(chosen.get(name, 0.0)))),
            span.step,
            format="%.2f" if span.step >= per_class.STEP else "%.3f",
            key=f"evaluate_threshold_{run.run_id}_{c}",
        )
        chosen[name] = span.threshold(value)  # the value read from the widget above, this very run
        counts = per_class.class_answers(probabilities, labels, c, value)
        st.markdown(per_class.words(plain.md(name), counts))
        st.caption(span.words(plain.md(name)))
        rows = [r for r in per_class.curve(probabilities, labels, c) if span.low <= r.threshold <= span.high]
        st.vega_lite_chart(_curve_chart(rows, value, name), width="stretch", key=f"evaluate_threshold_curve_{c}")
    table = pd.DataFrame(per_class.table(probabilities, labels, classes, chosen))
    # a slider at its bottom (1/k) is no threshold: blank, not "0.000" beside a slider reading 0.500 (walk 41)
    table["threshold"] = table["threshold"].where(table["threshold"] > 0)
    columns = {
        name: st.column_config.NumberColumn(format="%.3f")
        for name in ("precision", "recall", "precision without", "recall without")
    }
    columns["threshold"] = st.column_config.NumberColumn(
        format="%.3f", help="Empty: no threshold (the slider at its lowest): every answer of that class is given."
    )
    st.dataframe(table, hide_index=True, key="evaluate_thresholds_table", column_config=columns)
    kept = {k: v for k, v in chosen.items() if v > 0}
    if kept == saved:
        st.caption(
            "Saved with the run: "
            + (", ".join(f"{plain.md(k)} {per_class.figure(v)}" for k, v in saved.items()) or "none")
            + ". Predict, the model server and the exports hold back answers under them."
            + (
                " Classes without one are answered at any confidence, so a low answer of one of them can be given "
                "while a higher one of a thresholded class is held back: set every class, or none, for one rule."
                if saved and len(saved) < len(classes)
                else ""
            )
        )
    refused = why_not(run)
    if refused:
        st.caption(f":material/visibility: {refused}")
        return
    cols = st.columns(2)
    if cols[0].button(
        "Save these thresholds with the run",
        key="evaluate_thresholds_save",
        icon=":material/save:",
        disabled=kept == saved,
    ):
        stored = per_class.save(run.directory, kept, classes, by=auth.current_user().id)
        st.success(
            "Saved: "
            + (
                ", ".join(f"{plain.md(k)} {per_class.figure(v)}" for k, v in stored.items())
                or "no threshold (every answer given)"
            )
            + ". Predict, the model server and new exports use them now.",
            icon=":material/check_circle:",
        )
    if saved and cols[1].button(
        "Remove the saved thresholds", key="evaluate_thresholds_clear", icon=":material/delete:"
    ):
        per_class.save(run.directory, {}, classes, by=auth.current_user().id)
        st.session_state[key] = {}
        for c in range(len(classes)):  # the sliders start again from no threshold
            st.session_state.pop(f"evaluate_threshold_{run.run_id}_{c}", None)
        st.rerun()

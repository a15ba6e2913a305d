"""The Evaluate page's calibration section: how sure the model should have been, before and after
temperature scaling (numbers, a reliability diagram, a reading in plain words)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.results.probabilities import calibration, calibration_words
from core.results.probabilities.calibration import Calibration, Scores
from core.results.probabilities.calibration_words import bound_words
from pages.ui import plain, teaching, vega


@st.cache_data(show_spinner="Fitting the temperature…", max_entries=16)
def load_calibration(run_dir: str, stamp: float) -> Calibration:
    """The run's calibration (fitted once from analysis.npz and stored beside it)."""
    return calibration.calibrate_run(run_dir)


def ece_text(scores: Scores, interval: bool) -> str:
    text = f"{scores.ece:.3f}"
    return f"{text} [{scores.ece_low:.3f}–{scores.ece_high:.3f}]" if interval else text


def scores_table(cal: Calibration) -> pd.DataFrame:
    interval = True  # always: a bootstrap over the test photos says how firm the ECE is, whatever their number
    rows = [
        ("ECE (expected calibration error), 95 % interval", "ece"),
        ("MCE (worst bin's gap)", "mce"),
        ("NLL (negative log-likelihood)", "nll"),
        ("Brier score", "brier"),
        ("Accuracy", "accuracy"),
    ]
    table = []
    for label, name in rows:
        before, after = getattr(cal.before, name), getattr(cal.after, name)
        if name == "ece":
            table.append(
                {"measure": label, "before": ece_text(cal.before, interval), "after": ece_text(cal.after, interval)}
            )
        else:
            table.append({"measure": label, "before": f"{before:.3f}", "after": f"{after:.3f}"})
    return pd.DataFrame(table)


def reading(cal: Calibration) -> str:
    """The calibration in one or two plain sentences."""
    bins = [b for b in cal.reliability_before if b["count"]]
    top = max(bins, key=lambda b: b["count"]) if bins else None  # the bin holding the most test photos
    t, before, after = cal.temperature, cal.before.ece, cal.after.ece
    if top is None:
        return "No test image to measure the calibration on."
    said, right = top["confidence"], top["accuracy"]
    if t > 1.05:
        kind = "over-confident"
    elif t < 0.95:
        kind = "under-confident"
    else:
        kind = "about as confident as it should be"
    first = (
        f"The model is **{kind}**: when it says {said:.0%} it is right {right:.0%} of the time "
        f"(its most common confidence on the test photos)."
    )
    overlap = (
        cal.after.ece_high is not None and cal.before.ece_low is not None and cal.after.ece_high >= (cal.before.ece_low)
    )
    bound = bound_words(cal)
    if bound:  # on the search's bound, or near-uniform after: a smaller ECE does not mean a better model
        return f"{first} {bound}"
    if after >= before:
        change = "does not improve it on the test photos"
    elif overlap:  # the two intervals overlap: the improvement may be the test photos' luck
        change = "may help, but the intervals overlap, so the improvement could be chance"
    elif after <= 0.7 * before:
        change = "improves it clearly"
    else:
        change = "helps a little"
    second = f"Temperature T = {t:.2f} {change}: ECE {before:.3f} → {after:.3f} (95 % intervals in the table)."
    caveats = calibration_words.caveats(cal)  # bound words are handled above; what is left is what Predict says too
    if cal.after.mce > cal.before.mce:
        caveats.insert(
            1 if after > 0.1 or (cal.after.ece_high or 0) > 0.1 else 0,
            f"Its worst confidence bin got worse (MCE {cal.before.mce:.3f} → {cal.after.mce:.3f}): one temperature "
            "for every photo cannot fix every bin.",
        )
    return " ".join([first, second, *caveats])


def _interval(scores) -> str:
    if scores.ece_low is None or scores.ece_high is None:
        return "not computed"
    return f"{scores.ece_low:.3f}–{scores.ece_high:.3f}"


def reliability_chart(bins: list[dict], title: str) -> dict:
    """Accuracy per confidence bin against the diagonal, the gap shaded, the confidence histogram beneath (a
    Vega-Lite spec, pages.ui.vega: ~65 ms of CPU a chart with Altair)."""
    rows = [{**vega.finite(b), "middle": (b["lower"] + b["upper"]) / 2} for b in bins]
    filled = [
        {**row, "gap_label": "over-confident" if row["gap"] > 0 else "under-confident"}
        for row in rows
        if row["count"] > 0 and row["gap"] is not None
    ]
    scale = {"domain": [0, 1]}
    bars = {
        "data": {"values": filled},
        "mark": {"type": "bar", "color": "#4c78a8", "opacity": 0.85},
        "encoding": {
            "x": vega.field("lower", scale=scale, title="confidence"),
            "x2": {"field": "upper"},
            "y": vega.field("accuracy", scale=scale, title="accuracy"),
            "y2": {"datum": 0},
            "tooltip": [
                vega.field("lower", title="from", format=".2f"),
                vega.field("upper", title="to", format=".2f"),
                vega.field("count", title="images"),
                vega.field("accuracy", format=".1%"),
                vega.field("confidence", title="mean confidence", format=".1%"),
            ],
        },
    }
    gap = {
        "data": {"values": filled},
        "mark": {"type": "bar", "opacity": 0.35},
        "encoding": {
            "x": vega.field("lower"),
            "x2": {"field": "upper"},
            "y": vega.field("accuracy"),
            "y2": {"field": "confidence"},
            "color": {
                "field": "gap_label",
                "type": "nominal",
                "scale": {"domain": ["over-confident", "under-confident"], "range": ["#e45756", "#54a24b"]},
                "title": "gap",
                "legend": {"orient": "bottom"},  # at the right it was cut off in a half-page column
            },
        },
    }
    diagonal = {
        "data": {"values": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]},
        "mark": {"type": "line", "strokeDash": [4, 4], "color": "gray"},
        "encoding": {"x": vega.field("x", scale=scale), "y": vega.field("y", scale=scale)},
    }
    histogram = {
        "data": {"values": rows},
        "mark": {"type": "bar", "color": "#9d9d9d"},
        "encoding": {
            "x": vega.field("lower", scale=scale, title="confidence"),
            "x2": {"field": "upper"},
            "y": vega.field("count", title="test images"),
            "y2": {"datum": 0},
        },
        "width": 300,
        "height": 80,
    }
    top = {"layer": [bars, gap, diagonal], "title": title, "width": 300, "height": 260}
    return {"$schema": vega.SCHEMA, "vconcat": [top, histogram]}


def section(run, stamp: float) -> None:
    """The calibration section of a run that has its analysis arrays."""
    teaching.explain("calibration")
    try:
        cal = load_calibration(str(run.directory), stamp)
    except (OSError, ValueError) as e:
        st.warning(f"The calibration could not be computed: {plain.md(e)}", icon=":material/warning:")
        return
    st.markdown(reading(cal))
    cols = st.columns(4)
    searched = f" Searched between {calibration.T_BOUNDS[0]:g} and {calibration.T_BOUNDS[1]:g}" + (
        f": this T is the search's {cal.at_bound} bound." if cal.at_bound else "."
    )
    cols[0].metric(
        "Temperature T",
        f"{cal.temperature:.2f}" + (" (bound)" if cal.at_bound else ""),
        help="Logits are divided by T before the softmax." + searched,
    )
    cols[1].metric("ECE before", f"{cal.before.ece:.3f}", help=f"95 % interval {_interval(cal.before)}")
    cols[2].metric(
        "ECE after",
        f"{cal.after.ece:.3f}",
        delta=f"{cal.after.ece - cal.before.ece:+.3f}",
        delta_color="inverse",
        help=f"95 % interval {_interval(cal.after)}",
    )
    cols[3].metric(
        "NLL after", f"{cal.after.nll:.3f}", delta=f"{cal.after.nll - cal.before.nll:+.3f}", delta_color="inverse"
    )
    st.dataframe(scores_table(cal), hide_index=True, key="evaluate_calibration_table")
    st.caption(
        f"On the {cal.before.images} test photos; T was fitted on the {cal.val_images} validation photos "
        "(15 equal-width confidence bins)."
    )
    left, right = st.columns(2)
    left.vega_lite_chart(reliability_chart(cal.reliability_before, "Before (raw)"), key="evaluate_reliability_before")
    right.vega_lite_chart(
        reliability_chart(cal.reliability_after, f"After (T = {cal.temperature:.2f})"), key="evaluate_reliability_after"
    )
    st.caption(
        "Each bar is the accuracy of the photos whose confidence fell in that bin; a calibrated model's bars "
        "reach the dashed diagonal. Red: it was surer than it was right (over-confident); green: the reverse. "
        "The grey histogram beneath shows how many photos fall in each bin."
    )

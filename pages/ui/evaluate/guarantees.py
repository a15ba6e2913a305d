"""Evaluate's prediction sets, a promise about many photos taken together (coverage and size by class on the held-out
half of the test split, with how far another halving could move them), and test-time augmentation with its gain measured
(offered as a background task, then its figures and the decision)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.results.evaluation.compare import p_value_words
from core.results.probabilities import conformal, promise, tta
from core.runs.files import run_files
from pages.ui import plain, teaching, vega
from pages.ui.run_task import task_panel


@st.cache_data(show_spinner="Fitting prediction sets…", max_entries=32)
def _sets(run_dir: str, stamp: float, views_stamp: float) -> conformal.ConformalSets | None:
    return conformal.run_sets(run_dir)


def coverage_chart(sets: conformal.ConformalSets) -> dict:
    """Coverage by class on the held-out half (bars), the spread over halvings (whiskers), the level (a rule): a
    Vega-Lite spec (pages.ui.vega)."""
    spread = sets.spread
    under = set(sets.under_covered())
    rows = [
        vega.finite(
            {
                "class": plain.chart(c.name),
                "coverage": c.coverage,
                "photos": c.photos,
                "mean set size": c.mean_size,
                "low": spread.class_coverage_low.get(c.name) if spread else None,
                "high": spread.class_coverage_high.get(c.name) if spread else None,
                "mean over halvings": spread.class_coverage_mean.get(c.name) if spread else None,
                "under": c.name in under,
            }
        )
        for c in sets.held_out.by_class
        if c.coverage is not None
    ]
    lows = [row["low"] for row in rows if row["low"] is not None]
    lowest = min([sets.level, *(row["coverage"] for row in rows), *lows]) if rows else sets.level
    start = max(0.0, float(np.floor((lowest - 0.05) * 20) / 20))  # the interesting part: from just below the lowest
    y = vega.field("class", "nominal", sort=None, title=None, axis={"labelLimit": 220})
    x = vega.field(
        "coverage",
        scale={"domain": [start, 1.0], "clamp": True},
        axis={"format": "%"},
        title="share of held-out sets holding the right class",
    )
    bars = {
        "mark": {"type": "bar", "clip": True},
        "encoding": {
            "x": x,
            "y": y,
            "color": {"condition": {"test": "datum.under", "value": "#c0392b"}, "value": "#5b8fbf"},
            "tooltip": [
                vega.field("class", "nominal"),
                vega.field("coverage", format=".1%"),
                vega.field("mean over halvings", format=".1%"),
                vega.field("photos"),
                vega.field("mean set size", format=".2f"),
            ],
        },
    }
    whiskers = {
        "mark": {"type": "rule", "color": "#333", "strokeWidth": 2},
        "encoding": {"x": vega.field("low"), "x2": {"field": "high"}, "y": y},
    }
    level = {
        "data": {"values": [{"level": sets.level}]},
        "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#b8336a", "strokeWidth": 2},
        "encoding": {"x": vega.field("level")},
    }
    return {
        "$schema": vega.SCHEMA,
        "data": {"values": rows},
        "layer": [bars, whiskers, level],
        "height": max(160, 34 * len(rows)),
    }


def verdict(sets: conformal.ConformalSets) -> str:
    """How the promise fared, in words: the held-out count against the sampling slack of that many photos (never
    'held' below the level), the halvings' average, and by class."""
    spread = sets.spread
    right, photos, _ = sets.held_record()
    overall = (
        f"**On the {photos} held-out photos** sets at {sets.level:.0%} held the right class "
        f"{promise.held_words(right, photos, sets.level)}"
    )
    if spread is not None:
        overall += (
            f". Over {spread.splits} random halvings of the test photos they held it {spread.coverage_mean:.1%} on "
            f"average (± {spread.coverage_sd:.1%} from one halving to the next)"
            if spread.coverage_mean >= sets.level - conformal.UNDER_MARGIN
            else f". Over {spread.splits} halvings they held it only {spread.coverage_mean:.1%} on average: less "
            "than promised"
        )
    under = sets.under_covered()
    margin = f"{conformal.UNDER_MARGIN * 100:.0f} points"
    means = spread.class_coverage_mean if spread is not None else {}
    if not means:
        return overall + "."
    if under:
        named = ", ".join(f"{plain.md(c)} ({means[c]:.0%})" for c in under)
        return (
            overall + f"; by class it fell short for {named}, more than {margin} below {sets.level:.0%} on average "
            "over the halvings: their sets miss the right class more often than promised."
        )
    return overall + (
        f"; by class, every class's average over the halvings is {min(means.values()):.0%} or more (within {margin} "
        f"of {sets.level:.0%} counts as held: one halving moves a class's figure by several points)."
    )


def size_words(sets: conformal.ConformalSets) -> str:
    """What the promise covers, and how the held-out sets did by size: where sets of a size held the right class
    less often than the level, said with the figure."""
    sizes = sets.held_out.by_size
    shared = [plain.md(c) for c in sets.few_photos()]
    counted = ", ".join(
        f"{conformal.size_words(int(k))} {right} of {photos}"
        for k, (right, photos) in sorted(sizes.items(), key=lambda item: int(item[0]))
    )
    said = (
        f"**What the promise covers**: {promise.promise_words(sets.level, sets.by_class, shared)}, and "
        f"not each size of set. By size, the held-out sets held the right class: {counted}."
    )
    short = sets.short_sizes()
    if short:
        named = "; ".join(
            f"{conformal.size_words(size)} sets {right} of {photos} ({right / photos:.0%})"
            for size, right, photos in short
        )
        said += (
            f" Less often than {sets.level:.0%} for {named}: there the sets are the model's best guess, not a sure "
            "answer, and larger sets make up the promise. No threshold can promise each size (the size is what the "
            "threshold decides); a threshold per class is what Flora offers"
            + (" and uses here." if sets.by_class else " (too few test photos per class here for one of their own).")
        )
    return said


def sets_section(run, stamp: float) -> None:
    """Prediction sets: the promise, whether it held on photos that chose nothing, by class."""
    st.subheader("Prediction sets: a promise about many photos taken together")
    teaching.explain("prediction_sets", run.classes)
    tta_file = run_files(run).tta
    sets = _sets(str(run.directory), stamp, tta_file.stat().st_mtime if tta_file.exists() else 0.0)
    if sets is None:
        st.caption(
            "No prediction sets: the test split is too small to fit them on one half and check them on the other "
            f"at 90% (`python -m core calibrate {run.run_id} --conformal 0.8` tries a lower level)."
        )
        return
    held = sets.held_out
    cols = st.columns(4)
    cols[0].metric("Promised", f"{sets.level:.0%}", help="Sets should hold the right class this share of the time.")
    cols[1].metric(
        "Right on the other half",
        f"{held.coverage:.1%}",
        help=f"Recounted on {held.photos} test photos the threshold never saw.",
    )
    cols[2].metric("Mean set size", f"{held.mean_size:.2f}", help=f"Of {len(sets.classes)} classes.")
    cols[3].metric("One class", f"{held.singletons:.0%}", help="Sets that name a single class.")
    st.markdown(verdict(sets))
    _, photos, full = sets.held_record()
    every = promise.full_words(full / photos if photos else 0.0, len(sets.classes))
    if every:
        st.markdown(every[0].upper() + every[1:] + " (the set is no answer).")
    st.markdown(size_words(sets))
    if sets.views > 1:
        before = sets.previous
        changed = (
            f" Before, on the photo as it is: {before['coverage']:.1%} held, {before['mean_size']:.2f} classes a set."
            if before and before.get("views") == 1
            else ""
        )
        st.info(
            f"These sets come from the probabilities averaged over test-time augmentation's {sets.views} views, "
            "which this run's predictors use (see below); the accuracy at the top of the page is without them."
            + changed,
            icon=":material/layers:",
        )
    chart = coverage_chart(sets)
    st.vega_lite_chart(chart, height=chart["height"] + 60, key="evaluate_coverage_chart")  # + the axis and its title
    few = ", ".join(plain.md(c) for c in sets.few_photos())
    why = plain.md(promise.shared_words(sets) or "")
    words = (
        "one threshold for all classes, so the promise holds with the classes taken together, not for each"
        if not sets.by_class
        else "a threshold per class"
        + (f" except {few} (too few photos: the overall one; {why})" if few else "")
        + " (one split can leave a class a few points short of the promise; its average over the halvings should not)"
    )
    st.caption(
        f"Bars: the share of held-out sets (this split) that held the right class, by class; dashed line: the promise "
        f"({sets.level:.0%}); whiskers: where 95% of {sets.spread.splits if sets.spread else 0} random halvings of "
        f"the test photos put each class. {sets.method.upper()} sets on the calibrated probabilities, {words}. "
        "Red: a class whose average over the halvings falls short."
    )


def tta_section(run) -> None:
    """Test-time augmentation: measure it (a background task), then the figures and whether the run uses it."""
    st.subheader("Test-time augmentation: a second look, used only if it measurably helps")
    teaching.explain("tta")
    report = tta.load(run.directory)
    if report is None:
        st.caption(
            f"Classify every validation and test photo in {len(tta.VIEWS)} views ({', '.join(tta.VIEWS)}) and "
            "average them; the validation photos decide whether Predict and the server use it."
        )
        task_panel(run, "tta", "Measure test-time augmentation", key="evaluate_tta")
        return
    rows = []
    for name, part in (("test", report.test), ("validation", report.validation)):
        rows += [
            {"split": name, "figure": "accuracy", "without": part.accuracy_without, "with": part.accuracy_with},
            {"split": name, "figure": "macro F1", "without": part.macro_f1_without, "with": part.macro_f1_with},
            {"split": name, "figure": "NLL (lower is better)", "without": part.nll_without, "with": part.nll_with},
        ]
    frame = pd.DataFrame(rows)
    frame["change"] = frame["with"] - frame["without"]
    st.dataframe(
        frame,
        hide_index=True,
        key="evaluate_tta_table",
        column_config={
            "without": st.column_config.NumberColumn(format="%.4f"),
            "with": st.column_config.NumberColumn(format="%.4f"),
            "change": st.column_config.NumberColumn(format="%+.4f"),
        },
    )
    test = report.test
    p_text = f"p = {test.p_value:.3f}" if test.p_value >= 0.001 else "p < 0.001"
    st.markdown(
        f"On the test photos the views made **{test.better}** answers right that were wrong and **{test.worse}** "
        f"wrong that were right (McNemar {p_text}: {p_value_words(test.p_value)}). "
        f"They cost {report.seconds_per_photo_with * 1000:.0f} ms a photo instead of "
        f"{report.seconds_per_photo_without * 1000:.0f} ms."
    )
    (st.success if report.helped else st.info)(
        f"Decision: {plain.md(report.reason)}.", icon=":material/check_circle:" if report.helped else ":material/info:"
    )
    task_panel(run, "tta", "Measure again", key="evaluate_tta_again")

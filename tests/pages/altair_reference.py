"""The Altair charts the pages drew before they wrote their Vega-Lite specs out (pages/ui/vega.py), kept verbatim
as the reference the tests hold each written spec to: the same spec, data and all, so the same chart."""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.results.evaluation import multilabel_views as views
from core.results.evaluation import robustness
from core.results.evaluation.corruptions import FAMILIES
from core.results.label_next.picking import RANDOM, STRATEGY
from pages.ui import plain

STRATEGY_NAMES = {STRATEGY: "Flora's picking (uncertain, varied)", RANDOM: "at random"}


def _name(corruption: str) -> str:
    return corruption.replace("_", " ")


def drop_chart(reports: list[robustness.RobustnessReport], labels: list[str]) -> alt.Chart:
    """Accuracy lost per corruption (clean minus the mean over severities), grouped by family; runs side by side."""
    rows = []
    for report, label in zip(reports, labels, strict=True):
        for row in report.rows():
            rows.append(
                {
                    "corruption": _name(row["corruption"]),
                    "family": row["family"],
                    "run": label,
                    "drop": row["drop"],
                    "mean accuracy": row["mean accuracy"],
                    "clean accuracy": report.clean_accuracy,
                    "low": row["drop low"],
                    "high": row["drop high"],
                }
            )
    order = [_name(c) for members in FAMILIES.values() for c in members]
    frame = pd.DataFrame(rows)
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("corruption:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=200)),
            x=alt.X(
                "drop:Q",
                axis=alt.Axis(format="%"),
                title="accuracy lost (clean minus the mean over severities; below 0: gained)",
            ),
            yOffset=alt.YOffset("run:N") if len(reports) > 1 else alt.YOffset(),
            color=alt.Color("run:N" if len(reports) > 1 else "family:N", title=None),
            tooltip=[
                "run",
                "corruption",
                "family",
                alt.Tooltip("clean accuracy:Q", format=".1%"),
                alt.Tooltip("mean accuracy:Q", format=".1%"),
                alt.Tooltip("drop:Q", format=".1%"),
                alt.Tooltip("low:Q", format=".1%", title="95% interval from"),
                alt.Tooltip("high:Q", format=".1%", title="to"),
            ],
        )
    )
    if len(reports) == 1 and frame["low"].notna().all():  # whiskers: how far chance moves each drop
        whiskers = (
            alt.Chart(frame)
            .mark_rule(color="black")
            .encode(y=alt.Y("corruption:N", sort=order), x="low:Q", x2="high:Q")
        )
        bars = bars + whiskers
    return bars.properties(height=26 * len(order) * len(reports) + 40)


def severity_chart(report: robustness.RobustnessReport) -> alt.Chart:
    rows = [
        {"corruption": _name(c), "severity": s, "accuracy": report.accuracy[c][s - 1]}
        for c in report.accuracy
        for s in robustness.SEVERITIES
    ]
    rows += [{"corruption": "clean", "severity": s, "accuracy": report.clean_accuracy} for s in robustness.SEVERITIES]
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("severity:O", title="severity"),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            color=alt.Color("corruption:N", title=None),
            tooltip=["corruption", "severity", alt.Tooltip("accuracy:Q", format=".1%")],
        )
        .properties(height=280)
    )


def _curve_chart(evaluation, label: str, threshold: float, counts: dict, frequency: float) -> alt.LayerChart:
    curve = views.curve(evaluation, label)
    here = pd.DataFrame({"recall": [counts["recall"]], "precision": [counts["precision"]], "threshold": [threshold]})
    scale = alt.Scale(domain=[0, 1])
    line = (
        alt.Chart(curve)
        .mark_line(interpolate="step-after", point=True)
        .encode(
            x=alt.X("recall", scale=scale, title="recall (photos with it found)"),
            y=alt.Y("precision", scale=scale, title="precision (answers right)"),
            tooltip=["threshold", "precision", "recall", "found", "added", "missed"],
        )
    )
    dot = alt.Chart(here).mark_point(size=160, filled=True, color="#d62728").encode(x="recall", y="precision")
    chance = alt.Chart(pd.DataFrame({"precision": [frequency]})).mark_rule(strokeDash=[4, 4]).encode(y="precision")
    return (line + chance + dot).properties(height=320, title=plain.chart(f"'{label}': precision against recall"))


def _reliability_chart(table: pd.DataFrame) -> alt.LayerChart:
    scale = alt.Scale(domain=[0, 1])
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4]).encode(x="x", y="y")
    points = (
        alt.Chart(table)
        .mark_circle()
        .encode(
            x=alt.X("mean_score", scale=scale, title="mean score in the bin"),
            y=alt.Y("observed", scale=scale, title="share with the label"),
            size=alt.Size("photos", title="photos"),
            tooltip=["low", "high", "photos", "with_label", "mean_score", "observed"],
        )
    )
    return (diagonal + points).properties(height=260)


def _matrix_chart(matrix: pd.DataFrame) -> alt.LayerChart:
    long = matrix.rename_axis("true").reset_index().melt(id_vars="true", var_name="label", value_name="photos")
    cell = alt.selection_point(name="cell", fields=["true", "label"], on="click", clear=False)
    base = alt.Chart(long).encode(
        x=alt.X("label:N", sort=list(matrix.columns), title="label", axis=alt.Axis(labelAngle=-45, labelLimit=140)),
        y=alt.Y(
            "true:N", sort=list(matrix.index), title="photos with", axis=alt.Axis(labelLimit=140, labelOverlap=False)
        ),
    )
    rects = (
        base.mark_rect(cursor="pointer")
        .encode(
            color=alt.Color("photos:Q", scale=alt.Scale(scheme="oranges", domainMin=0), title="photos"),
            opacity=alt.condition(cell, alt.value(1.0), alt.value(0.85)),
            tooltip=[alt.Tooltip("true:N", title="photos with"), "label:N", "photos:Q"],
        )
        .add_params(cell)
    )
    layers = [rects]
    if len(matrix.columns) <= 20:
        layers.append(base.mark_text(fontSize=11).encode(text="photos:Q"))
    return alt.layer(*layers).properties(height=140 + 36 * len(matrix))  # the axes' labels come out of the height


def curves_chart(result: dict) -> alt.LayerChart:
    rows = [
        {"labels": labels, "accuracy": accuracy, "strategy": STRATEGY_NAMES.get(name, name)}
        for name, figures in result["strategies"].items()
        for labels, accuracy in figures["curve"]
    ]
    frame = pd.DataFrame(rows)
    lines = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("labels:Q", title="labels given"),
            y=alt.Y("accuracy:Q", title="validation accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            color=alt.Color(
                "strategy:N",
                title=None,
                scale=alt.Scale(domain=list(STRATEGY_NAMES.values()), range=["#b8336a", "#2f6db5"]),
                legend=alt.Legend(orient="bottom", labelLimit=400),
            ),
            tooltip=["strategy", "labels", alt.Tooltip("accuracy:Q", format=".1%")],
        )
    )
    target = (
        alt.Chart(pd.DataFrame({"target": [result["target_accuracy"]]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="target:Q")
    )
    return (lines + target).properties(height=300)

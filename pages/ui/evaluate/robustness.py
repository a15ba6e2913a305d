"""Evaluate's Robustness tab: the run's accuracy under the 15 ImageNet-C corruptions at 5 severities (a background
task, its cost said before it starts), the drop per corruption as a chart, corruption errors against clean, and
two runs side by side (say the same settings with and without augmentation)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.results.evaluation import robustness, robustness_spread
from core.results.evaluation.corruptions import FAMILIES
from core.runs.files import run_files
from pages.ui import common, device_status, plain, teaching, vega
from pages.ui.run_task import task_panel


@st.cache_data(show_spinner=False, max_entries=64)
def _report(run_dir: str, stamp: float) -> robustness.RobustnessReport | None:
    return robustness.load(run_dir)


def report_of(run) -> robustness.RobustnessReport | None:
    path = run_files(run).robustness
    return _report(str(run.directory), path.stat().st_mtime if path.exists() else 0.0)


def _name(corruption: str) -> str:
    return corruption.replace("_", " ")


def drop_chart(reports: list[robustness.RobustnessReport], labels: list[str]) -> dict:
    """Accuracy lost per corruption (clean minus the mean over severities), grouped by family; runs side by side (a
    Vega-Lite spec, pages.ui.vega: tens of milliseconds of CPU at every run of the tab with Altair)."""
    rows = []
    for report, label in zip(reports, labels, strict=True):
        for row in report.rows():
            rows.append(
                vega.finite(
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
            )
    order = [_name(c) for members in FAMILIES.values() for c in members]
    percent = {"format": ".1%"}
    encoding = {
        "y": vega.field(
            "corruption", "nominal", sort=order, title=None, axis={"labelOverlap": False, "labelLimit": 200}
        ),
        "x": vega.field(
            "drop",
            axis={"format": "%"},
            title="accuracy lost (clean minus the mean over severities; below 0: gained)",
        ),
        "color": vega.field("run" if len(reports) > 1 else "family", "nominal", title=None),
        "tooltip": [
            vega.field("run", "nominal"),
            vega.field("corruption", "nominal"),
            vega.field("family", "nominal"),
            vega.field("clean accuracy", **percent),
            vega.field("mean accuracy", **percent),
            vega.field("drop", **percent),
            vega.field("low", **percent, title="95% interval from"),
            vega.field("high", **percent, title="to"),
        ],
    }
    if len(reports) > 1:
        encoding["yOffset"] = vega.field("run", "nominal")
    bars = {"mark": {"type": "bar"}, "encoding": encoding}
    spec = {"$schema": vega.SCHEMA, "config": vega.CONFIG, "data": {"values": rows}}
    if len(reports) == 1 and all(row["low"] is not None for row in rows):  # whiskers: how far chance moves each drop
        whiskers = {
            "mark": {"type": "rule", "color": "black"},
            "encoding": {
                "y": vega.field("corruption", "nominal", sort=order),
                "x": vega.field("low"),
                "x2": {"field": "high"},
            },
        }
        spec["layer"] = [bars, whiskers]
    else:
        spec.update(bars)
    return {**spec, "height": 26 * len(order) * len(reports) + 40}


def severity_chart(report: robustness.RobustnessReport) -> dict:
    """Accuracy at each severity, a line per corruption and one for clean (a Vega-Lite spec, pages.ui.vega)."""
    rows = [
        {"corruption": _name(c), "severity": s, "accuracy": report.accuracy[c][s - 1]}
        for c in report.accuracy
        for s in robustness.SEVERITIES
    ]
    rows += [{"corruption": "clean", "severity": s, "accuracy": report.clean_accuracy} for s in robustness.SEVERITIES]
    return {
        "$schema": vega.SCHEMA,
        "config": vega.CONFIG,
        "data": {"values": [vega.finite(row) for row in rows]},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": vega.field("severity", "ordinal", title="severity"),
            "y": vega.field("accuracy", scale={"domain": [0, 1]}, axis={"format": "%"}),
            "color": vega.field("corruption", "nominal", title=None),
            "tooltip": [
                vega.field("corruption", "nominal"),
                vega.field("severity"),
                vega.field("accuracy", format=".1%"),
            ],
        },
        "height": 280,
    }


def _comparable(run, report, runs) -> list:
    """Other runs measured on the same test photos at the same size (their reports can be divided)."""
    out = []
    for other in runs:
        if other.run_id == run.run_id:
            continue
        theirs = report_of(other)
        if theirs is not None and (theirs.photos_digest, theirs.image_size) == (
            report.photos_digest,
            report.image_size,
        ):
            out.append((other, theirs))
    return out


def section(run, runs: list) -> None:
    """The tab: measure (with its cost), or the figures and another run beside them."""
    st.subheader("How it holds up: 15 corruptions at 5 severities")
    st.caption(
        "Each test photo is blurred, noised, fogged, pixelated… as in ImageNet-C (Hendrycks & Dietterich 2019), "
        "at 5 strengths, and classified again. A model that learned what its classes look like, not the camera, "
        "loses little; one no better than chance has nothing to lose, so its figures show nothing."
    )
    report = report_of(run)
    if report is None:
        with st.spinner("Pricing the measurement on this device…"):  # at once, not a bare heading for seconds
            cost = robustness.estimate(
                run, runs, data_root=common.data_root(), device=device_status.device_info().label
            )
        st.info(
            f"**Cost before it starts**: {cost.text}. It runs in the background; you can leave the page.",
            icon=":material/schedule:",
        )
        task_panel(run, "robustness", "Measure robustness", key="evaluate_robustness")
        return
    if report.near_chance:  # first, above the figures: why these figures show nothing (walk 41: tiles above it)
        st.warning(report.words(), icon=":material/casino:")
    cols = st.columns(4)
    cols[0].metric("Clean accuracy", f"{report.clean_accuracy:.3f}", help=f"On {report.photos} test photos.")
    cols[1].metric("Under corruption", f"{1 - report.mce:.3f}", help="Mean over the 15 corruptions and 5 severities.")
    cols[2].metric(
        "mCE",
        f"{report.mce:.1%}",
        help="Mean corruption error: 1 minus the accuracy under corruption, as it is, not divided by a baseline "
        "model's as ImageNet-C's mCE is (pick another run below for that ratio).",
    )
    interval = report.drop_interval()
    cols[3].metric(
        "Error added",
        f"{report.relative_mce * 100:+.1f} pts",
        help="What the corruptions add to the clean error, on average: mCE minus the clean error, in points. Not "
        "ImageNet-C's 'relative mCE', which divides by a baseline model's errors (pick another run below for that)."
        + (
            f" {robustness_spread.interval_words(*interval).capitalize()} (a paired bootstrap over the photos)."
            if interval is not None
            else " No interval: this report kept no answers per photo (measured by an older Flora): measure again."
        ),
    )
    if not report.near_chance:
        st.markdown(report.words())
    if interval is None:
        st.caption("No interval on these figures: this report kept no answers per photo. Measure again for one.")
    others = _comparable(run, report, runs)
    labels = {other.run_id: common.run_label(other) for other, _ in others}
    beside = None
    if others:
        picked = st.selectbox(
            "Side by side with",
            ["(none)", *labels],
            format_func=lambda rid: labels.get(rid, rid),
            key="evaluate_robustness_other",
            help="Another run measured on the same test photos: with and without augmentation, say.",
        )
        beside = next((theirs for other, theirs in others if other.run_id == picked), None)
    shown = [report] + ([beside] if beside is not None else [])
    names = [f"this run ({run.run_id})"] + ([f"{beside.run_id}"] if beside is not None else [])
    chart = drop_chart(shown, names)
    st.vega_lite_chart(chart, width="stretch", key="evaluate_robustness_drop")
    if interval is not None and beside is None:
        st.caption(
            f"Black whiskers: where 95% of resamples of the {report.photos} photos put each drop (a paired "
            "bootstrap): a bar whose whisker crosses 0 could be chance."
        )
    if beside is not None:
        relative = report.against(beside)
        better = "fewer" if (relative["mce"] or 1) < 1 else "more"
        st.markdown(
            f"Against run {beside.run_id}, this run's corruption errors are **{relative['mce']:.2f}x** theirs on "
            f"average (Hendrycks & Dietterich's CE with that run in AlexNet's place): {better} mistakes under "
            f"corruption. Clean: {report.clean_accuracy:.3f} against {beside.clean_accuracy:.3f}."
        )
        table = pd.DataFrame(
            [
                {
                    "corruption": _name(c),
                    "this run": report.mean_accuracy(c),
                    beside.run_id: beside.mean_accuracy(c),
                    "CE / theirs": ratio,
                }
                for c, ratio in relative["ce"].items()
            ]
        )
        numbers = {k: st.column_config.NumberColumn(format="%.3f") for k in table.columns[1:]}
        st.dataframe(table, hide_index=True, key="evaluate_robustness_pair", column_config=numbers)
    else:
        _offer_pair(run, runs)
    with st.expander("Accuracy at each severity", icon=":material/show_chart:"):
        st.vega_lite_chart(severity_chart(report), width="stretch", key="evaluate_robustness_severity")
        frame = pd.DataFrame(report.rows())
        frame["corruption"] = frame["corruption"].map(_name)
        numbers = {k: st.column_config.NumberColumn(format="%.3f") for k in frame.columns[2:]}
        st.dataframe(frame, hide_index=True, key="evaluate_robustness_table", column_config=numbers)
    st.caption(
        f"Measured in {report.seconds:.0f} s on {plain.md(report.device)}. Each photo is corrupted at the model's "
        f"input size ({report.image_size} px) with the constants of the reference code, which were set for 224 px: "
        "at small sizes blurs and snow are relatively stronger. Note: " + "; ".join(report.notes) + "."
    )
    teaching.explain("robustness")


def _offer_pair(run, runs: list) -> None:
    """For an instructor: runs of the same dataset and size not measured yet, to measure beside this one."""
    size = run.train_config.image_size
    candidates = [
        other
        for other in runs
        if other.run_id != run.run_id
        and other.dataset_fingerprint == run.dataset_fingerprint
        and other.train_config.image_size == size
        and report_of(other) is None
        and other.has_analysis
    ]
    if not candidates:
        st.caption(
            "To compare, train the same settings another way (with and without augmentation, say) and measure that "
            "run too: it appears here beside this one."
        )
        return
    labels = {other.run_id: common.run_label(other) for other in candidates}
    picked = st.selectbox(
        "Measure another run of this dataset to compare",
        list(labels),
        format_func=labels.get,
        key="evaluate_robustness_candidate",
    )
    other = next(o for o in candidates if o.run_id == picked)
    # that run's own task, watched and named as its own (walk 41: a success line said "measuring" for minutes after
    # its task had failed, and nothing said so)
    cost = robustness.estimate(other, runs, data_root=common.data_root(), device=device_status.device_info().label)
    task_panel(
        other, "robustness", f"Measure it too ({cost.text})", key=f"evaluate_robustness_pair_{other.run_id}",
        subject=f"run {other.run_id}",
    )  # fmt: skip

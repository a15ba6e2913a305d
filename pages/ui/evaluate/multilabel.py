"""The Evaluate page of a multi-label run: mAP against a random scorer, the per-label table worst first, one label's
precision-recall curve with a threshold to try and the photos behind its 2x2 counts, the label confusion, and the
photos whose label lists the model doubts (pages.ui.label_lists, shared with Explore).

Every figure comes from the run's stored evaluation (core.results.evaluation.multilabel), its words from
core.results.evaluation.multilabel_words; this file lays them out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from core.results.evaluation import multilabel_calibration as calibration
from core.results.evaluation import multilabel_views as views
from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import (
    CELLS,
    NO_LABEL,
    MultilabelEvaluation,
    MultilabelEvaluationMissing,
)
from pages.ui import label_lists, photo_gallery, plain, vega
from pages.ui.evaluate import label_heatmap

PAGE_SIZE = 24
CELL_WORDS = {
    "found": "has it, answered it",
    "added": "answered it, does not have it",
    "missed": "has it, not answered",
    "left out": "does not have it, not answered",
}


@st.cache_data(show_spinner="Loading the evaluation…", max_entries=16)
def _load(run_dir: str, stamp: tuple) -> MultilabelEvaluation:
    return MultilabelEvaluation.of_run(run_dir)


def load(run) -> MultilabelEvaluation | None:
    """The run's evaluation (stored, or made from its analysis arrays once per change of them), None without one."""
    try:
        return _load(str(run.directory), (run.multilabel_evaluation_mtime, run.analysis_mtime))
    except MultilabelEvaluationMissing:
        return None


def section(run, dataset_root: Path) -> None:
    """The whole page below the run picker, for a multi-label run."""
    evaluation = load(run)
    if evaluation is None:
        st.info(
            "This multi-label run keeps no test scores or thresholds to evaluate (it ended before they were stored): "
            "train it again.",
            icon=":material/info:",
        )
        return
    summary = evaluation.summary()
    headline(summary)
    table_tab, label_tab, confusion_tab, issues_tab = st.tabs(
        ["Per-label metrics", "One label", "Label confusion", "Suspected label errors"]
    )
    with table_tab:
        per_label_table(evaluation, summary, run.run_id)
    with label_tab:
        one_label(evaluation, summary, dataset_root, run)
    with confusion_tab:
        confusion(evaluation, dataset_root)
    with issues_tab:
        label_lists.section(run, dataset_root, key="evaluate_ml")


def headline(summary: dict) -> None:
    cols = st.columns(6)
    found = summary["map"]
    cols[0].metric(
        "mAP",
        "-" if found is None else f"{found:.3f}",
        help="Average precision averaged over the labels with a test photo: how well each label's photos are "
        "ranked above the others, whatever the thresholds.",
    )
    baseline = summary["random_map"]
    cols[1].metric(
        "Random scorer's mAP",
        "-" if baseline is None else f"{baseline:.3f}",
        help="What ranking the photos at random gets on average on these photos: about each label's frequency.",
    )
    micro = summary["map_micro"]
    cols[2].metric("Micro mAP", "-" if micro is None else f"{micro:.3f}", help="Every (photo, label) pair as one list.")
    f1 = summary["f1_macro"]
    cols[3].metric(
        "Macro F1",
        "-" if f1 is None else f"{f1:.3f}",
        help="F1 at each label's threshold (tuned on the validation photos), averaged over the labels.",
    )
    cols[4].metric("Exact match", f"{summary['exact_match']:.3f}", help="Share of photos with every label right.")
    cols[5].metric("Test photos", summary["test_images"])
    said = words.headline(summary)
    low = summary["map_interval"][0]
    shown = words.beats_random(low, baseline) and len(words.weak_labels(summary)) < len(summary["per_label"])
    if low is None or shown:  # None: no label, or no interval on a split this large
        st.info(plain.md(said), icon=":material/insights:")
    else:  # no better than chance averaged over the labels, or no label has shown it on its own
        st.warning(plain.md(said), icon=":material/casino:")
    notes = [
        words.untested_words(summary),
        words.thresholds_words(summary),
        f"Hamming loss {summary['hamming_loss']:.3f}: the share of (photo, label) answers that are wrong.",
    ]
    st.caption(" ".join(plain.md(n) for n in notes if n))


def per_label_table(evaluation: MultilabelEvaluation, summary: dict, run_id: str) -> None:
    table = evaluation.per_label()
    table.insert(2, "ap 95%", [_range(lo, hi) for lo, hi in zip(table["ap_low"], table["ap_high"], strict=True)])
    table = table.drop(columns=["ap_low", "ap_high", "left out"])
    every = words.every_photo_labels(summary)
    table["threshold"] = [words.threshold_text(t) for t in table["threshold"]]
    table.insert(  # beside the threshold, where it is read
        table.columns.get_loc("threshold") + 1,
        "note",
        [f"answered for {every[name]} of {summary['test_images']} photos" if name in every else ""
         for name in table["label"]],
    )  # fmt: skip
    st.caption(
        "Worst AP first (labels no test photo has, last). Random AP: what ranking the photos at random gets on these "
        "photos, about the label's frequency; an AP whose interval reaches down to it is no better than chance. "
        "Precision, recall and F1 are at each label's threshold, tuned on the validation photos."
    )
    fraction = {name: st.column_config.ProgressColumn(name, min_value=0, max_value=1, format="%.3f") for name in
                ("ap", "precision", "recall", "f1")}  # fmt: skip
    figures = {name: st.column_config.NumberColumn(name, format="%.3f") for name in ("random_ap", "frequency",
               "ece")}  # fmt: skip
    st.dataframe(table, hide_index=True, key="evaluate_ml_table", column_config=fraction | figures)
    for name in every:
        note = words.every_photo_note(summary, name)
        st.warning(plain.md(note[0].upper() + note[1:]), icon=":material/select_all:")
    st.download_button(
        "Download metrics (JSON)",
        json.dumps(summary, indent=2),
        file_name=f"{run_id}-evaluation.json",
        mime="application/json",
        icon=":material/download:",
        key="evaluate_ml_download",
    )


def one_label(evaluation: MultilabelEvaluation, summary: dict, dataset_root: Path, run) -> None:
    run_id = run.run_id
    order = evaluation.per_label()["label"].tolist()
    key = f"evaluate_ml_label_{run_id}"  # per run: another run's label is not kept when the run changes
    if st.session_state.get(key) not in order:
        st.session_state[key] = order[0]
    label = st.selectbox("Label (worst AP first)", order, key=key)
    entry, j = summary["per_label"][label], evaluation.label_index(label)
    tuned = entry["threshold"]
    note = words.every_photo_note(summary, label)
    if note:
        st.warning(plain.md(note[0].upper() + note[1:]), icon=":material/select_all:")
    threshold = st.slider(
        "Threshold",
        0.0,
        1.0,
        value=float(tuned),
        step=0.005,
        format="%.3f",
        key=f"evaluate_ml_threshold_{run_id}_{j}",
        help=f"A photo is answered '{plain.md(label)}' when its score is at or above this. Its threshold, tuned on the "
        f"validation photos, is {words.threshold_text(tuned)}: move it to see what a stricter or looser one does on "
        "test.",
    )
    counts = evaluation.counts_at(label, threshold)
    said = words.trade_off(label, threshold, counts["found"], counts["added"], counts["missed"])
    st.markdown(f"**{plain.md(said[0].upper() + said[1:])}.**")
    if abs(threshold - tuned) > 1e-9:
        at_tuned = evaluation.counts_at(label, tuned)
        st.caption(plain.md("Its tuned threshold, " + words.trade_off(label, tuned, *_three(at_tuned)) + "."))
    chart_col, counts_col = st.columns([3, 2], gap="medium")
    with chart_col:
        st.vega_lite_chart(_curve_chart(evaluation, label, threshold, counts, entry["frequency"]), width="stretch")
        st.caption(
            f"AP {_value(entry['ap'])} ({_interval(*entry['ap_interval'])}), a random scorer's "
            f"{_value(entry['random_ap'])}; the dashed line is the label's frequency, {entry['frequency']:.2f}: the "
            "precision of answering it at random."
        )
    with counts_col:
        grid = pd.DataFrame(
            {f"answered '{label}'": [counts["found"], counts["added"]],
             "not answered": [counts["missed"], counts["left out"]]},
            index=[f"has '{label}'", "does not have it"],
        )  # fmt: skip
        st.dataframe(grid, key="evaluate_ml_counts")
        picked = st.segmented_control(
            "Photos",
            list(CELLS),
            default="added" if counts["added"] else "found",
            format_func=lambda c: f"{c} ({counts[c]})",
            key="evaluate_ml_cell",
            required=True,
        )
        st.caption(plain.md(f"'{label}': {CELL_WORDS[picked]}."))
    rows = views.cell(evaluation, label, threshold, picked)
    if abs(threshold - tuned) > 1e-9:
        st.caption(
            plain.md(
                f"In the captions, 'answered' reads '{label}' at the slider's {words.threshold_text(threshold)} and "
                "every other label at its tuned threshold."
            )
        )
    _photos(rows, label, dataset_root, f"evaluate_ml_cell_photos_{j}")
    with st.expander(f"Calibration of '{plain.md(label)}'", icon=":material/balance:"):
        table = calibration.reliability(evaluation.truth[:, j], evaluation.probabilities[:, j])
        st.vega_lite_chart(_reliability_chart(table), width="stretch")
        ece = entry.get("ece")
        st.caption(
            plain.md(calibration.words(label, table))
            + (f" Expected calibration error {ece:.3f} (the photos-weighted mean gap)." if ece is not None else "")
        )
    with st.expander(f"Top losses for '{plain.md(label)}'", icon=":material/trending_down:"):
        st.caption("The test photos whose score for this label was furthest from the truth, worst first.")
        losses = views.top_losses(evaluation, label, 12, threshold)
        _photos(losses, label, dataset_root, f"evaluate_ml_losses_{j}")
    offered = label_heatmap.choices(rows, picked, losses)
    label_heatmap.section(run, label, threshold, tuned, offered, dataset_root, key=f"evaluate_ml_gradcam_{j}")


def confusion(evaluation: MultilabelEvaluation, dataset_root: Path) -> None:
    added, missed = views.confusion(evaluation)
    kind = st.segmented_control(
        "Show",
        ["added", "missed"],
        default="added",
        key="evaluate_ml_confusion_kind",
        required=True,
        format_func={"added": "labels the model adds", "missed": "labels the model misses"}.get,
    )
    matrix = added if kind == "added" else missed
    st.caption(
        "Rows: the photos with each true label (the photos with none last). Columns: how many of them the model "
        + (
            "gave each label they do not have."
            if kind == "added"
            else "left without each label they have (on the diagonal: the row's own label missed)."
        )
        + " Click a cell to see its photos."
    )
    event = st.vega_lite_chart(
        _matrix_chart(matrix), key="evaluate_ml_matrix", on_select="rerun", selection_mode="cell", width="stretch"
    )
    picked = ((event or {}).get("selection") or {}).get("cell") or []
    if picked and st.session_state.get("evaluate_ml_matrix_applied") != picked[0]:
        st.session_state["evaluate_ml_matrix_applied"] = picked[0]
        st.session_state["evaluate_ml_row"] = picked[0].get("true")
        st.session_state["evaluate_ml_column"] = picked[0].get("label")
    rows, columns = list(matrix.index), list(matrix.columns)
    worst = matrix.stack().idxmax() if matrix.to_numpy().any() else (rows[0], columns[0])
    if st.session_state.get("evaluate_ml_row") not in rows:
        st.session_state["evaluate_ml_row"] = worst[0]
    if st.session_state.get("evaluate_ml_column") not in columns:
        st.session_state["evaluate_ml_column"] = worst[1]
    pick = st.columns(2)
    row = pick[0].selectbox("Photos with", rows, key="evaluate_ml_row")
    column = pick[1].selectbox(f"Label {kind}", columns, key="evaluate_ml_column")
    if row == NO_LABEL and kind == "missed":
        st.caption("A photo with no label has none to miss.")
        return
    found = views.confused_photos(evaluation, row, column, kind)
    what = "no label" if row == NO_LABEL else f"'{row}'"
    st.markdown(plain.md(f"Photos with {what} where the model {kind} '{column}': {len(found)}"))
    _photos(found, column, dataset_root, "evaluate_ml_confused_photos")


def _photos(rows: pd.DataFrame, label: str, dataset_root: Path, key: str) -> None:
    if rows.empty:
        st.caption("No test photo here.")
        return
    if len(rows) > PAGE_SIZE:
        st.caption(f"The first {PAGE_SIZE} of {len(rows)} photos.")
    photo_gallery.gallery(
        [
            (
                dataset_root / row.path,
                f"{label} {row.score:.2f} · has: {row.labels or '-'} · answered: {row.predicted or '-'}\n"
                f"{Path(row.path).name}",
            )
            for row in rows.head(PAGE_SIZE).itertuples()
        ],
        size=130,
        key=key,
    )


def _curve_chart(evaluation, label: str, threshold: float, counts: dict, frequency: float) -> dict:
    """The label's precision-recall curve, its frequency as a dashed line, the slider's threshold as a dot (a
    Vega-Lite spec, pages.ui.vega: ~50 ms of CPU at every run of the page with Altair)."""
    curve = [vega.finite(row) for row in views.curve(evaluation, label).to_dict("records")]
    here = {"recall": counts["recall"], "precision": counts["precision"], "threshold": threshold}
    scale = {"domain": [0, 1]}
    line = {
        "data": {"values": curve},
        "mark": {"type": "line", "interpolate": "step-after", "point": True},
        "encoding": {
            "x": vega.field("recall", scale=scale, title="recall (photos with it found)"),
            "y": vega.field("precision", scale=scale, title="precision (answers right)"),
            "tooltip": [vega.field(name) for name in ("threshold", "precision", "recall", "found", "added", "missed")],
        },
    }
    chance = {
        "data": {"values": [{"precision": frequency}]},
        "mark": {"type": "rule", "strokeDash": [4, 4]},
        "encoding": {"y": vega.field("precision")},
    }
    dot = {
        "data": {"values": [vega.finite(here)]},
        "mark": {"type": "point", "color": "#d62728", "filled": True, "size": 160},
        "encoding": {"x": vega.field("recall"), "y": vega.field("precision")},
    }
    title = plain.chart(f"'{label}': precision against recall")
    return {"$schema": vega.SCHEMA, "config": vega.CONFIG, "layer": [line, chance, dot], "height": 320, "title": title}


def _reliability_chart(table: pd.DataFrame) -> dict:
    """The label's bins as circles (sized by photos) against the diagonal (a Vega-Lite spec, pages.ui.vega)."""
    scale = {"domain": [0, 1]}
    diagonal = {
        "data": {"values": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]},
        "mark": {"type": "line", "strokeDash": [4, 4]},
        "encoding": {"x": vega.field("x"), "y": vega.field("y")},
    }
    points = {
        "data": {"values": [vega.finite(row) for row in table.to_dict("records")]},
        "mark": {"type": "circle"},
        "encoding": {
            "x": vega.field("mean_score", scale=scale, title="mean score in the bin"),
            "y": vega.field("observed", scale=scale, title="share with the label"),
            "size": vega.field("photos", title="photos"),
            "tooltip": [vega.field(name) for name in ("low", "high", "photos", "with_label", "mean_score", "observed")],
        },
    }
    return {"$schema": vega.SCHEMA, "config": vega.CONFIG, "layer": [diagonal, points], "height": 260}


MATRIX_VIEW = "ml_cells"  # the rectangles' view: the cell selection is bound to it


def _matrix_chart(matrix: pd.DataFrame) -> dict:
    """Photos per (true label, label added or missed), a click selecting a cell (a Vega-Lite spec, pages.ui.vega)."""
    cells = [
        {"true": true, "label": label, "photos": int(matrix.at[true, label])}
        for label in matrix.columns
        for true in matrix.index
    ]
    x = vega.field(
        "label", "nominal", sort=list(matrix.columns), title="label", axis={"labelAngle": -45, "labelLimit": 140}
    )
    y = vega.field(
        "true", "nominal", sort=list(matrix.index), title="photos with", axis={"labelLimit": 140, "labelOverlap": False}
    )
    rects = {
        "name": MATRIX_VIEW,
        "mark": {"type": "rect", "cursor": "pointer"},
        "encoding": {
            "x": x,
            "y": y,
            "color": vega.field("photos", scale={"scheme": "oranges", "domainMin": 0}, title="photos"),
            "opacity": {"condition": {"param": "cell", "value": 1.0}, "value": 0.85},
            "tooltip": [
                vega.field("true", "nominal", title="photos with"),
                vega.field("label", "nominal"),
                vega.field("photos"),
            ],
        },
    }
    layers = [rects]
    if len(matrix.columns) <= 20:
        layers.append(
            {"mark": {"type": "text", "fontSize": 11}, "encoding": {"x": x, "y": y, "text": vega.field("photos")}}
        )
    cell = {"name": "cell", "select": {"type": "point", "fields": ["true", "label"], "on": "click", "clear": False}}
    return {
        "$schema": vega.SCHEMA,
        "config": vega.CONFIG,
        "datasets": {"cells": cells},  # a named dataset, as Altair writes one: Streamlit sends it as Arrow
        "data": {"name": "cells"},
        "layer": layers,
        "params": [{**cell, "views": [MATRIX_VIEW]}],
        "height": 140 + 36 * len(matrix),  # the axes' labels come out of the height
    }


def _three(counts: dict) -> tuple[int, int, int]:
    return counts["found"], counts["added"], counts["missed"]


def _value(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _range(low, high) -> str:
    return "-" if low is None or high is None or low != low else f"{low:.2f}-{high:.2f}"


def _interval(low, high) -> str:
    return "-" if low is None or high is None or low != low else f"95% interval {low:.2f}-{high:.2f}"

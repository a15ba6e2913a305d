"""Evaluate: test-split metrics, per-class table, the interactive confusion matrix and its images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.evaluation import Evaluation
from core.runs import RunState
from pages.ui import common
from pages.ui.navigation import page_file

PAGE_SIZE = 24
BIG = 25  # above this many classes, start from the classes with the most mistakes
CORRECT = "predicted correctly"

st.title("Evaluate")


@st.cache_data(show_spinner="Loading the evaluation…", max_entries=16)
def load_evaluation(run_dir: str, stamp: float) -> Evaluation:
    return Evaluation.load(run_dir)


def evaluation_stamp(run) -> tuple[str, float]:
    return str(run.directory), run.evaluation_mtime


def evaluation_of(run) -> Evaluation:
    return load_evaluation(*evaluation_stamp(run))


@st.cache_data(show_spinner=False, max_entries=16)
def summary_json(run_dir: str, stamp: float) -> str:
    """The downloadable metrics of a run, built once per evaluation file, not on every click."""
    return json.dumps(load_evaluation(run_dir, stamp).summary(), indent=2)


runs = common.finished_runs()
if not runs:
    st.info(
        "No finished run yet. Train one on the Train page; its test-split evaluation appears here.",
        icon=":material/model_training:",
    )
    st.page_link(page_file("train"), label="Go to Train", icon=":material/arrow_forward:")
    st.stop()

labels = {run.run_id: common.run_label(run) for run in runs}
if st.session_state.get("evaluate_run") not in labels:
    st.session_state["evaluate_run"] = runs[0].run_id
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="evaluate_run", bind="query-params")
run = common.store().get(run_id)
evaluation = evaluation_of(run)
dataset_root = Path(run.dataset_path)
summary_averages = evaluation.averages()

cols = st.columns(5)
cols[0].metric("Accuracy", f"{evaluation.accuracy():.3f}", help="Share of test images whose top prediction is right.")
if evaluation.num_classes > 5:
    cols[1].metric("Top-5 accuracy", f"{evaluation.top_k_accuracy(5):.3f}")
else:
    cols[1].metric("Top-2 accuracy", f"{evaluation.top_k_accuracy(2):.3f}")
cols[2].metric("Macro F1", f"{summary_averages['macro']['f1']:.3f}", help="F1 averaged over classes, each class equal.")
cols[3].metric("Weighted F1", f"{summary_averages['weighted']['f1']:.3f}", help="F1 averaged over classes by support.")
cols[4].metric("Test images", len(evaluation.labels))
if run.state is RunState.STOPPED:
    st.caption("This run was stopped early; these are the metrics of its best weights so far.")


# ----------------------------------------------------------------------------- selection plumbing
# The chart, the pairs table and the two select boxes all choose one (true, predicted) pair;
# the callbacks copy a click into the select boxes, which are what the gallery reads.


def pick_from_chart() -> None:
    event = st.session_state.get("evaluate_matrix") or {}
    points = (event.get("selection") or {}).get("points") or []
    cells = st.session_state.get("evaluate_cells") or []
    if points:
        clicked = [p for p in points if p.get("curve_number", 1) == 1] or points  # the squares are trace 1
        index = clicked[0].get("point_index", clicked[0].get("point_number"))
        if index is not None and 0 <= int(index) < len(cells):
            true, predicted = cells[int(index)]
            st.session_state["evaluate_true"], st.session_state["evaluate_pred"] = true, predicted


def pick_from_pairs() -> None:
    event = st.session_state.get("evaluate_pairs") or {}
    rows = (event.get("selection") or {}).get("rows") or []
    pairs = st.session_state.get("evaluate_pair_rows") or []
    if rows and rows[0] < len(pairs):
        st.session_state["evaluate_true"], st.session_state["evaluate_pred"] = pairs[rows[0]]


def matrix_figure(counts: np.ndarray, shown: list[int], normalised: bool, hide_diagonal: bool):
    """The confusion matrix as a heatmap, with a transparent square under each cell's centre.

    Plotly heatmap clicks do not reach Streamlit (streamlit#8760); scatter points do, so the
    invisible squares carry the hover text and the click, and the heatmap carries the colours.
    """
    names = [evaluation.classes[i] for i in shown]
    sub = counts[np.ix_(shown, shown)].astype(float)
    row_totals = counts[shown].sum(axis=1, keepdims=True)
    shares = sub / np.maximum(row_totals, 1)
    z = shares.copy() if normalised else sub.copy()
    if hide_diagonal:
        np.fill_diagonal(z, np.nan)
    n = len(shown)
    text = [
        [
            ("" if np.isnan(z[r, c]) else (f"{shares[r, c]:.0%}" if normalised else f"{int(sub[r, c])}"))
            for c in range(n)
        ]
        for r in range(n)
    ]
    heatmap = go.Heatmap(
        z=z,
        x=names,
        y=names,
        colorscale="RdPu",
        zmin=0,
        hoverinfo="skip",
        xgap=1,
        ygap=1,
        text=text if n <= 15 else None,
        texttemplate="%{text}" if n <= 15 else None,
        colorbar={"title": "share of row" if normalised else "images", "thickness": 12},
    )
    xs, ys, hover, cells = [], [], [], []
    for r in range(n):
        for c in range(n):
            if hide_diagonal and r == c:
                continue
            true_name, predicted_name = names[r], names[c]
            xs.append(predicted_name)
            ys.append(true_name)
            hover.append(
                f"true: {true_name}<br>predicted: {predicted_name}<br>"
                f"{int(sub[r, c])} image(s), {shares[r, c]:.1%} of {true_name}"
            )
            cells.append((true_name, predicted_name))
    side = int(min(1000, max(440, 30 * n + 200)))
    cell_px = max(3, (side - 200) / n)
    clicks = go.Scatter(
        x=xs,
        y=ys,
        mode="markers",
        hovertext=hover,
        hoverinfo="text",
        showlegend=False,
        marker={"symbol": "square", "size": cell_px * 0.9, "color": "rgba(0,0,0,0)"},
        selected={"marker": {"color": "rgba(0,0,0,0)"}},
        unselected={"marker": {"opacity": 1}},
    )
    figure = go.Figure([heatmap, clicks])
    figure.update_xaxes(title="predicted", categoryorder="array", categoryarray=names, tickangle=-45, showgrid=False)
    figure.update_yaxes(title="true", categoryorder="array", categoryarray=names, autorange="reversed", showgrid=False)
    figure.update_layout(
        width=side,
        height=side,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        plot_bgcolor="white",
        clickmode="event+select",
        dragmode=False,
    )
    return figure, cells


def pair_gallery(true_name: str, predicted_name: str) -> None:
    rows = evaluation.pair(true_name, predicted_name)
    what = CORRECT if true_name == predicted_name else f"predicted as **{predicted_name}**"
    st.markdown(f"**{true_name}** {what}: {len(rows)} test image(s)")
    if rows.empty:
        st.caption("No test image in this cell.")
        return
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = st.pagination(pages, key="evaluate_page") if pages > 1 else 1
    chunk = rows.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    items = []
    for row in chunk.itertuples():
        if true_name == predicted_name:
            caption = f"{true_name} {row.p_true:.2f}"
        else:
            caption = f"{predicted_name} {row.p_predicted:.2f} · {true_name} {row.p_true:.2f}"
        items.append((dataset_root / row.path, caption))
    common.gallery(items, size=150)


matrix_tab, classes_tab, losses_tab = st.tabs(
    ["Confusion matrix", "Per-class metrics", "Top losses"], key="evaluate_tab", on_change="rerun"
)

with matrix_tab:
    counts = evaluation.confusion_matrix()
    controls = st.columns([2, 2, 2, 2])
    view = controls[0].segmented_control(
        "Show", ["counts", "row %"], default="counts", key="evaluate_view", required=True
    )
    hide_diagonal = controls[1].toggle(
        "Hide the diagonal",
        value=evaluation.num_classes > 10,
        key="evaluate_hide_diag",
        help="Show only mistakes, so the confusions stand out.",
    )
    order = controls[2].selectbox("Order classes", ["by name", "worst recall first"], key="evaluate_order")
    limit = evaluation.num_classes
    if evaluation.num_classes > BIG:
        limit = controls[3].slider(
            "Classes shown (most mistakes)", 5, evaluation.num_classes, BIG, key="evaluate_limit"
        )
    chosen = evaluation.classes_with_most_errors(limit) if limit < evaluation.num_classes else list(evaluation.classes)
    ordered = evaluation.classes_by_error() if order == "worst recall first" else sorted(evaluation.classes)
    shown = [evaluation.classes.index(name) for name in ordered if name in set(chosen)]

    chart_col, side_col = st.columns([3, 2], gap="medium")
    with chart_col:
        figure, cells = matrix_figure(counts, shown, view == "row %", hide_diagonal)
        st.session_state["evaluate_cells"] = cells
        st.plotly_chart(
            figure,
            key="evaluate_matrix",
            on_select=pick_from_chart,
            selection_mode="points",
            width="content",
            config={"displayModeBar": False},
        )
        st.caption(
            "Rows are the true classes, columns what the model predicted. Hover a square for its numbers; "
            "click it to see its images."
        )
    with side_col:
        st.markdown("**Most confused pairs**")
        confused = evaluation.most_confused()
        st.session_state["evaluate_pair_rows"] = list(zip(confused["true"], confused["predicted"], strict=True))
        if confused.empty:
            st.caption("No mistakes on the test split.")
        else:
            st.dataframe(
                confused,
                hide_index=True,
                key="evaluate_pairs",
                on_select=pick_from_pairs,
                selection_mode="single-row",
                height=min(400, 36 * (len(confused) + 1)),
                column_config={
                    "count": st.column_config.NumberColumn("images", width="small"),
                    "share_of_true": st.column_config.NumberColumn(
                        "of true", format="percent", width="small", help="share of the true class's test images"
                    ),
                },
            )
        st.markdown("**Or pick a cell**")
        worst = confused.iloc[0] if not confused.empty else None
        for key, default in (("evaluate_true", "true"), ("evaluate_pred", "predicted")):
            if st.session_state.get(key) not in evaluation.classes:  # first visit, or another run's classes
                st.session_state[key] = worst[default] if worst is not None else evaluation.classes[0]
        pick = st.columns(2)
        true_name = pick[0].selectbox("True class", evaluation.classes, key="evaluate_true")
        predicted_name = pick[1].selectbox("Predicted as", evaluation.classes, key="evaluate_pred")
    st.divider()
    pair_gallery(true_name, predicted_name)

with classes_tab:
    table = evaluation.per_class()
    top_confusion = confused.drop_duplicates("true").set_index("true")["predicted"]
    table["most often mistaken for"] = table["class"].map(top_confusion).fillna("")
    table = table.sort_values(["f1", "class"]).reset_index(drop=True)
    st.caption("Worst classes first. Click a column header to sort differently.")
    st.dataframe(
        table,
        hide_index=True,
        key="evaluate_per_class",
        column_config={
            name: st.column_config.ProgressColumn(name, min_value=0, max_value=1, format="%.3f")
            for name in ("precision", "recall", "f1")
        },
    )
    averages = pd.DataFrame(summary_averages).T.reset_index(names="average")
    st.dataframe(averages, hide_index=True, key="evaluate_averages")
    st.download_button(
        "Download metrics (JSON)",
        summary_json(*evaluation_stamp(run)),
        file_name=f"{run_id}-evaluation.json",
        mime="application/json",
        icon=":material/download:",
        key="evaluate_download",
    )

with losses_tab:
    st.caption("The test images the model got most confidently wrong: often mislabelled photos, or real look-alikes.")
    count = st.slider("How many", 4, 48, 16, 4, key="evaluate_top_k")
    losses = evaluation.top_losses(count)
    if losses.empty:
        st.success("No mistakes on the test split.")
    else:
        common.gallery(
            [
                (dataset_root / row.path, f"{row.true} → {row.predicted} ({row.p_predicted:.2f})")
                for row in losses.itertuples()
            ],
            size=150,
        )

"""Evaluate: test-split metrics, per-class table, the interactive confusion matrix and its images (a multi-label
run: its figures per label, pages/ui/evaluate/multilabel.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.datasets import SMALL_TEST_SPLIT, small_test_note
from core.processes import JobState
from core.results.evaluation.metrics import Evaluation
from pages.ui import analysis_status, auth, common, last_run, marks, photo_gallery, plain, teaching
from pages.ui.evaluate import calibration as evaluate_calibration
from pages.ui.evaluate import card as evaluate_card
from pages.ui.evaluate import confusion as evaluate_confusion
from pages.ui.evaluate import guarantees as evaluate_guarantees
from pages.ui.evaluate import heatmaps as evaluate_heatmaps
from pages.ui.evaluate import multilabel as evaluate_multilabel
from pages.ui.evaluate import robustness as evaluate_robustness
from pages.ui.evaluate import thresholds as evaluate_thresholds
from pages.ui.navigation import page_file

PAGE_SIZE = 12  # a cell's photos per page: all in view beside the matrix, no scrolling box to miss
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


runs = common.evaluable_runs()
if not runs:
    st.info(
        "No finished run yet. Train one on the Train page; its test-split evaluation appears here.",
        icon=":material/model_training:",
    )
    st.page_link(page_file("train"), label="Go to Train", icon=":material/arrow_forward:")
    st.stop()

runs = auth.scope_runs(runs, "evaluate_scope")  # shared: mine first, everyone's a click away
if not runs:
    st.stop()
labels = {run.run_id: common.run_label(run) for run in runs}
last_run.follow_link("evaluate_run", list(labels))
if st.session_state.get("evaluate_run") not in labels:
    st.session_state["evaluate_run"] = last_run.opening_run(list(labels), runs[0].run_id, key="evaluate_run")
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="evaluate_run", bind="query-params")
last_run.remember_run(run_id, key="evaluate_run")
run = common.store().get(run_id)
marks.applied_note(run)
if run.multilabel:  # its figures per label, at its thresholds (pages/ui/evaluate/multilabel.py)
    if run.state is JobState.STOPPED:
        st.caption("This run was stopped early; these are the metrics of its best weights so far.")
    common.random_start_notice(run)
    evaluate_multilabel.section(run, Path(run.dataset_path))
    st.stop()
evaluation = evaluation_of(run)
dataset_root = Path(run.dataset_path)
summary_averages = evaluation.averages()

top_k = 5 if evaluation.num_classes > 5 else 2 if evaluation.num_classes > 2 else None  # top-2 of 2 is always 1
cols = st.columns(5 if top_k else 4)
cols[0].metric("Accuracy", f"{evaluation.accuracy():.3f}", help="Share of test images whose top prediction is right.")
rest = cols[1:]
if top_k:
    rest[0].metric(
        f"Top-{top_k} accuracy",
        f"{evaluation.top_k_accuracy(top_k):.3f}",
        help=f"Share of test images whose true class is among the {top_k} most probable.",
    )
    rest = rest[1:]
rest[0].metric(
    "Macro F1",
    f"{summary_averages['macro']['f1']:.3f}",
    help="F1 averaged over the classes with test photos, each class equal.",
)
rest[1].metric("Weighted F1", f"{summary_averages['weighted']['f1']:.3f}", help="F1 averaged over classes by support.")
rest[2].metric("Test images", len(evaluation.labels))
if len(evaluation.labels) < SMALL_TEST_SPLIT:
    st.warning(small_test_note(len(evaluation.labels), evaluation.accuracy()), icon=":material/straighten:")
if run.state is JobState.STOPPED:
    st.caption("This run was stopped early; these are the metrics of its best weights so far.")
common.random_start_notice(run)
analysis_status.limits_note(run)
has_analysis = analysis_status.offer(run, key="evaluate_analysis", needed_for="its calibration and heatmaps")


# ----------------------------------------------------------------------------- selection
# The matrix, the pairs table and the two select boxes all choose one (true, predicted) cell. A
# click (or a picked row) is copied into the select boxes once, when it is new, before they are
# drawn; the select boxes are what the gallery reads.


def evaluation_classes_by_confusion(evaluation: Evaluation) -> list[str]:
    """Two class names for the teaching notes: the most confused pair (true, predicted), else the first two."""
    confused = evaluation.most_confused()
    if not confused.empty:
        return [str(confused.iloc[0]["true"]), str(confused.iloc[0]["predicted"])]
    return list(evaluation.classes[:2])


def apply_pick(source: str, cell: tuple[str, str] | None) -> None:
    """Make `cell` the chosen one if `source` (the matrix or the table) reports a new pick."""
    applied = f"{source}_applied"
    if cell is None or st.session_state.get(applied) == cell:
        return
    st.session_state[applied] = cell
    if cell[0] in evaluation.classes and cell[1] in evaluation.classes:
        st.session_state["evaluate_true"], st.session_state["evaluate_pred"] = cell
        st.session_state["evaluate_page"] = 1


UNCALIBRATED = (
    "Probabilities here are the model's own softmax, before calibration (the Calibration tab shows what its "
    "temperature changes); Predict, Explore and the server show calibrated ones, so a photo's figure differs there."
)


def picked_cell(event) -> tuple[str, str] | None:
    picked = ((event or {}).get("selection") or {}).get("cell") or []
    return (picked[0].get("true"), picked[0].get("predicted")) if picked else None


def picked_row(event, pairs: list[tuple[str, str]]) -> tuple[str, str] | None:
    rows = ((event or {}).get("selection") or {}).get("rows") or []
    return pairs[rows[0]] if rows and rows[0] < len(pairs) else None


def pair_gallery(true_name: str, predicted_name: str) -> list[tuple[str, str, str]]:
    """The photos of a cell of the matrix; returns its mistakes (path, true, predicted) on the page shown."""
    rows = evaluation.pair(true_name, predicted_name)
    what = CORRECT if true_name == predicted_name else f"predicted as **{plain.md(predicted_name)}**"
    st.markdown(f"**{plain.md(true_name)}** {what}: {len(rows)} test image(s)")
    st.caption(UNCALIBRATED)
    if rows.empty:
        st.caption("No test image in this cell.")
        return []
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = st.pagination(pages, key="evaluate_page") if pages > 1 else 1
    chunk = rows.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    if pages > 1:
        first = (page - 1) * PAGE_SIZE + 1
        st.caption(f"Photos {first}–{first + len(chunk) - 1} of {len(rows)}; the pages above show the rest.")
    items = []
    for row in chunk.itertuples():
        if true_name == predicted_name:
            caption = f"{true_name} {row.p_true:.2f}"
        else:
            caption = f"{predicted_name} {row.p_predicted:.2f} · {true_name} {row.p_true:.2f}"
        items.append((dataset_root / row.path, f"{caption}\n{Path(row.path).name}"))
    photo_gallery.gallery(items, size=110, key="evaluate_gallery")
    if true_name == predicted_name:
        return []
    return [(row.path, true_name, predicted_name) for row in chunk.itertuples()]


matrix_tab, classes_tab, losses_tab, calibration_tab, answer_tab, robustness_tab, card_tab = st.tabs(
    ["Confusion matrix", "Per-class metrics", "Top losses", "Calibration & sets", "When to answer", "Robustness",
     "Model card"],
    key="evaluate_tab",
    on_change="rerun",
)  # fmt: skip

with matrix_tab:
    counts = evaluation.confusion_matrix()
    teaching.explain("confusion", evaluation_classes_by_confusion(evaluation))
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
    log_scale = controls[1].toggle(
        "Log colour scale",
        value=False,
        key="evaluate_log",
        help="Stretch the small counts, so rare confusions show beside frequent ones.",
    )
    order = controls[2].selectbox(
        "Order classes",
        evaluate_confusion.ORDERS,
        index=2 if evaluation.num_classes > BIG else 0,
        key="evaluate_order",
        help="'confused together' puts classes the model mixes up side by side, so mistakes gather in blocks.",
    )
    picked = controls[2].multiselect(
        "Find classes",
        sorted(evaluation.classes),
        key="evaluate_classes",
        placeholder="all classes",
        help="Show only these classes; every other class is summed into '(other)'.",
    )
    limit = evaluation.num_classes
    if evaluation.num_classes > BIG and not picked:
        limit = controls[3].slider(
            "Classes shown (most mistakes)", 5, evaluation.num_classes, BIG, key="evaluate_limit"
        )
    ordered = evaluate_confusion.ordered_classes(evaluation, counts, order)
    names, sub, row_totals = evaluate_confusion.shown_matrix(evaluation, counts, ordered, picked, limit)
    confused = evaluation.most_confused()

    chart_col, side_col = st.columns([3, 2], gap="medium")
    with chart_col:
        event = st.vega_lite_chart(
            evaluate_confusion.matrix_chart(names, sub, row_totals, view == "row %", hide_diagonal, log_scale),
            key="evaluate_matrix",
            on_select="rerun",
            selection_mode="cell",
            width="stretch",  # its column's width: a fixed 900 px ran under the side panel at 1,400 px
        )
        apply_pick("evaluate_matrix", picked_cell(event))
        st.caption(
            "Rows are the true classes, columns what the model predicted. Hover a cell for its numbers; "
            "click it to see its photos on the right."
        )
    with side_col:
        with st.expander("Most confused pairs", icon=":material/compare_arrows:", expanded=False):
            if confused.empty:
                st.caption("No mistakes on the test split.")
            else:
                pairs = list(zip(confused["true"], confused["predicted"], strict=True))
                table_event = st.dataframe(
                    confused,
                    hide_index=True,
                    key="evaluate_pairs",
                    on_select="rerun",
                    selection_mode="single-row",
                    height=min(400, 36 * (len(confused) + 1)),
                    column_config={
                        "count": st.column_config.NumberColumn("images", width="small"),
                        "share_of_true": st.column_config.NumberColumn(
                            "of true", format="percent", width="small", help="share of the true class's test images"
                        ),
                    },
                )
                apply_pick("evaluate_pairs", picked_row(table_event, pairs))
        worst = confused.iloc[0] if not confused.empty else None
        for key, default in (("evaluate_true", "true"), ("evaluate_pred", "predicted")):
            if st.session_state.get(key) not in evaluation.classes:  # first visit, or another run's classes
                st.session_state[key] = worst[default] if worst is not None else evaluation.classes[0]
        pick = st.columns(2)
        true_name = pick[0].selectbox("True class", evaluation.classes, key="evaluate_true")
        predicted_name = pick[1].selectbox("Predicted as", evaluation.classes, key="evaluate_pred")
        mistakes = pair_gallery(true_name, predicted_name)
    # the heatmaps at the page's width: four maps in the side column were 70 px wide each
    evaluate_heatmaps.section(run, dataset_root, mistakes, key="evaluate_heatmap_pick")

with classes_tab:
    teaching.explain("precision_recall", evaluation_classes_by_confusion(evaluation))
    table = evaluation.per_class()
    top_confusion = confused.drop_duplicates("true").set_index("true")["predicted"]
    table["most often mistaken for"] = table["class"].map(top_confusion).fillna("")
    untested = table["support"] == 0
    table = table.assign(_untested=untested).sort_values(["_untested", "f1", "class"]).drop(columns="_untested")
    table = table.reset_index(drop=True)
    for column in ("precision", "recall", "f1"):  # no test photo: no score, not a score of 0
        table[column] = table[column].where(table["support"] > 0)
    st.caption(
        "Worst classes first. Click a column header to sort differently."
        + (
            f" {int(untested.sum()):,} class(es) have no test photo: their scores are blank, they are listed last "
            "and left out of the macro averages."
            if untested.any()
            else ""
        )
    )
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
    teaching.explain("top_losses", evaluation_classes_by_confusion(evaluation))
    st.caption(
        "The test images the model got most confidently wrong, highest loss first: often mislabelled photos, or real "
        "look-alikes. Under each: true → predicted, its loss (−log of the probability it gave the true class) and "
        "that probability. " + UNCALIBRATED
    )
    count = st.slider("How many", 4, 48, 16, 4, key="evaluate_top_k")
    losses = evaluation.top_losses(count)
    if losses.empty:
        st.success("No mistakes on the test split.")
    else:
        if len(losses) < count:
            mistakes = "The only mistake" if len(losses) == 1 else f"All {len(losses)} mistakes"
            st.caption(f"{mistakes} on the test split: fewer than the {count} asked for.")
        photo_gallery.gallery(
            [
                (
                    dataset_root / row.path,
                    f"{row.true} → {row.predicted} · loss {row.loss:.2f} (p {row.p_true:.3f})\n{Path(row.path).name}",
                )
                for row in losses.itertuples()
            ],
            size=150,
            key="evaluate_losses",
        )
        mistakes = [(row.path, row.true, row.predicted) for row in losses.itertuples()]
        evaluate_heatmaps.section(run, dataset_root, mistakes, key="evaluate_losses_heatmap_pick")

with calibration_tab:
    if has_analysis:
        evaluate_calibration.section(run, run.analysis_mtime)
        evaluate_guarantees.sets_section(run, run.analysis_mtime)
        evaluate_guarantees.tta_section(run)
    else:
        st.caption("The calibration needs the run's analysis (see above).")

# the three tabs below run only while open: their figures take a moment (a halving test, a card from every file)
if answer_tab.open:
    with answer_tab:
        if has_analysis:
            teaching.explain("selective")
            evaluate_thresholds.selective_section(run)
            teaching.explain("class_thresholds", list(run.classes))
            evaluate_thresholds.class_thresholds_section(run)
        else:
            st.caption("When to answer needs the run's analysis (see above).")

if robustness_tab.open:
    with robustness_tab:
        if has_analysis:
            evaluate_robustness.section(run, runs)
        else:
            st.caption("Robustness needs the run's analysis (see above).")

if card_tab.open:
    with card_tab:
        evaluate_card.section(run)

"""Evaluate page: metrics, per-class table, and choosing a confusion cell to see its images."""

from __future__ import annotations

from core.evaluation import Evaluation
from tests.pages.conftest import table_with, texts


def _evaluation(workspace) -> Evaluation:
    return Evaluation.load(workspace["store"].get(workspace["run_id"]).directory)


def test_metrics_and_per_class_table(app, workspace):
    at = app("evaluate")
    evaluation = _evaluation(workspace)
    shown = texts(at)
    assert f"Accuracy: {evaluation.accuracy():.3f}" in shown
    assert f"Test images: {len(evaluation.labels)}" in shown
    table = table_with(at, "class", "precision", "recall", "f1")
    assert sorted(table["class"]) == ["blue", "crimson", "green", "red"]
    assert table["f1"].tolist() == sorted(table["f1"].tolist())  # worst first
    assert set(table.columns) >= {"precision", "recall", "f1", "support", "most often mistaken for"}


def test_the_matrix_opens_on_the_worst_pair_and_a_pair_row_selects_a_cell(app, workspace):
    evaluation = _evaluation(workspace)
    confused = evaluation.most_confused()
    assert len(confused) >= 1, "the prepared run must make a mistake (red and crimson share a colour)"
    at = app("evaluate")
    worst = confused.iloc[0]
    assert at.selectbox(key="evaluate_true").value == worst["true"]
    assert at.selectbox(key="evaluate_pred").value == worst["predicted"]
    assert f"**{worst['true']}** predicted as **{worst['predicted']}**: {worst['count']} test image(s)" in texts(at)
    matrix = at.get("plotly_chart")[0]
    assert "heatmap" in matrix.proto.spec and "scatter" in matrix.proto.spec  # colours + clickable squares

    # select the last pair in the "most confused pairs" table, as a click on its row does
    last = len(confused) - 1
    at.session_state["evaluate_pairs"] = {"selection": {"rows": [last]}}
    at.run()
    pair = confused.iloc[last]
    assert at.selectbox(key="evaluate_true").value == pair["true"]
    assert f"**{pair['true']}** predicted as **{pair['predicted']}**" in texts(at)


def test_picking_a_cell_by_class_shows_its_images_with_probabilities(app, workspace):
    evaluation = _evaluation(workspace)
    at = app("evaluate")
    true_class = evaluation.classes[int(evaluation.labels[0])]
    at.selectbox(key="evaluate_true").set_value(true_class)
    at.selectbox(key="evaluate_pred").set_value(true_class).run()
    expected = len(evaluation.pair(true_class, true_class))
    assert f"**{true_class}** predicted correctly: {expected} test image(s)" in texts(at)
    images = at.get("image")
    assert images, "the gallery shows the cell's images"


def test_counts_to_row_share_and_large_class_controls(app):
    at = app("evaluate")
    at.segmented_control(key="evaluate_view").set_value("row %").run()
    assert not at.exception
    assert "share of row" in at.get("plotly_chart")[0].proto.spec
    at.toggle(key="evaluate_hide_diag").set_value(True).run()
    assert not at.exception


def test_top_losses_tab(app, workspace):
    at = app("evaluate")
    at.session_state["evaluate_tab"] = "Top losses"
    at.run()
    evaluation = _evaluation(workspace)
    wrong = evaluation.top_losses(16)
    if len(wrong):
        assert at.get("image"), "the most confidently wrong images are shown"
    else:
        assert "No mistakes" in texts(at)

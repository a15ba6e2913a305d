"""Evaluate page, issue 11: calibration, computing the analysis of an old run, heatmaps, the large matrix."""

from __future__ import annotations

import json

import altair as alt
import pytest

from core.results.probabilities import calibration
from core.runs.files import run_files
from core.runs.record import ANALYSIS_FILE
from tests.conftest import copy_run
from tests.pages.conftest import table_with, texts


def _calibration_tab(app, **kwargs):
    at = app("evaluate", **kwargs)
    at.session_state["evaluate_tab"] = "Calibration & sets"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_calibration_numbers_are_cores(app, workspace):
    run = workspace["store"].get(workspace["run_id"])
    assert run.has_analysis
    at = _calibration_tab(app)
    cal = calibration.calibrate_run(run.directory)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Temperature T"] == f"{cal.temperature:.2f}" + (" (bound)" if cal.at_bound else "")
    assert metrics["ECE before"] == f"{cal.before.ece:.3f}"
    assert metrics["ECE after"] == f"{cal.after.ece:.3f}"
    table = table_with(at, "measure", "before", "after").set_index("measure")
    nll = table.loc["NLL (negative log-likelihood)"]
    assert (nll["before"], nll["after"]) == (f"{cal.before.nll:.3f}", f"{cal.after.nll:.3f}")
    brier = table.loc["Brier score"]
    assert (brier["before"], brier["after"]) == (f"{cal.before.brier:.3f}", f"{cal.after.brier:.3f}")
    ece_row = next(name for name in table.index if name.startswith("ECE"))
    assert ece_row == "ECE (expected calibration error), 95 % interval"  # the bootstrap interval, always
    assert table.loc[ece_row, "before"] == f"{cal.before.ece:.3f} [{cal.before.ece_low:.3f}–{cal.before.ece_high:.3f}]"
    assert table.loc[ece_row, "after"] == f"{cal.after.ece:.3f} [{cal.after.ece_low:.3f}–{cal.after.ece_high:.3f}]"
    assert f"ECE {cal.before.ece:.3f} → {cal.after.ece:.3f}" in texts(at)
    assert f"T = {cal.temperature:.2f}" in texts(at)
    charts = [el for kind in ("arrow_vega_lite_chart", "vega_lite_chart") for el in at.get(kind)]
    assert len(charts) >= 3, "the matrix and the two reliability diagrams"
    reliability = [c.proto.spec for c in charts if "over-confident" in c.proto.spec]
    assert reliability and all('"orient":"bottom"' in spec.replace(" ", "") for spec in reliability)
    for chart in charts:  # each spec Streamlit sends is Vega-Lite by its own schema (Altair's copy validates it)
        spec = json.loads(chart.proto.spec)
        (alt.VConcatChart if "vconcat" in spec else alt.LayerChart if "layer" in spec else alt.Chart).from_dict(spec)


def test_the_reliability_diagram_is_valid_vega_lite_with_a_bar_per_filled_bin():
    """Written out as a Vega-Lite spec (not built with Altair, ~130 ms of every Evaluate run): valid by Vega-Lite's
    schema, JSON without NaN, a bar and a gap for each bin holding photos, the histogram over every bin."""
    from pages.ui.evaluate.calibration import reliability_chart

    nan = float("nan")
    bins = [
        {"lower": 0.0, "upper": 0.5, "count": 0, "accuracy": nan, "confidence": nan, "gap": nan},
        {"lower": 0.5, "upper": 0.75, "count": 4, "accuracy": 0.5, "confidence": 0.6, "gap": 0.1},
        {"lower": 0.75, "upper": 1.0, "count": 6, "accuracy": 0.9, "confidence": 0.8, "gap": -0.1},
    ]
    spec = json.loads(json.dumps(reliability_chart(bins, "Before (raw)"), allow_nan=False))
    alt.VConcatChart.from_dict(spec)
    top, histogram = spec["vconcat"]
    bars, gap, _ = top["layer"]
    assert top["title"] == "Before (raw)"
    assert (
        [row["lower"] for row in bars["data"]["values"]] == [0.5, 0.75] == [r["lower"] for r in gap["data"]["values"]]
    )
    assert [row["gap_label"] for row in gap["data"]["values"]] == ["over-confident", "under-confident"]
    assert [row["count"] for row in histogram["data"]["values"]] == [0, 4, 6]


@pytest.fixture
def old_run_models(workspace, tmp_path):
    """A copy of the workspace's models with the run's analysis arrays (and calibration) removed."""
    models = tmp_path / "models"
    copy_run(workspace["models"], models)
    run_dir = models / workspace["run_id"]
    (run_dir / ANALYSIS_FILE).unlink()
    run_files(run_dir).calibration.unlink(missing_ok=True)
    return models


def test_an_old_run_offers_to_compute_the_analysis(app, old_run_models):
    at = _calibration_tab(app, models_dir=old_run_models)
    assert at.button(key="evaluate_analysis_start").label == "Compute the analysis"
    assert "before Flora stored" in texts(at)
    assert "needs the run's analysis" in texts(at)
    assert not any(m.label == "Temperature T" for m in at.metric)


def test_heatmaps_of_a_picked_misclassified_photo(app, workspace):
    from core.results.evaluation.metrics import Evaluation
    from core.runs.record import HEATMAPS_DIR

    run = workspace["store"].get(workspace["run_id"])
    evaluation = Evaluation.load(run.directory)
    confused = evaluation.most_confused()
    assert not confused.empty, "the fixture's red and crimson share a colour: the model confuses them"
    at = app("evaluate")
    true_name, predicted_name = at.selectbox(key="evaluate_true").value, at.selectbox(key="evaluate_pred").value
    assert true_name != predicted_name
    at.selectbox(key="evaluate_heatmap_pick").select_index(0).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c for image in at.get("image") for c in image.captions]
    assert any(c.startswith(f"predicted: {predicted_name}") for c in captions)
    assert any(c.startswith(f"true: {true_name}") for c in captions)
    assert f"{true_name} rather than {predicted_name}" in captions
    assert "what tipped the model" in texts(at)
    assert len(list((run.directory / HEATMAPS_DIR).glob("*.npz"))) >= 3, "the maps are cached per (image, class)"
    # another cell of the matrix: the last pick (and its contrast text) does not stay behind
    other = next((t, p) for t, p in zip(confused["true"], confused["predicted"], strict=True) if t != true_name)
    at.selectbox(key="evaluate_true").set_value(other[0])
    at.selectbox(key="evaluate_pred").set_value(other[1]).run()
    assert at.selectbox(key="evaluate_heatmap_pick").value is None
    assert "what tipped the model" not in texts(at)


@pytest.mark.slow
def test_computing_the_analysis_makes_the_sections_appear(app, old_run_models, workspace):
    import time

    from core.processes import JobState
    from core.results import tasks as run_tasks
    from core.runs.store import RunStore

    at = _calibration_tab(app, models_dir=old_run_models)
    at.button(key="evaluate_analysis_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = RunStore(old_run_models).get(workspace["run_id"])
    deadline = time.monotonic() + 240
    status = run_tasks.task_status(run, "analysis")
    assert status is not None, "the button launched the background task"
    while status.active and time.monotonic() < deadline:
        time.sleep(1)
        status = run_tasks.task_status(run, "analysis")
    assert status.state is JobState.DONE, (status.state, status.error)
    assert run.has_analysis
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    cal = calibration.calibrate_run(run.directory)
    assert metrics["Temperature T"] == f"{cal.temperature:.2f}" + (" (bound)" if cal.at_bound else "")
    assert not [b for b in at.button if b.key == "evaluate_analysis_start"]


def test_the_ece_interval_is_shown_with_many_validation_photos_too():
    """The interval showed only for runs with few validation photos; a run with 300 a class had none."""
    import numpy as np

    from core.runs.analysis import RunAnalysis, SplitArrays
    from pages.ui.evaluate.calibration import scores_table

    rng = np.random.default_rng(0)

    def part(n: int) -> SplitArrays:
        labels = rng.integers(0, 2, n)
        logits = rng.normal(size=(n, 2)) + 3 * np.eye(2)[labels]
        return SplitArrays(logits, np.zeros((n, 4)), labels, [f"{i}.png" for i in range(n)], np.arange(n))

    cal = calibration.calibrate(RunAnalysis(["a", "b"], part(600), part(400)))
    assert not cal.few_validation_images
    table = scores_table(cal).set_index("measure")
    ece = table.loc["ECE (expected calibration error), 95 % interval"]
    assert ece["before"] == f"{cal.before.ece:.3f} [{cal.before.ece_low:.3f}–{cal.before.ece_high:.3f}]"


def test_the_heatmaps_start_on_the_map_that_shows_something(app, workspace, monkeypatch):
    """Issue 32: the finer map came out blank for both classes on a photo where the coarser one was clear. The
    picker starts on the map that shows something, and says so when the one picked shows less."""
    from core.results.evaluation.explain import Explainer
    from pages.ui.evaluate import heatmaps

    explainer = Explainer(workspace["store"].get(workspace["run_id"]))
    assert len(explainer.layers) == 2, "at 32 px both maps are offered"
    default = explainer.default_layer
    other = next(layer for layer in explainer.layers if layer != default)
    real = heatmaps.overlays

    def default_is_blank(key, path, true_name, predicted_name, layer):
        shown, score, _ = real(key, path, true_name, predicted_name, layer)
        return shown, score, [layer == default, layer == default]

    monkeypatch.setattr(heatmaps, "overlays", default_is_blank)
    at = app("evaluate")
    at.selectbox(key="evaluate_heatmap_pick").select_index(0).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["evaluate_heatmap_pick_layer"] == other  # not the blank default
    assert not any("shows more" in i.value for i in at.info)
    at.session_state["evaluate_heatmap_pick_layer"] = default  # the person picks the blank one: told
    at.run()
    assert any("shows more: 2 of the maps below come out blank" in i.value for i in at.info)


def test_a_class_short_of_the_promise_is_named_by_the_rule_the_words_state():
    """Walk 53: rose averaged 0.894 over the halvings, under 90%, while the words said 'below 90%' named dandelion
    alone (the rule allows 2 points): the words now state the margin."""
    from types import SimpleNamespace

    from core.results.probabilities import conformal
    from pages.ui.evaluate.guarantees import verdict

    spread = SimpleNamespace(
        splits=200, coverage_mean=0.9, coverage_sd=0.05, class_coverage_mean={"rose": 0.894, "dandelion": 0.85}
    )
    sets = SimpleNamespace(
        spread=spread, level=0.9, held_record=lambda level=None: (27, 30, 5),
        under_covered=lambda: conformal.ConformalSets.under_covered(SimpleNamespace(spread=spread, level=0.9,
                                                                                    classes=["rose", "dandelion"])),
    )  # fmt: skip
    said = verdict(sets)
    assert (
        "by class it fell short for dandelion (85%), more than 2 points below 90% on average over the halvings" in said
    )
    assert "rose" not in said.split("fell short for")[1]
    spread.class_coverage_mean = {"rose": 0.894}
    assert "(within 2 points of 90% counts as held: one halving moves a class's figure by several points)" in verdict(
        SimpleNamespace(**{**vars(sets), "under_covered": lambda: []})
    )

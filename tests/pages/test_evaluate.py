"""Evaluate page: metrics, per-class table, and choosing a confusion cell to see its images."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import altair as alt
import numpy as np
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from core.results.evaluation.metrics import Evaluation
from pages.ui.navigation import page_file
from pages.ui.plain import md
from tests.pages.conftest import APP, table_with, texts


def _evaluation(workspace) -> Evaluation:
    return Evaluation.load(workspace["store"].get(workspace["run_id"]).directory)


def _matrix_spec(at) -> dict:
    charts = [el for kind in ("arrow_vega_lite_chart", "vega_lite_chart") for el in at.get(kind)]
    assert charts, "the confusion matrix is drawn"
    return json.loads(charts[0].proto.spec)


def _matrix_classes(at) -> list[str]:
    spec = _matrix_spec(at)
    return spec["layer"][0]["encoding"]["y"]["sort"]


def _gallery_captions(at) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


def test_metrics_and_per_class_table(app, workspace):
    at = app("evaluate")
    evaluation = _evaluation(workspace)
    shown = texts(at)
    assert f"Accuracy: {evaluation.accuracy():.3f}" in shown
    assert f"Test images: {len(evaluation.labels)}" in shown
    assert "Top-2 accuracy" in shown  # 4 classes
    assert "started from random weights" in shown  # the prepared run used weights none
    test_images = len(Evaluation.load(workspace["store"].run_dir(workspace["run_id"])).labels)
    assert any(w.value.startswith(f"Small test split: {test_images} photos") for w in at.warning)
    table = table_with(at, "class", "precision", "recall", "f1")
    assert sorted(table["class"]) == ["blue", "crimson", "green", "red"]
    assert table["f1"].tolist() == sorted(table["f1"].tolist())  # worst first
    assert set(table.columns) >= {"precision", "recall", "f1", "support", "most often mistaken for"}


def test_the_matrix_opens_on_the_worst_pair_and_a_click_selects_a_whole_cell(app, workspace):
    evaluation = _evaluation(workspace)
    confused = evaluation.most_confused()
    assert len(confused) >= 1, "the prepared run must make a mistake (red and crimson share a colour)"
    at = app("evaluate")
    worst = confused.iloc[0]
    assert at.selectbox(key="evaluate_true").value == worst["true"]
    assert at.selectbox(key="evaluate_pred").value == worst["predicted"]
    assert f"**{worst['true']}** predicted as **{worst['predicted']}**: {worst['count']} test image(s)" in texts(at)
    spec = _matrix_spec(at)
    selection = spec["params"][0] if "params" in spec else spec["layer"][0]["params"][0]
    assert selection["select"]["fields"] == ["true", "predicted"]  # the whole rectangle is the target
    assert spec["layer"][0]["mark"]["type"] == "rect"
    assert "stroke" not in spec["layer"][0]["mark"]  # a stroke overlaps the neighbour: a click there picked it
    encoding = spec["layer"][0]["encoding"]
    assert encoding["x"]["scale"]["paddingInner"] > 0 and encoding["y"]["scale"]["paddingInner"] > 0

    # a click on a cell, as the browser reports it: the cell's class names
    true_class = evaluation.classes[int(evaluation.labels[0])]
    at.session_state["evaluate_matrix"] = {"selection": {"cell": [{"true": true_class, "predicted": true_class}]}}
    at.run()
    assert at.selectbox(key="evaluate_true").value == true_class
    expected = evaluation.pair(true_class, true_class)
    assert f"**{true_class}** predicted correctly: {len(expected)} test image(s)" in texts(at)
    names = {md(Path(p).name) for p in expected["path"]}  # captions are Markdown: the names escaped
    in_gallery = {c.split("\n")[-1] for c in _gallery_captions(at) if c.split("\n")[-1] in names}
    assert in_gallery == names  # those very photos, each with its file name


def _matrix_cells(at) -> dict[tuple[str, str], tuple]:
    """(true, predicted) -> (colour value, label text) of every cell the matrix draws."""
    chart = next(el for kind in ("arrow_vega_lite_chart", "vega_lite_chart") for el in at.get(kind))
    frame = convert_arrow_bytes_to_pandas_df(chart.proto.datasets[0].data.data)
    return {
        (t, p): (v, label)
        for t, p, v, label in zip(frame["true"], frame["predicted"], frame["value"], frame["label"], strict=True)
    }


def test_counts_to_row_share_and_hiding_the_diagonal(app, workspace):
    evaluation = Evaluation.load(workspace["store"].run_dir(workspace["run_id"]))
    counts = evaluation.confusion_matrix()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    at = app("evaluate")
    at.segmented_control(key="evaluate_view").set_value("row %").run()
    spec = _matrix_spec(at)
    assert spec["layer"][0]["encoding"]["color"]["title"] == "share of row"
    names = _matrix_classes(at)
    index = [evaluation.classes.index(n) for n in names]
    cells = _matrix_cells(at)
    for r, true_name in zip(index, names, strict=True):
        for c, predicted_name in zip(index, names, strict=True):
            assert cells[(true_name, predicted_name)][0] == pytest.approx(shares[r, c])
    diagonal_before = {n: cells[(n, n)] for n in names}
    assert any(value > 0 for value, _ in diagonal_before.values())

    at.toggle(key="evaluate_hide_diag").set_value(True).run()
    assert not at.exception
    hidden = _matrix_cells(at)
    for name in names:  # the diagonal has no colour and no number: the mistakes get the whole scale
        value, label = hidden[(name, name)]
        assert (value is None or np.isnan(value)) and label == ""
    off = [(t, p) for t in names for p in names if t != p]
    assert all(hidden[cell] == cells[cell] for cell in off)


@pytest.fixture
def many_classes(tmp_path):
    """A finished 30-class run (a synthetic evaluation: the page reads no model)."""
    from core.fileio import write_json_atomic
    from core.processes import JobState
    from core.runs.store import RunStore

    rng = np.random.default_rng(0)
    classes = [f"class{i:02d}" for i in range(30)]
    labels = np.repeat(np.arange(30), 6)
    probabilities = rng.dirichlet(np.ones(30) * 0.3, size=len(labels)).astype(np.float32)
    probabilities[np.arange(len(labels)) % 2 == 0, labels[::2]] += 2  # half right
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    store = RunStore(tmp_path / "models")
    record = {
        "config": {"image_size": 32, "weights": "none"},
        "classes": classes,
        "dataset": {"path": str(tmp_path / "ds"), "name": "thirty"},
    }
    run = store.create("thirty000001", record)
    Evaluation(probabilities, labels, classes, [f"{classes[i]}/{n}.png" for n, i in enumerate(labels)]).save(
        run.directory
    )
    (run.directory / "model.keras").write_bytes(b"not read by this page")
    store.set_status("thirty000001", state=JobState.DONE)
    write_json_atomic(tmp_path / "unused.json", {})
    return store.root


def test_large_class_controls_change_the_matrix(app, many_classes):
    at = app("evaluate", models_dir=many_classes)
    assert "Top-5 accuracy" in texts(at)
    assert len(_matrix_classes(at)) == 25  # starts from 25 classes of the most frequent mistakes
    at.slider(key="evaluate_limit").set_value(8).run()
    shown = _matrix_classes(at)
    evaluation = Evaluation.load(many_classes / "thirty000001")
    assert len(shown) == 8 and set(shown) == set(evaluation.classes_of_top_mistakes(8))
    at.selectbox(key="evaluate_order").set_value("worst recall first").run()
    by_recall = [c for c in evaluation.classes_by_error() if c in set(shown)]
    assert _matrix_classes(at) == by_recall


def test_a_row_of_the_pairs_table_selects_its_cell(app, many_classes):
    confused = Evaluation.load(many_classes / "thirty000001").most_confused()
    assert len(confused) > 3
    at = app("evaluate", models_dir=many_classes)
    assert at.selectbox(key="evaluate_true").value == confused.iloc[0]["true"]
    row = len(confused) - 1  # not the worst pair, which the page opens on
    at.session_state["evaluate_pairs"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    pair = confused.iloc[row]
    assert (at.selectbox(key="evaluate_true").value, at.selectbox(key="evaluate_pred").value) == (
        pair["true"],
        pair["predicted"],
    )
    assert f"**{pair['true']}** predicted as **{pair['predicted']}**" in texts(at)


def test_top_losses_tab(app, workspace):
    at = app("evaluate")
    at.session_state["evaluate_tab"] = "Top losses"
    at.run()
    evaluation = _evaluation(workspace)
    wrong = evaluation.top_losses(16)
    if len(wrong):
        names = {md(Path(p).name) for p in wrong["path"]}  # captions are Markdown: the names escaped
        shown = {c.split("\n")[-1] for c in _gallery_captions(at) if " → " in c}
        assert shown == names, "the most confidently wrong images are shown, with their file names"
        wrong_in_all = int((evaluation.predictions != evaluation.labels).sum())
        mistakes = "The only mistake" if wrong_in_all == 1 else f"All {wrong_in_all} mistakes"  # not "All 1 mistakes"
        fewer = f"{mistakes} on the test split: fewer than the 16 asked for."
        assert (fewer in texts(at)) == (wrong_in_all < 16)  # a newcomer counted 14 photos under 'How many' 16
    else:
        assert "No mistakes" in texts(at)


def test_class_search_shows_the_sub_matrix_with_other(app, many_classes):

    from core.results.evaluation.confusion import submatrix

    at = app("evaluate", models_dir=many_classes)
    evaluation = Evaluation.load(many_classes / "thirty000001")
    picked = ["class03", "class17", "class25"]
    at.selectbox(key="evaluate_order").set_value("by name").run()
    at.multiselect(key="evaluate_classes").set_value(picked).run()
    assert not at.exception
    assert _matrix_classes(at) == [*picked, "(other)"]
    at.segmented_control(key="evaluate_view").set_value("counts").run()
    at.toggle(key="evaluate_hide_diag").set_value(False).run()
    chart = next(el for kind in ("arrow_vega_lite_chart", "vega_lite_chart") for el in at.get(kind))
    frame = convert_arrow_bytes_to_pandas_df(chart.proto.datasets[0].data.data)
    cells = {(t, p): n for t, p, n in zip(frame["true"], frame["predicted"], frame["images"], strict=True)}
    expected, names = submatrix(evaluation.confusion_matrix(), list(evaluation.classes), picked)
    assert names[-1] == "(other)"
    assert cells[("(other)", "(other)")] == expected[-1, -1]
    assert cells[("class03", "(other)")] == expected[0, -1]
    assert sum(cells.values()) == len(evaluation.labels), "the rest is summed, nothing lost"


def test_confused_together_order_is_one_choice_away(app, many_classes):
    from core.results.evaluation.confusion import confused_together_order

    at = app("evaluate", models_dir=many_classes)
    evaluation = Evaluation.load(many_classes / "thirty000001")
    assert at.selectbox(key="evaluate_order").value == "confused together"  # the default at 30 classes
    at.slider(key="evaluate_limit").set_value(30).run()
    together = [evaluation.classes[i] for i in confused_together_order(evaluation.confusion_matrix())]
    assert _matrix_classes(at) == together
    at.selectbox(key="evaluate_order").set_value("by name").run()
    assert _matrix_classes(at) == sorted(evaluation.classes) != together
    at.toggle(key="evaluate_log").set_value(True).run()
    assert _matrix_spec(at)["layer"][0]["encoding"]["color"]["scale"]["type"] == "symlog"


@pytest.fixture
def oxford_layout(tmp_path):
    """A finished 102-class run in Oxford 102's layout (test 20 photos/class in the real set; 4 here),
    with its evaluation and a hand-written analysis.npz: logits where classes k and k+51 look alike."""
    from core.processes import JobState
    from core.runs.analysis import RunAnalysis, SplitArrays, softmax
    from core.runs.store import RunStore

    rng = np.random.default_rng(3)
    classes = [f"flower {i:03d}" for i in range(1, 103)]

    def split(per_class: int, name: str) -> SplitArrays:
        labels = np.repeat(np.arange(102), per_class)
        logits = rng.normal(0, 1, (len(labels), 102)).astype(np.float32)
        twin = (labels + 51) % 102  # 0<->51, 1<->52, ...: look-alike pairs, far apart by name
        logits[np.arange(len(labels)), labels] += 4
        logits[np.arange(len(labels)), twin] += rng.choice([3.0, 5.0], len(labels))  # sometimes wins
        paths = [f"jpg/{name}_{n:05d}.jpg" for n in range(len(labels))]
        features = np.zeros((len(labels), 2048), np.float16)
        return SplitArrays(logits * 2, features, labels, paths, np.arange(len(labels)))  # x2: over-confident

    store = RunStore(tmp_path / "models")
    record = {
        "config": {"image_size": 32, "weights": "none"},
        "classes": classes,
        "dataset": {"path": str(tmp_path / "oxford102"), "name": "oxford102"},
    }
    run = store.create("oxford000001", record)
    analysis = RunAnalysis(classes, split(2, "val"), split(4, "test"))
    analysis.save(run.directory)
    test = analysis.test
    Evaluation(softmax(test.logits), test.labels, classes, test.paths).save(run.directory)
    (run.directory / "model.keras").write_bytes(b"not read by this page")
    store.set_status("oxford000001", state=JobState.DONE)
    return store.root


def _twins_adjacent(names: list[str]) -> int:
    numbers = [int(name[-3:]) for name in names]
    return sum(1 for a, b in itertools.pairwise(numbers) if abs(a - b) == 51)


def test_oxford_layout_matrix_leads_somewhere(app, oxford_layout):
    from core.results.probabilities.calibration import calibrate_run

    at = app("evaluate", models_dir=oxford_layout)
    evaluation = Evaluation.load(oxford_layout / "oxford000001")
    assert at.selectbox(key="evaluate_order").value == "confused together"
    shown = _matrix_classes(at)
    assert len(shown) == 25
    # look-alike twins are confused with each other: the order puts twin pairs side by side
    assert _twins_adjacent(shown) >= 5, shown
    at.selectbox(key="evaluate_order").set_value("by name").run()
    assert _twins_adjacent(_matrix_classes(at)) == 0, "the original order is one choice away"
    at.multiselect(key="evaluate_classes").set_value(["flower 001", "flower 002"]).run()
    assert _matrix_classes(at) == ["flower 001", "flower 002", "(other)"]
    at.session_state["evaluate_tab"] = "Calibration & sets"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    cal = calibrate_run(oxford_layout / "oxford000001")
    assert cal.temperature > 1.2, "logits doubled: over-confident, T above 1"
    assert "over-confident" in texts(at)
    assert f"{cal.after.ece:.3f}" == {m.label: m.value for m in at.metric}["ECE after"]
    assert evaluation.num_classes == 102


def test_teaching_notes_speak_of_this_datasets_classes_and_cover_losses_and_heatmaps(app, workspace):
    from pages.ui import teaching

    evaluation = Evaluation.load(workspace["store"].run_dir(workspace["run_id"]))
    pair = evaluation.most_confused().iloc[0]
    at = app("evaluate")
    at.toggle(key="flora_explain").set_value(True).run()
    try:
        notes = [i.value for i in at.info]
        confusion = next(n for n in notes if n.startswith("**Reading the confusion matrix"))
        assert f"row *{pair['true']}* and column *{pair['predicted']}*" in confusion and "rose" not in confusion
        at.session_state["evaluate_tab"] = "Top losses"
        at.run()
        assert any(i.value.startswith("**Top losses.**") for i in at.info)
        at.session_state["evaluate_tab"] = "Confusion matrix"
        at.run()
        at.selectbox(key="evaluate_heatmap_pick").select_index(0).run()
        assert any(i.value.startswith("**Reading a Grad-CAM map.**") for i in at.info)
    finally:
        at.toggle(key="flora_explain").set_value(False).run()
    assert teaching.note("confusion").count("rose") >= 1  # without a dataset the examples stay rose and tulip


def test_the_sets_verdict_judges_the_held_out_count_against_its_sampling_slack(app, workspace, tmp_path):
    """Before: 'answers with a guarantee' and 'The promise held' beside a held-out 88.9% at 90%, and sets of every
    class on 61% of photos shown only as a mean set size."""
    import json

    from core.results.probabilities import conformal, promise
    from tests.conftest import copy_run

    models = copy_run(workspace["models"], tmp_path / "models")
    run_dir = models / workspace["run_id"]
    conformal.fit_run(run_dir, level=0.8, method="aps")
    stored = run_dir / "conformal.json"
    data = json.loads(stored.read_text())
    walk = {"1": [2, 7], "4": [11, 11]}  # 13 of 18 right (72%, under 80%), 11 of 18 sets of all 4 classes
    data["by_level"]["80"]["by_size"] = walk
    data["held_out"]["by_size"] = walk
    stored.write_text(json.dumps(data))
    at = app("evaluate", models_dir=models)
    at.session_state["evaluate_tab"] = "Calibration & sets"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = texts(at)
    assert "answers with a guarantee" not in said and "The promise held" not in said
    assert "Prediction sets: a promise about many photos taken together" in [h.value for h in at.subheader]
    low, high = promise.sampling_range(18, 0.8)
    assert low <= 13  # within the slack: said so, with the range, not "held"
    assert (
        "**On the 18 held-out photos** sets at 80% held the right class 13 of 18 (72%): below 80%, but within the "
        f"sampling slack (on 18 photos a true 80% gives {low} to {high} right in 95% of draws)"
    ) in said
    assert "On 61% of photos the set holds all 4 classes: the model cannot tell the classes apart there" in said


def test_coverage_by_class_and_test_time_augmentation_offered_then_decided(app, workspace, tmp_path):
    from core.results.probabilities import conformal, tta
    from core.runs.store import RunStore
    from tests.conftest import copy_run

    models = copy_run(workspace["models"], tmp_path / "models")
    run_dir = models / workspace["run_id"]
    conformal.fit_run(run_dir, level=0.8, method="aps")
    at = app("evaluate", models_dir=models)
    at.session_state["evaluate_tab"] = "Calibration & sets"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Promised"] == "80%" and "Right on the other half" in metrics
    sets = conformal.load(run_dir)
    said = texts(at)
    assert "**What the promise covers**: on average over many photos like the calibration ones" in said
    for size, right, photos in sets.short_sizes():  # a size whose sets were right less often than 80% is named
        assert f"{conformal.size_words(size)} sets {right} of {photos}" in said
    charts = [el for kind in ("arrow_vega_lite_chart", "vega_lite_chart") for el in at.get(kind)]
    coverage = [json.loads(c.proto.spec) for c in charts if "share of held-out sets holding" in c.proto.spec]
    assert coverage and alt.LayerChart.from_dict(coverage[0])  # Vega-Lite by its own schema (Altair's copy)
    assert any(b.label == "Measure test-time augmentation" for b in at.button)
    tta.measure(RunStore(models).get(workspace["run_id"]), workspace["data"])
    at.run()
    shown = texts(at)
    assert "Decision: on validation" in shown and "McNemar" in shown
    assert {"accuracy", "macro F1", "NLL (lower is better)"} <= set(at.dataframe[-1].value["figure"])


def test_the_run_picked_last_is_opened_again_after_a_reload(app, workspace, tmp_path):
    """Walk 55: the run studied on Evaluate was lost at every reload (a new session opened on the newest run)."""
    from core.runs.store import RunStore
    from tests.conftest import copy_run

    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    copy_run(models / workspace["run_id"], models / "feed0000beef")
    newest, older = [run.run_id for run in RunStore(models).list()][:2]
    at = app("evaluate", models_dir=models)
    assert at.selectbox(key="evaluate_run").value == newest
    at.selectbox(key="evaluate_run").set_value(older).run()
    reloaded = app("explore", models_dir=models)  # a new session: a reload, another tab
    assert not reloaded.exception
    assert reloaded.selectbox(key="explore_run").value == older


@pytest.mark.parametrize(("page", "key"), [("evaluate", "evaluate_run"), ("explore", "explore_run")])
def test_a_link_to_a_run_opens_it_even_after_another_was_picked(app, workspace, tmp_path, page, key):
    """Walk of the label-list marks: Train's "Study it on the Evaluate page" named the new run, and the page opened
    the run picked before (remembered across sessions), so the new run's figures looked unchanged."""
    from core.runs.store import RunStore
    from tests.conftest import copy_run

    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    copy_run(models / workspace["run_id"], models / "feed0000beef")
    newest, older = [run.run_id for run in RunStore(models).list()][:2]
    at = app(page, models_dir=models)
    at.selectbox(key=key).set_value(older).run()  # picked last, kept for the next session
    linked = AppTest.from_file(APP, default_timeout=120)  # a new session arriving by a link to the newest run
    linked.run()
    linked.switch_page(page_file(page))
    linked.query_params[key] = newest
    linked.run()
    assert not linked.exception and linked.selectbox(key=key).value == newest
    plain = app(page, models_dir=models)  # without a link: the run studied last, now the linked one
    assert plain.selectbox(key=key).value == newest


def test_a_link_followed_in_the_same_session_opens_its_run_and_a_pick_is_never_undone(app, workspace, tmp_path):
    """The second walk: Evaluate visited first (its picker kept the old run this session), then Train's link to the
    new run: the page still showed the old run. And a pick in the picker must stay picked on the next reruns."""
    from core.runs.store import RunStore
    from tests.conftest import copy_run

    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    copy_run(models / workspace["run_id"], models / "feed0000beef")
    newest, older = [run.run_id for run in RunStore(models).list()][:2]
    at = app("evaluate", models_dir=models)
    at.selectbox(key="evaluate_run").set_value(older).run()
    at.run()  # a rerun: the pick stays
    assert at.selectbox(key="evaluate_run").value == older
    at.switch_page(page_file("train")).run()
    at.switch_page(page_file("evaluate"))
    at.query_params["evaluate_run"] = newest  # the link's address
    at.run()
    assert not at.exception and at.selectbox(key="evaluate_run").value == newest
    at.selectbox(key="evaluate_run").set_value(older).run()  # picked again here: not undone by the address
    at.run()
    assert at.selectbox(key="evaluate_run").value == older


def test_a_corrected_run_says_its_figures_are_measured_against_the_corrected_labels(app, workspace, tmp_path):
    """The second walk: a corrected run's mAP beside the run before read as a gain; Evaluate named no correction."""
    import json

    from core.runs.store import RunStore
    from tests.conftest import copy_run

    models = tmp_path / "models"
    run_dir = copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    config = json.loads((run_dir / "config.json").read_text())
    run = RunStore(models).get(workspace["run_id"])
    photo = run.classes[0] + "/x.png"
    config["dataset"]["corrections"] = {photo: {"action": "exclude"}, "b.png": {"action": "relabel", "to": "x"}}
    (run_dir / "config.json").write_text(json.dumps(config))
    at = app("evaluate", models_dir=models)
    said = [i.value for i in at.info if "label correction" in i.value]
    assert said and said[0].startswith("This run applied 2 label correction(s) (1 relabelled, 1 excluded)")
    assert "not like for like" in said[0]

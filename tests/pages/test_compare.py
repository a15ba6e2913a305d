"""Compare page: a second run made from the first (its test predictions perturbed), McNemar's verdict as core
says it, incomparable runs refused with the reason, ?runs= preselection, runs without analysis offered it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.results.evaluation.compare import compare, load_result
from core.runs.record import ANALYSIS_FILE, CALIBRATION_FILE, CONFIG_FILE
from core.runs.store import RunStore
from pages.ui.navigation import page_file
from pages.ui.plain import md
from tests.conftest import copy_run
from tests.pages.conftest import texts

SECOND = "b" * 12


def two_runs(workspace, tmp_path, perturb=None):
    """The fixture's run and a copy of it under another id whose test predictions differ on some photos."""
    models = tmp_path / "models"
    first = workspace["run_id"]
    copy_run(workspace["store"].run_dir(first), models / first)
    copy_run(workspace["store"].run_dir(first), models / SECOND)
    config = json.loads((models / SECOND / CONFIG_FILE).read_text())
    config["config"]["seed"] = 7  # a setting that differs, for the settings table
    (models / SECOND / CONFIG_FILE).write_text(json.dumps(config))
    path = models / SECOND / ANALYSIS_FILE
    arrays = dict(np.load(path))
    logits = arrays["test_logits"]
    rng = np.random.default_rng(0)
    flip = rng.permutation(len(logits))[: len(logits) // 3]
    logits[flip] = np.roll(logits[flip], 1, axis=1)  # another top class on a third of the photos
    arrays["test_logits"] = logits
    if perturb:
        perturb(arrays)
    np.savez(path, **arrays)
    (models / SECOND / CALIBRATION_FILE).unlink(missing_ok=True)
    return models, first


def open_compare(app, models, runs: str):
    at = app("home", models_dir=models)
    at.query_params["runs"] = runs
    at.switch_page(page_file("compare"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_two_runs_compared_with_core_verdict_and_preselected_from_the_url(app, workspace, tmp_path):
    models, first = two_runs(workspace, tmp_path)
    at = open_compare(app, models, f"{first[:6]},{SECOND}")
    assert at.multiselect(key="compare_runs").value == [first, SECOND]
    store = RunStore(models)
    expected = compare([load_result(store.get(first)), load_result(store.get(SECOND))])
    pair = expected["pairs"][0]
    shown = texts(at)
    assert pair["verdict"] in shown
    assert pair["mcnemar"]["b"] + pair["mcnemar"]["c"] > 0
    assert f"only {first[:6]} gets right: {pair['mcnemar']['b']}" in shown
    assert f"only {SECOND[:6]} gets right: {pair['mcnemar']['c']}" in shown
    assert any(t.label.startswith(f"{first[:6]} right, {SECOND[:6]} wrong ({pair['mcnemar']['b']})") for t in at.tabs)
    from core.results.evaluation.compare import disagreements

    results = [load_result(store.get(first)), load_result(store.get(SECOND))]
    compare(results)  # aligns the second run's rows on the first's
    photos = disagreements(*results)
    named = {c.split("\n")[-1] for image in at.get("image") for c in image.captions if "\n" in c}
    first_tab = photos["a_only"]["path"].head(12)
    assert first_tab.size and {md(Path(p).name) for p in first_tab} <= named  # each photo is named (as text)
    settings = next(f.value for f in at.dataframe if "setting" in f.value.columns)
    assert list(settings["setting"]) == ["Seed"]
    per_class = next(f.value for f in at.dataframe if "class" in f.value.columns)
    assert any(c.startswith("Δ") for c in per_class.columns)
    metrics = next(f.value for f in at.dataframe if "ECE after" in f.value.columns)
    assert metrics["accuracy"].tolist() == pytest.approx([m["accuracy"] for m in expected["runs"].values()])
    assert len(at.get("plotly_chart")) >= 1


def test_a_run_whose_correction_excluded_a_test_photo_is_compared_on_the_rest(app, workspace, tmp_path):
    """The second run excluded one test photo (a label correction): compared on the others, and said so."""

    def one_photo_excluded(arrays):
        for name in ("logits", "features", "labels", "paths", "positions"):
            arrays[f"test_{name}"] = arrays[f"test_{name}"][1:]

    models, first = two_runs(workspace, tmp_path, one_photo_excluded)
    at = open_compare(app, models, f"{first},{SECOND}")
    total = len(np.load(models / first / ANALYSIS_FILE)["test_paths"])
    notes = [i.value for i in at.info if i.value.startswith("Compared on the")]
    assert notes and notes[0].startswith(f"Compared on the {total - 1} test photos all 2 runs have")
    assert f"1 test photo(s) only {first[:6]} has" in notes[0]
    assert not at.error


def test_runs_tested_on_other_photos_are_refused_with_the_reason(app, workspace, tmp_path):
    def other_photos(arrays):
        arrays["test_paths"] = np.array([f"elsewhere/{i}.png" for i in range(len(arrays["test_paths"]))])

    models, first = two_runs(workspace, tmp_path, other_photos)
    at = open_compare(app, models, f"{first},{SECOND}")
    assert any("cannot be compared" in e.value and "tested on different photos" in e.value for e in at.error)


def test_a_run_without_analysis_offers_to_compute_it(app, workspace, tmp_path):
    models, first = two_runs(workspace, tmp_path)
    (models / SECOND / ANALYSIS_FILE).unlink()
    at = open_compare(app, models, f"{first},{SECOND}")
    assert f"Run {SECOND[:6]} is from before Flora stored" in texts(at)
    assert "a photo-by-photo comparison" in texts(at)
    assert at.button(key=f"compare_analysis_{SECOND}_start").label == "Compute the analysis"


def test_serve_links_old_vs_new_to_the_compare_page(app, workspace, tmp_path):
    from core.runs.record import RETRAIN_FILE

    models, first = two_runs(workspace, tmp_path)
    (models / SECOND / RETRAIN_FILE).write_text(json.dumps({"from": first}))
    at = app("serve", models_dir=models)
    if at.selectbox(key="serve_export_run").value != first:
        at.selectbox(key="serve_export_run").set_value(first).run()
    links = [p for p in at.get("page_link") if "Compare them" in p.proto.label]
    assert links, [p.proto.label for p in at.get("page_link")]
    assert links[0].proto.page == "compare"
    assert links[0].proto.query_string == f"runs={first}%2C{SECOND}"


def test_four_runs_get_a_parallel_coordinates_view(app, workspace, tmp_path):
    models, first = two_runs(workspace, tmp_path)
    for i, run_id in enumerate(["c" * 12, "d" * 12]):
        copy_run(models / SECOND, models / run_id)
        config = json.loads((models / run_id / CONFIG_FILE).read_text())
        config["config"]["seed"] = 10 + i
        (models / run_id / CONFIG_FILE).write_text(json.dumps(config))
    at = open_compare(app, models, f"{first},{SECOND},{'c' * 12},{'d' * 12}")
    assert len(at.multiselect(key="compare_runs").value) == 4
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    parallel = [s for s in specs if s["data"][0]["type"] == "parcoords"]
    assert parallel, [s["data"][0]["type"] for s in specs]
    labels = [d["label"] for d in parallel[0]["data"][0]["dimensions"]]
    assert labels == ["Seed", "test accuracy"]
    assert len(at.get("plotly_chart")) == 2 and sum("vs" in m.value for m in at.markdown) >= 3


def test_two_runs_of_one_dataset_are_picked_when_nothing_names_them(app, workspace, tmp_path):
    models, first = two_runs(workspace, tmp_path)
    at = open_compare(app, models, "")
    assert sorted(at.multiselect(key="compare_runs").value) == sorted([first, SECOND])
    assert not at.exception, [e.value for e in at.exception]

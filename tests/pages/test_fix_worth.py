"""What a fix is worth, on the pages: Explore's panel estimates the marks, every suspect or the top N in words with
what it cannot see; Compare puts a corrected run beside the estimate made for its corrections (or says how to make
one, and makes it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.data.corrections import Corrections, forget_dataset
from core.results import tasks as run_tasks
from core.results.labels import fix_worth
from core.results.labels.fix_worth_report import points
from core.runs.record import ANALYSIS_FILE, CALIBRATION_FILE, CONFIG_FILE
from core.runs.store import RunStore
from pages.ui.navigation import page_file
from tests.conftest import copy_run
from tests.pages.conftest import texts

SECOND = "c" * 12


@pytest.fixture
def own_run(workspace, tmp_path):
    """A copy of the prepared run in a store of its own, and the dataset's corrections file removed afterwards."""
    store = RunStore(tmp_path / "models")
    copy_run(workspace["store"].run_dir(workspace["run_id"]), store.run_dir(workspace["run_id"]))
    run = store.get(workspace["run_id"])
    yield store, run
    forget_dataset(workspace["data"], run.dataset_path)


def test_the_panel_estimates_the_marks_and_the_top_n_in_words(app, own_run, workspace):
    store, run = own_run
    review = run_tasks.compute_label_issues(run, workspace["data"])
    train = [issue for issue in review.issues if issue.split == "train"]
    assert len(train) >= 2, "red and crimson share a colour: training labels look wrong"
    marks = Corrections.load(workspace["data"], run.dataset_path)
    marks.mark(train[0].path, "relabel", train[0].suggested)
    marks.mark(train[1].path, "exclude")
    fine = [issue.path for issue in train[2:3]]  # reviewed: the label is right, so no choice fixes it
    for path in fine:
        marks.mark(path, "fine")
    marks.save()
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert "What would fixing these be worth?" in [e.label for e in at.expander]
    choice = at.radio(key="explore_fix_worth_choice")
    assert choice.options[0] == "your 2 marks" and choice.value == "marked"
    go = at.button(key="explore_fix_worth_go")
    assert go.label == "Estimate what fixing your 2 marks is worth"
    go.click().run()
    assert not at.exception, [e.value for e in at.exception]
    estimate = fix_worth.find(run.directory, marks.effective())
    assert estimate is not None and estimate.touched["train_relabelled"] == estimate.touched["train_excluded"] == 1
    shown = texts(at)
    accuracy = estimate.results["as_labelled"]["accuracy"]
    assert f"Fixing your 2 marks would change validation accuracy by {points(accuracy.change)} points" in shown
    assert "**What it cannot see**" in shown and "frozen features" in shown and "never looked at" in shown
    assert "2 training photos: 1 relabelled, 1 excluded" in shown
    links = [p for p in at.get("page_link") if p.proto.label == "Train again with these corrections"]
    assert len(links) == 2 and all(p.proto.page == "train" for p in links)  # the panel's, and the review's
    assert at.button(key="explore_fix_worth_go").label == "Estimate it again (your 2 marks)"  # found again, stored

    every = f"every training suspect ({len(train) - len(fine)})"
    assert at.radio(key="explore_fix_worth_choice").options[1] == every
    at.radio(key="explore_fix_worth_choice").set_value("top").run()
    assert "Only the suspects among the training photos are fixed" in texts(at)
    at.number_input(key="explore_fix_worth_top").set_value(1).run()
    at.button(key="explore_fix_worth_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Fixing the top 1 training suspect would change validation accuracy by" in texts(at)
    assert "mark them first" in texts(at)
    top = fix_worth.find(run.directory, {train[0].path: {"action": "relabel", "to": train[0].suggested}})
    assert top is not None and top.touched["train_relabelled"] == 1  # the first training suspect, not a Fine one


def corrected_pair(workspace, tmp_path):
    """The prepared run and a copy under another id that applied two corrections, its validation and test
    predictions changed on some photos (as a corrected run's would be)."""
    models = tmp_path / "models"
    first = workspace["run_id"]
    copy_run(workspace["store"].run_dir(first), models / first)
    copy_run(workspace["store"].run_dir(first), models / SECOND)
    arrays = dict(np.load(models / first / ANALYSIS_FILE))
    corrections = {
        "red/img_000.png": {"action": "relabel", "to": "crimson"},
        "blue/img_001.png": {"action": "exclude"},
    }
    config = json.loads((models / SECOND / CONFIG_FILE).read_text())
    config["dataset"]["corrections"] = corrections
    (models / SECOND / CONFIG_FILE).write_text(json.dumps(config))
    for split in ("val", "test"):
        logits = arrays[f"{split}_logits"]
        rows = np.arange(0, len(logits), 4)
        logits[rows] = np.roll(logits[rows], 1, axis=1)
    np.savez(models / SECOND / ANALYSIS_FILE, **arrays)
    (models / SECOND / CALIBRATION_FILE).unlink(missing_ok=True)
    return models, first, corrections


def open_compare(app, models, runs: str):
    at = app("home", models_dir=models)
    at.query_params["runs"] = runs
    at.switch_page(page_file("compare"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_compare_says_how_to_make_a_missing_estimate_then_puts_it_beside_the_result(app, workspace, tmp_path):
    models, first, corrections = corrected_pair(workspace, tmp_path)
    store = RunStore(models)
    run_tasks.training_features(store.get(first), workspace["data"])  # what finding the suspects stores
    at = open_compare(app, models, f"{first},{SECOND}")
    assert "What fixing the labels was worth" in [h.value for h in at.subheader]
    shown = texts(at)
    assert f"No estimate was made on {first[:6]} for the 2 corrections {SECOND[:6]} applied" in shown
    assert f"python -m core fix-worth {first[:6]} --marked" in shown and "never sees" in shown
    table = next(f.value for f in at.dataframe if "measured change" in f.value.columns)
    assert list(table["estimated change (95%)"])[:2] == ["no estimate", "no estimate"]
    assert "test: accuracy" in list(table["figure"])

    at.button(key=f"compare_fix_worth_{SECOND}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    estimate = fix_worth.find(store.get(first).directory, corrections)
    assert estimate is not None and estimate.choice["given"] == f"run:{SECOND}"
    shown = texts(at)
    accuracy = estimate.results["as_labelled"]["accuracy"]
    assert f"The estimate said {points(accuracy.change)} points" in shown
    assert any(words in shown for words in ("inside the interval", "more than the interval", "less than the interval"))
    table = next(f.value for f in at.dataframe if "measured change" in f.value.columns)
    assert table["estimated change (95%)"].iloc[0].startswith(points(accuracy.change))
    assert table.loc[table["figure"] == "test: accuracy", "estimated change (95%)"].item() == "never looked at"
    assert "after (but without looking at anything of)" in shown  # made now: said so, not passed off as before


def test_runs_with_the_same_corrections_show_no_fix_section(app, workspace, tmp_path):
    models = tmp_path / "models"
    first = workspace["run_id"]
    copy_run(workspace["store"].run_dir(first), models / first)
    copy_run(workspace["store"].run_dir(first), models / SECOND)
    at = open_compare(app, models, f"{first},{SECOND}")
    assert "What fixing the labels was worth" not in [h.value for h in at.subheader]


def test_compare_judges_no_estimate_against_a_run_with_other_photos_too(app, workspace, tmp_path):
    models, first, corrections = corrected_pair(workspace, tmp_path)
    config = json.loads((models / SECOND / CONFIG_FILE).read_text())
    images = config["dataset"].get("images") or 0
    config["dataset"]["fingerprint"] = "f" * 16  # it also trained on photos labelled in Flora since
    config["dataset"]["images"] = images + 51
    (models / SECOND / CONFIG_FILE).write_text(json.dumps(config))
    store = RunStore(models)
    run_tasks.training_features(store.get(first), workspace["data"])
    fix_worth.estimate_run(store.get(first), workspace["data"], corrections, seeds=2, resamples=100)
    at = open_compare(app, models, f"{first},{SECOND}")
    shown = texts(at)
    assert f"but {SECOND[:6]} differs from {first[:6]} in more than the corrections: dataset photos (" in shown
    assert "the comparison is confounded" in shown
    assert not any(words in shown for words in ("inside the interval", "more than the interval", "less than the"))

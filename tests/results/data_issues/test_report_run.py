"""Data issues of a run: the "data-issues" task keeps its result in the run folder, and `core data-issues` prints
it as a list or as one JSON object. The shared run's "red" and "crimson" are drawn in the same colour."""

from __future__ import annotations

import contextlib
import io
import json
import time

import numpy as np
import pytest

from core.cli import main as cli
from core.processes import JobState
from core.results import tasks as run_tasks
from core.results.data_issues import report as data_issues
from core.results.labels import power
from core.runs.record import DATA_ISSUES_FILE, RUN_OUTPUTS
from core.runs.store import RunStore
from tests.conftest import copy_run


@pytest.fixture
def own_run(trained_run, tmp_path):
    """A copy of the shared run in a store of its own (the result is written into the run folder)."""
    store = RunStore(tmp_path / "models")
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), store.run_dir(trained_run["run_id"]))
    return store, store.get(trained_run["run_id"]), trained_run["data_root"]


def _cli(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli(list(argv))
    return code, out.getvalue()


def test_the_task_finds_the_pair_drawn_alike_and_keeps_the_result_with_the_run(own_run):
    _, run, data_root = own_run
    assert data_issues.load(run.directory) is None and DATA_ISSUES_FILE in RUN_OUTPUTS  # a retrain replaces it
    result = run_tasks.compute("data-issues", run, data_root)
    assert (run.directory / DATA_ISSUES_FILE).exists()
    assert data_issues.load(run.directory).to_dict() == result.to_dict()
    assert result.source["run_id"] == run.run_id and set(result.by_split) == {"train", "val", "test"}
    assert result.photos == sum(result.by_split.values()) == 56
    first = result.overlapping_classes[0]
    assert first["classes"] == ["crimson", "red"] and first["suggestion"] == "merge"
    worst = {row["class"] for row in result.label_health["classes"][:2]}
    assert worst == {"crimson", "red"}
    splits = {row["split"] for row in result.outliers}
    assert splits <= {"train", "val", "test"}


def test_the_command_prints_a_list_and_one_json_object(own_run):
    store, run, data_root = own_run
    where = ["--models-dir", str(store.root), "--data-dir", str(data_root)]
    code, text = _cli("data-issues", run.run_id, *where)
    assert code == 0
    assert f"Data issues of run {run.run_id}: 56 photos in 4 classes" in text
    assert "consider merging crimson and red, or write a clearer rule for telling them apart" in text
    for heading in ("label health", "outliers", "overlapping classes", "underperforming groups", "duplicates"):
        assert f". {heading} (score " in text
    code, out = _cli("data-issues", run.run_id, "--json", *where)  # read back from the run folder
    data = json.loads(out)
    assert code == 0 and data["overlapping_classes"][0]["classes"] == ["crimson", "red"]
    for key in ("outliers", "overlapping_classes", "underperforming_groups", "label_health"):
        assert key in data
    assert all({"path", "score"} <= set(row) for row in data["outliers"])
    assert all({"classes", "score"} <= set(pair) for pair in data["overlapping_classes"])
    assert {"duplicates", "leaks", "imbalance"} <= set(data) and 0 < data["label_health"]["score"] < 1
    code, _ = _cli("data-issues", run.run_id, "--limit", "-1", *where)
    assert code == 1


@pytest.mark.slow
def test_the_background_task_keeps_its_result(own_run):
    _, run, data_root = own_run
    status = run_tasks.launch(run, "data-issues", data_root)
    deadline = time.time() + 300
    while time.time() < deadline and status.active:
        time.sleep(1)
        status = run_tasks.task_status(run, "data-issues")
    assert status.state is JobState.DONE, (status.error, run_tasks.task_folder(run, "data-issues").log_tail())
    assert data_issues.load(run.directory).overlapping_classes[0]["classes"] == ["crimson", "red"]


def test_label_health_counts_what_the_label_review_counts_and_carries_its_figures(own_run):
    """Both cross-validate the training photos on the same reduction of their features, so the wrong labels agree
    (on the flowers, reducing them with the other splits had made the review's 1,331 suspects read 1,351 here); read
    back, the result carries the review's counts and its label health line gives them."""
    _, run, data_root = own_run
    result = data_issues.for_run_saved(run, data_root)
    assert result.label_review is None  # no review of this copy yet
    review = run_tasks.compute_label_issues(run, data_root)
    assert result.label_health["wrong_labels"] == review.flagged
    inputs = data_issues.for_run(run, data_root)  # the very probabilities the review scored its suspects by
    where = {path: i for i, path in enumerate(inputs.paths)}
    train = [issue for issue in review.issues if issue.split == "train"]
    assert train, "red and crimson share a colour: training labels look wrong"
    for issue in train:
        i = where[issue.path]
        given = np.asarray(inputs.probabilities[i : i + 1], dtype=np.float64)[0, inputs.classes.index(issue.given)]
        assert given == pytest.approx(issue.score, rel=1e-9, abs=1e-12)
    assert sum(row["wrong_labels"] for row in result.label_health["classes"]) == review.estimated_errors
    again = data_issues.load(run.directory)
    assert again.label_review == {
        "suspects": len(review.issues),
        "flagged": review.flagged,
        "estimated_errors": review.estimated_errors,
        "supported": review.supported,
        "photos": review.images,
        "self_test_too_small": power.inconclusive(review.trust),
    }
    line = {row["kind"]: row for row in again.summary()}["label_health"]
    assert line["photos"] == len(review.issues)
    assert line["score"] == pytest.approx(1 - len(review.issues) / review.images, abs=1e-4)
    assert line["title"].startswith(f"{len(review.issues)} suspected label errors")
    # one verdict, the label review's own (no "supports the first N" beside "estimates M wrong labels")
    assert "confident learning" not in line["title"] and line["title"].count("first") <= 2
    if review.supported:
        assert f"review the first {review.supported} first" in line["title"]
    elif review.supported == 0:
        assert ("too small to judge" if again.label_review["self_test_too_small"] else "treat them as guesses") in (
            line["title"]
        )
    assert all(row["score_meaning"] for row in again.summary())


def test_leaks_are_counted_on_the_split_the_run_trained_on(trained_run, tmp_path):
    import shutil

    from core.results.data_issues.inputs import Inputs, add_health
    from core.results.labels.issues import Stacked
    from core.runs.analysis import RunAnalysis
    from tests.conftest import copy_run_and_dataset

    copied = copy_run_and_dataset(trained_run, tmp_path)
    run = RunStore(copied["models_root"]).get(copied["run_id"])
    test_photo = RunAnalysis.load(run.directory).test.paths[0]
    twin = f"{test_photo.split('/')[0]}/twin-of-a-test-photo.png"
    shutil.copyfile(copied["dataset"] / test_photo, copied["dataset"] / twin)

    def leaks(splits):
        inputs = Inputs(
            run.classes, np.zeros((2, 2)), Stacked([np.full((2, len(run.classes)), 0.25)], len(run.classes)),
            np.zeros(2, dtype=np.int64), [test_photo, twin], splits, "", {"run_id": run.run_id},
        )  # fmt: skip
        add_health(inputs, copied["dataset"], copied["data_root"], run.train_config)
        return inputs.findings["leaks"]

    [leak] = leaks(["test", "train"])  # the run trained on the twin and tested on its original
    said = f"1 duplicate picture straddles the split run {run.run_id[:6]} trained on (1 across train/test)"
    assert said in leak.title
    assert leak.captions == {test_photo: "test", twin: "train"}
    assert leaks(["test", "test"]) == []  # both on the same side of the run's own split: no leak there

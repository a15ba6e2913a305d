"""Feedback -> retrain -> compare -> promote, on a small run: feedback never enters the test split,
the retrained run is new (new fingerprint) and is compared on the very same test photos."""

from __future__ import annotations

import pytest

from core import cli
from core.compare import verdict
from core.datasets import scan_dataset
from core.evaluation import Evaluation
from core.feedback import add_feedback, list_feedback
from core.imaging import ImageError
from core.retrain import (
    RetrainError,
    compare_with_feedback,
    feedback_dataset,
    old_vs_new_rows,
    retrain_with_feedback,
    retrained_from,
)
from core.runs import RunStore
from core.serving.aliases import AliasStore
from core.train import jobs
from tests.conftest import copy_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("retrain")
    store = RunStore(base / "models")
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), store.run_dir(trained_run["run_id"]))
    return store, store.get(trained_run["run_id"]), base / "data", trained_run["dataset"]


def _feedback(setup) -> None:
    """Three corrected photos from outside the test split: two red ones (one relabelled crimson) and a blue one."""
    _, old, data_root, dataset = setup
    test_photos = set(Evaluation.load(old.directory).paths)  # feedback of a test photo is left out of a retrain

    def outside_test(folder: str, n: int):
        return [p for p in sorted((dataset / folder).iterdir()) if f"{folder}/{p.name}" not in test_photos][:n]

    photos = outside_test("red", 2) + outside_test("blue", 1)
    for photo, label in zip(photos, ["red", "crimson", "blue"], strict=True):
        kept = add_feedback(data_root, old.dataset_path, old.classes, label, photo.read_bytes(), photo.name)
        assert kept.split in ("train", "val")


@pytest.fixture(scope="module")
def retrained(setup):
    """The run retrained in this process with its three feedback photos: (store, old, new, data root)."""
    store, old, data_root, _ = setup
    _feedback(setup)
    submission = retrain_with_feedback(store, old, data_root, background=False)
    assert submission.outcome == jobs.NEW and submission.run_id != old.run_id
    jobs.execute(store, submission, data_root, console=False, ingest_workers=1)
    return store, old, store.get(submission.run_id), data_root


def test_feedback_is_checked_and_kept_out_of_the_test_split(setup, tmp_path):
    store, old, _, dataset = setup
    data_root = tmp_path / "data"  # a fresh data folder: no feedback yet
    with pytest.raises(RetrainError, match="no feedback photos"):
        feedback_dataset(old, data_root)
    with pytest.raises(ValueError, match="unknown class"):
        add_feedback(data_root, old.dataset_path, old.classes, "purple", b"x")
    with pytest.raises(ImageError):
        add_feedback(data_root, old.dataset_path, old.classes, "red", b"not a photo")
    _feedback((store, old, data_root, dataset))
    assert len(list_feedback(data_root, old.dataset_path)) == 3
    derived = feedback_dataset(old, data_root)
    index = scan_dataset(derived)
    assert index.fingerprint != scan_dataset(dataset).fingerprint
    test_paths = sorted(e.path for e in index.entries if e.split == "test")
    assert test_paths == sorted(Evaluation.load(old.directory).paths)  # the very same test photos
    feedback_entries = [e for e in index.entries if "feedback-" in e.path]
    assert len(feedback_entries) == 3 and {e.split for e in feedback_entries} <= {"train", "val"}


def test_retrain_compare_promote(retrained):
    store, old, new, data_root = retrained
    assert new.evaluated and retrained_from(new) == old.run_id

    result = compare_with_feedback(old, new, data_root)
    test_photos = len(Evaluation.load(old.directory).paths)
    assert (result["old"], result["new"]) == (old.run_id, new.run_id)
    assert result["test_images"] == test_photos
    mcnemar = result["pairs"][0]["mcnemar"]
    assert result["pairs"][0]["verdict"] == verdict(mcnemar, old.run_id[:6], new.run_id[:6])
    old_right = round(result["runs"][old.run_id]["accuracy"] * test_photos)
    new_right = round(result["runs"][new.run_id]["accuracy"] * test_photos)
    assert new_right - old_right == mcnemar["c"] - mcnemar["b"]  # McNemar counts the photos that changed
    assert result["feedback"]["photos"] == 3
    rows = {row["metric"]: row for row in old_vs_new_rows(result)}
    assert rows["accuracy"]["old"] == result["runs"][old.run_id]["accuracy"]
    assert {f"F1 {c}" for c in old.classes} <= set(rows) and "accuracy on the 3 feedback photos" in rows
    assert all(row["change"] == pytest.approx(row["new"] - row["old"]) for row in rows.values())

    aliases = AliasStore(store.root)
    aliases.set("production", old.run_id)
    assert aliases.set("production", new.run_id)["previous"] == old.run_id


def test_compare_cli_prints_a_side_by_side_table(retrained, capsys):
    store, old, new, data_root = retrained
    code = cli.main(
        ["feedback-compare", old.run_id, new.run_id, "--models-dir", str(store.root), "--data-dir", str(data_root)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "accuracy on the 3 feedback photos" in out and "promote with" in out
    assert "is the difference real?" in out and "McNemar" in out


def test_runs_on_other_test_photos_are_refused_with_the_reason(retrained, trained_run, tmp_path):
    _, old, _, data_root = retrained
    other = RunStore(tmp_path / "models")
    submission = jobs.submit(other, trained_run["dataset"], old.train_config.replace(seed=7))
    jobs.execute(other, submission, data_root, console=False, ingest_workers=1)
    with pytest.raises(RetrainError, match="tested on different photos"):
        compare_with_feedback(old, other.get(submission.run_id), data_root)

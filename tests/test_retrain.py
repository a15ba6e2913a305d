"""Feedback -> retrain -> compare -> promote, on a small run: feedback never enters the test split,
the retrained run is new (new fingerprint) and is compared on the very same test photos."""

from __future__ import annotations

import shutil

import pytest

from core import cli, jobs
from core.datasets import scan_dataset
from core.evaluation import Evaluation
from core.feedback import add_feedback, list_feedback
from core.imaging import ImageError
from core.retrain import RetrainError, compare, feedback_dataset, retrain_with_feedback, retrained_from
from core.runs import RunStore
from core.serving.aliases import AliasStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("retrain")
    store = RunStore(base / "models")
    shutil.copytree(trained_run["store"].run_dir(trained_run["run_id"]), store.run_dir(trained_run["run_id"]))
    return store, store.get(trained_run["run_id"]), base / "data", trained_run["dataset"]


def test_feedback_retrain_compare_promote(setup):
    store, old, data_root, dataset = setup
    with pytest.raises(RetrainError, match="no feedback photos"):
        feedback_dataset(old, data_root)
    test_photos = set(Evaluation.load(old.directory).paths)  # feedback of a test photo is left out of a retrain

    def outside_test(folder: str, n: int):
        return [p for p in sorted((dataset / folder).iterdir()) if f"{folder}/{p.name}" not in test_photos][:n]

    photos = outside_test("red", 2) + outside_test("blue", 1)
    for photo, label in zip(photos, ["red", "yellow", "blue"], strict=True):
        kept = add_feedback(data_root, old.dataset_path, old.classes, label, photo.read_bytes(), photo.name)
        assert kept.split in ("train", "val")
    assert len(list_feedback(data_root, old.dataset_path)) == 3
    with pytest.raises(ValueError, match="unknown class"):
        add_feedback(data_root, old.dataset_path, old.classes, "purple", photos[0].read_bytes())
    with pytest.raises(ImageError):
        add_feedback(data_root, old.dataset_path, old.classes, "red", b"not a photo")

    derived = feedback_dataset(old, data_root)
    index = scan_dataset(derived)
    assert index.fingerprint != scan_dataset(dataset).fingerprint
    test_paths = sorted(e.path for e in index.entries if e.split == "test")
    assert test_paths == sorted(Evaluation.load(old.directory).paths)  # the very same test photos
    feedback_entries = [e for e in index.entries if "feedback-" in e.path]
    assert len(feedback_entries) == 3 and {e.split for e in feedback_entries} <= {"train", "val"}

    submission = retrain_with_feedback(store, old, data_root, background=False)
    assert submission.outcome == jobs.NEW and submission.run_id != old.run_id
    jobs.execute(store, submission, data_root, console=False, ingest_workers=1)
    new = store.get(submission.run_id)
    assert new.evaluated and retrained_from(new) == old.run_id

    result = compare(old, new, data_root)
    print(result)
    assert result["same_test_split"] and result["test_photos"] == len(test_paths)
    assert set(result["test"]["old"]) == {"accuracy", "macro_f1", "weighted_f1", "per_class_f1"}
    assert result["feedback"]["photos"] == 3

    aliases = AliasStore(store.root)
    aliases.set("production", old.run_id)
    assert aliases.set("production", new.run_id)["previous"] == old.run_id


def test_compare_cli_prints_a_side_by_side_table(setup, capsys):
    store, old, data_root, _ = setup
    new = [r for r in store.list() if retrained_from(r) == old.run_id]
    if not new:
        pytest.skip("needs the retrained run of the test above")
    code = cli.main(
        ["feedback-compare", old.run_id, new[0].run_id, "--models-dir", str(store.root), "--data-dir", str(data_root)]
    )
    out = capsys.readouterr().out
    assert code == 0 and "accuracy" in out and "feedback photos (3)" in out and "promote with" in out

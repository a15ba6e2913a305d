"""Feedback -> retrain -> compare -> promote, on a small run: feedback never enters the test split,
the retrained run is new (new fingerprint) and is compared on the very same test photos."""

from __future__ import annotations

import pytest

from core import cli, run_job
from core.data.datasets import scan_dataset
from core.data.imaging import ImageError
from core.feedback import add_feedback, list_feedback
from core.results.evaluation.compare import verdict
from core.results.evaluation.metrics import Evaluation
from core.retrain import (
    RetrainError,
    compare_with_feedback,
    feedback_dataset,
    old_vs_new_rows,
    retrain_with_feedback,
    retrained_from,
)
from core.runs.store import RunStore
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
    run_job.execute(store, submission, data_root, console=False, ingest_workers=1)
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
    run_job.execute(other, submission, data_root, console=False, ingest_workers=1)
    with pytest.raises(RetrainError, match="tested on different photos"):
        compare_with_feedback(old, other.get(submission.run_id), data_root)


def test_a_retrained_run_is_never_retrained_into_itself(retrained, capsys):
    """Before: retraining the newest run (already trained on the feedback) compared it with itself, every change 0."""
    store, _, new, data_root = retrained
    with pytest.raises(RetrainError, match="already trained on every feedback photo"):
        retrain_with_feedback(store, new, data_root, background=False)
    code = cli.main(
        ["retrain", new.run_id, "--with-feedback", "--models-dir", str(store.root), "--data-dir", str(data_root)]
    )
    assert code == 1 and "nothing new to retrain with" in capsys.readouterr().err


def test_the_comparison_is_stored_with_the_retrained_run_and_promotion_is_advised(retrained):
    from core.retrain import promotion_advice, retrain_record, stored_comparison

    store, old, new, data_root = retrained
    first = stored_comparison(old, new, data_root)
    kept = retrain_record(store.get(new.run_id))["comparison"]
    assert kept["result"]["pairs"] == first["pairs"]  # stored with the new run: a reload shows the same
    assert stored_comparison(old, store.get(new.run_id), data_root)["pairs"] == first["pairs"]
    worse = {**first, "runs": {old.run_id: {"accuracy": 0.8}, new.run_id: {"accuracy": 0.7}}}
    worse["pairs"] = [{"mcnemar": {"b": 3, "c": 1, "p_value": 0.62}}]
    worse["difference"] = "Left out of the comparison: 2 test photo(s) only abc has."
    reasons = promotion_advice(worse)
    assert "0.100 less accurate" in reasons[0] and "could be chance (McNemar p = 0.620)" in reasons[1]
    assert reasons[2].startswith("Left out of the comparison")
    better = {**worse, "runs": {old.run_id: {"accuracy": 0.7}, new.run_id: {"accuracy": 0.9}}, "difference": None}
    better["pairs"] = [{"mcnemar": {"b": 0, "c": 12, "p_value": 0.0005}}]
    assert promotion_advice(better) == []


def test_feedback_that_is_a_copy_of_a_dataset_photo_is_flagged(setup, tmp_path):
    from core.data.datasets import META_FILE
    from core.fileio import read_json

    _, old, _, dataset = setup
    data_root = tmp_path / "data"
    test_photos = set(Evaluation.load(old.directory).paths)
    photo = next(p for p in sorted((dataset / "green").iterdir()) if f"green/{p.name}" not in test_photos)
    add_feedback(data_root, old.dataset_path, old.classes, "blue", photo.read_bytes(), photo.name)
    meta = read_json(feedback_dataset(old, data_root) / META_FILE)
    assert meta["feedback_copies"] == [{"feedback": meta["feedback_copies"][0]["feedback"], "label": "blue",
                                        "same_as": f"green/{photo.name}"}]  # fmt: skip


def test_the_serve_page_retrains_the_picked_run_and_guards_a_doubtful_promote(retrained, monkeypatch):
    """Before: Retrain used the Exports box's run, its result vanished on reload, Promote asked nothing."""
    from streamlit.testing.v1 import AppTest

    from core.retrain import promotion_advice, stored_comparison
    from pages.ui.navigation import page_file
    from tests.pages.conftest import APP, texts

    store, old, new, data_root = retrained
    AliasStore(store.root).set("production", old.run_id)
    monkeypatch.setenv("FLORA_MODELS_DIR", str(store.root))
    monkeypatch.setenv("FLORA_DATA_DIR", str(data_root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(page_file("serve")).run()
    assert at.selectbox(key="serve_retrain_run").value == old.run_id  # the production run, picked explicitly
    shown = texts(at)
    assert f"Old {old.run_id[:6]} vs new {new.run_id[:6]}" in shown
    promote = at.button(key=f"serve_promote_{new.run_id}")
    doubtful = promotion_advice(stored_comparison(old, new, data_root))
    if doubtful:  # a tiny run: usually "could be chance": a confirmation first
        assert promote.disabled and "Think twice" in shown
        at.checkbox(key=f"serve_confirm_{new.run_id}").check().run()
    at.button(key=f"serve_promote_{new.run_id}").click().run()
    assert AliasStore(store.root).get("production") == new.run_id
    again = AppTest.from_file(APP, default_timeout=120)  # a reload: the comparison is still there
    again.run()
    again.switch_page(page_file("serve")).run()
    again.selectbox(key="serve_retrain_run").set_value(new.run_id).run()
    assert f"Old {old.run_id[:6]} vs new {new.run_id[:6]}" in texts(again)
    # no server runs in this test: the line says where production points, never that it already serves it
    assert f"**production** points at run {new.run_id}. No server is running" in texts(again)

"""Analysis of runs from before analysis.npz, the training split's features, label issues of a run,
and the same work as a background job."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.processes import JobState
from core.results import tasks as run_tasks
from core.runs.analysis import RunAnalysis
from core.runs.store import RunStore
from tests.conftest import copy_run


@pytest.fixture
def old_run(trained_run, tmp_path):
    """A copy of the trained run in a store of its own, its analysis.npz deleted (as a run from before)."""
    store = RunStore(tmp_path / "models")
    source = trained_run["store"].run_dir(trained_run["run_id"])
    copy_run(source, store.run_dir(trained_run["run_id"]))
    original = RunAnalysis.load(source)
    store.run_dir(trained_run["run_id"]).joinpath("analysis.npz").unlink()
    return store, store.get(trained_run["run_id"]), original, tmp_path / "data"


def test_the_analysis_of_an_old_run_is_computed_again_exactly(old_run):
    store, run, original, data_root = old_run
    assert not run.has_analysis
    stages = []
    computed = run_tasks.compute_analysis(run, data_root, progress=lambda s, d, t: stages.append(s))
    assert store.get(run.run_id).has_analysis
    assert computed.split_hash == original.split_hash
    assert computed.test.paths == original.test.paths and (computed.test.labels == original.test.labels).all()
    # the stored ones went through float16 features (the feature cache); these through float32
    assert np.allclose(computed.test.logits, original.test.logits, rtol=1e-3, atol=5e-3)
    assert (computed.test.logits.argmax(axis=1) == original.test.logits.argmax(axis=1)).all()
    assert np.allclose(computed.val.features.astype(np.float32), original.val.features.astype(np.float32), atol=1e-2)
    assert "computing logits and features" in stages


def test_a_changed_dataset_is_refused(old_run, tmp_path):
    from core.data.datasets import DatasetError

    _store, run, _, data_root = old_run
    run.config["dataset"]["fingerprint"] = "somethingelse"
    with pytest.raises(DatasetError, match="changed since run"):
        run_tasks.compute_analysis(run, data_root)


def test_label_issues_of_a_run_score_every_image(old_run):
    from core.results.labels import issues as label_issues

    _store, run, original, data_root = old_run
    original.save(run.directory)
    review = run_tasks.compute_label_issues(run, data_root)
    features = run_tasks.TrainFeatures.load(run.directory)
    assert features is not None and features.features.shape[1] == 2048
    assert review.by_split == {
        "train": len(features.labels),
        "val": len(original.val.labels),
        "test": 14 * 4 - len(features.labels) - len(original.val.labels),
    }
    assert label_issues.load(run.directory).to_dict() == review.to_dict()
    assert all(issue.given != issue.suggested for issue in review.issues)


@pytest.mark.slow
def test_the_analysis_as_a_background_job(old_run):
    store, run, _, data_root = old_run
    status = run_tasks.launch(run, "analysis", data_root)
    assert status.pid
    assert run_tasks.launch(run, "analysis", data_root).pid == status.pid  # not started twice
    deadline = time.time() + 240
    while time.time() < deadline:
        status = run_tasks.task_status(run, "analysis")
        if not status.active:
            break
        time.sleep(1)
    assert status.state is JobState.DONE, (status.error, run_tasks.task_folder(run, "analysis").log_tail())
    assert store.get(run.run_id).has_analysis


def test_the_training_features_alone_for_photos_like_this(old_run):
    _store, run, original, data_root = old_run
    assert run_tasks.TrainFeatures.load(run.directory) is None
    computed = run_tasks.compute("train-features", run, data_root)
    stored = run_tasks.TrainFeatures.load(run.directory)
    assert stored.features.shape == (len(computed.labels), 2048) and stored.paths == computed.paths
    assert not set(stored.paths) & set(original.val.paths + original.test.paths)  # the training split only

"""One split per run: training, the analysis tasks, the out-of-distribution reference and retraining all see the
split the run trained on, with its excluded photos left out and its relabelled photos under their new label."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from core import run_job
from core.data.corrections import Corrections
from core.paths import cache_dir
from core.runs.analysis import RunAnalysis
from core.runs.split import DatasetChanged, run_split
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.train import jobs
from tests.conftest import make_image_dataset


@pytest.fixture(scope="module")
def corrected_run(tmp_path_factory):
    """A run trained with one training photo excluded, one relabelled, and one test photo relabelled."""
    base = tmp_path_factory.mktemp("corrected")
    dataset = make_image_dataset(base / "photos", {"red": 12, "green": 12, "blue": 12}, seed=5)
    data_root, store = base / "data", RunStore(base / "models")
    config = TrainConfig(image_size=32, weights="none", epochs=2, batch_size=8, head=(8,), seed=3)
    plain = jobs.submit(store, dataset, config)
    run_job.execute(store, plain, data_root, console=False, ingest_workers=1)
    drawn = RunAnalysis.load(store.run_dir(plain.run_id))
    train_photos = sorted(
        set(str(p.relative_to(dataset)) for p in dataset.rglob("*.png")) - set(drawn.val.paths) - set(drawn.test.paths)
    )
    excluded = next(p for p in train_photos if p.startswith("red/"))
    relabelled = next(p for p in train_photos if p.startswith("green/"))
    relabelled_test = next(p for p in drawn.test.paths if p.startswith("blue/"))
    kept = Corrections.load(data_root, dataset)
    kept.mark(excluded, "exclude")
    kept.mark(relabelled, "relabel", "red")
    kept.mark(relabelled_test, "relabel", "green")
    kept.mark(drawn.val.paths[0], "exclude")
    kept.save()
    submission = jobs.submit(store, dataset, config, corrections=jobs.dataset_corrections(data_root, dataset))
    run_job.execute(store, submission, data_root, console=False, ingest_workers=1)
    return {
        "store": store,
        "run": store.get(submission.run_id),
        "data_root": data_root,
        "dataset": dataset,
        "excluded": [excluded, drawn.val.paths[0]],
        "relabelled": {relabelled: "red", relabelled_test: "green"},
    }


def _expected(corrected_run) -> dict:
    data = run_split(corrected_run["run"], cache_dir(corrected_run["data_root"]))
    return {
        name: (data.paths(getattr(data.split, name)), [data.classes[i] for i in data.labels[getattr(data.split, name)]])
        for name in ("train", "val", "test")
    }


def test_the_split_leaves_out_excluded_photos_and_relabels(corrected_run):
    expected = _expected(corrected_run)
    every = [p for paths, _ in expected.values() for p in paths]
    assert not set(corrected_run["excluded"]) & set(every)
    labels = {p: label for paths, names in expected.values() for p, label in zip(paths, names, strict=True)}
    for photo, label in corrected_run["relabelled"].items():
        assert labels[photo] == label


def test_training_and_the_analysis_task_store_that_split(corrected_run):
    from core.results import tasks as run_tasks

    run = corrected_run["run"]
    expected = _expected(corrected_run)
    stored = RunAnalysis.load(run.directory)
    recomputed = run_tasks.compute_analysis(run, corrected_run["data_root"])  # what an older run computes once
    for analysis in (stored, recomputed):
        for name in ("val", "test"):
            part = analysis.split(name)
            assert (part.paths, [analysis.classes[i] for i in part.labels]) == expected[name], name
    features = run_tasks.training_features(run, corrected_run["data_root"])
    assert (features.paths, [run.classes[i] for i in features.labels]) == expected["train"]


def test_the_out_of_distribution_reference_is_fitted_on_that_split(corrected_run):
    from core.results.probabilities.reference import compute_reference

    run = corrected_run["run"]
    expected = _expected(corrected_run)
    reference = compute_reference(run, corrected_run["data_root"])
    train_counts = [expected["train"][1].count(name) for name in run.classes]
    assert reference.train_counts.tolist() == train_counts
    assert len(reference.val_confidence) == len(expected["val"][0])


def test_retraining_keeps_the_split_and_carries_the_corrections(corrected_run):
    from core.feedback import add_feedback
    from core.retrain import feedback_dataset

    run, data_root = corrected_run["run"], corrected_run["data_root"]
    out = io.BytesIO()
    Image.fromarray(np.full((40, 48, 3), (200, 30, 30), np.uint8)).save(out, format="PNG")
    add_feedback(data_root, run.dataset_path, run.classes, "red", out.getvalue(), "new-red.png")
    dataset = feedback_dataset(run, data_root)
    submission = jobs.submit(corrected_run["store"], dataset, run.train_config, corrections=run.corrections)
    retrained = corrected_run["store"].get(submission.run_id)
    assert retrained.corrections == run.corrections
    before, after = _expected(corrected_run), run_split(retrained, cache_dir(data_root))
    for name in ("val", "test"):
        got = after.split.__getattribute__(name)
        feedback = [p for p in after.paths(got) if "feedback-" in p]
        assert (
            [p for p in after.paths(got) if p not in feedback],
            [after.classes[after.labels[i]] for i in got if "feedback-" not in after.cache.paths[i]],
        ) == before[name]


def test_a_changed_dataset_is_refused_by_name(corrected_run, tmp_path):
    run = corrected_run["run"]
    copy = tmp_path / "photos"
    shutil.copytree(corrected_run["dataset"], copy, symlinks=True)
    run.config = {**run.config, "dataset": {**run.config["dataset"], "path": str(copy)}}
    (copy / "red" / "img_000.png").unlink()
    with pytest.raises(DatasetChanged, match="changed since run"):
        run_split(run, cache_dir(corrected_run["data_root"]))

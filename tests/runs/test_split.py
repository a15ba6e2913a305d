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


def test_an_older_run_finds_its_photos_after_photos_are_labelled_in_flora(tmp_path):
    """Walk 41: labelling photos in Flora made an older run's analysis fail as 'dataset changed'. The run leaves out
    the photos labelled after it was made and draws its very split again; a photo changed outside Flora still fails."""
    from core.data.unlabelled import Unlabelled

    dataset = make_image_dataset(tmp_path / "photos", {"red": 10, "green": 10}, seed=2)
    (dataset / "unlabelled").mkdir()
    for i, source in enumerate(sorted((dataset / "red").iterdir())[:3]):
        shutil.copy(source, dataset / "unlabelled" / f"u{i}.png")
    data_root, store = tmp_path / "data", RunStore(tmp_path / "models")
    waiting = Unlabelled.load(data_root, dataset)
    before = waiting.label("unlabelled/u0.png", "red", ["green", "red"])  # labelled before the run: trained on
    config = TrainConfig(image_size=32, weights="none", epochs=1, batch_size=8, head=(8,), seed=1)
    submission = jobs.submit(store, dataset, config)
    run_job.execute(store, submission, data_root, console=False, ingest_workers=1)
    run = store.get(submission.run_id)
    stored = RunAnalysis.load(run.directory)
    after = [waiting.label(f"unlabelled/u{i}.png", "red", ["green", "red"]) for i in (1, 2)]

    data = run_split(run, cache_dir(data_root))
    assert data.paths(data.split.val) == stored.val.paths and data.paths(data.split.test) == stored.test.paths
    assert before in data.paths(data.split.train) and not set(after) & set(data.cache.paths)
    assert data.index.fingerprint == run.dataset_fingerprint
    shutil.copy(dataset / "green" / "img_000.png", dataset / "green" / "added-by-hand.png")
    with pytest.raises(DatasetChanged, match="changed since run"):
        run_split(run, cache_dir(data_root))


@pytest.fixture(scope="module")
def two_starts(tmp_path_factory):
    """Two runs on one split seed with other seeds: another random start on the same split."""
    base = tmp_path_factory.mktemp("starts")
    dataset = make_image_dataset(base / "photos", {"red": 12, "green": 12, "blue": 12}, seed=6)
    data_root, store = base / "data", RunStore(base / "models")
    config = TrainConfig(image_size=32, weights="none", epochs=2, batch_size=8, head=(8,), seed=1, split_seed=11)
    runs = []
    for seed in (1, 2):
        submission = jobs.submit(store, dataset, config.replace(seed=seed))
        run_job.execute(store, submission, data_root, console=False, ingest_workers=1)
        runs.append(store.get(submission.run_id))
    return {"store": store, "runs": runs, "data_root": data_root}


def test_one_split_seed_with_two_seeds_keeps_the_split_and_starts_the_weights_apart(two_starts):
    import keras

    from core.network.model import classifier_for
    from core.runs.split import draw_split

    first, second = two_starts["runs"]
    assert first.run_id != second.run_id and first.state == second.state == "done"
    splits = [run_split(run, cache_dir(two_starts["data_root"])) for run in (first, second)]
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(splits[0].split, name), getattr(splits[1].split, name)), name
    stored = [RunAnalysis.load(run.directory) for run in (first, second)]
    assert stored[0].val.paths == stored[1].val.paths and stored[0].test.paths == stored[1].test.paths
    own = draw_split(splits[0].cache, splits[0].index, first.train_config.replace(split_seed=None), None)
    assert not np.array_equal(own.test, splits[0].split.test)  # seed 1 alone would have drawn another split

    def start(config):  # the weights a run starts from, built as training builds them
        keras.utils.set_random_seed(config.seed)
        return [w.copy() for w in classifier_for(config, 3).get_weights()]

    one, again, two = start(first.train_config), start(first.train_config), start(second.train_config)
    assert all(np.array_equal(a, b) for a, b in zip(one, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))


def test_compare_says_two_starts_on_one_split_differ_by_chance_alone(two_starts, capsys):
    from core.cli import main as cli
    from core.results.evaluation.compare import compare, load_result

    first, second = two_starts["runs"]
    out = compare([load_result(first), load_result(second)])
    assert out["split_differs"] is None and out["test_images"] == len(RunAnalysis.load(first.directory).test.paths)
    assert out["same_split"].startswith("Same split, another random start: the difference is what chance alone moves")
    assert f"{first.run_id[:6]} seed 1, {second.run_id[:6]} seed 2" in out["same_split"]
    assert cli(["compare", first.run_id, second.run_id, "--models-dir", str(two_starts["store"].root)]) == 0
    assert "Same split, another random start" in capsys.readouterr().out

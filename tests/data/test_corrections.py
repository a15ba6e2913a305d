"""Label corrections: kept beside the datasets (never in them), applied after the split, part of the run id."""

from __future__ import annotations

import numpy as np
import pytest

from core.data import corrections
from core.data.corrections import Corrections
from core.data.datasets import Split
from core.data.multilabel import LabelSets
from tests.conftest import make_image_dataset


@pytest.mark.backend_agnostic
def test_marks_are_kept_in_the_data_folder_not_the_dataset(tmp_path):
    dataset = make_image_dataset(tmp_path / "photos", {"rose": 4, "tulip": 4})
    before = sorted(p.relative_to(dataset) for p in dataset.rglob("*"))
    kept = Corrections.load(tmp_path / "data", dataset)
    kept.mark("rose/img_000.png", "relabel", "tulip", classes=["rose", "tulip"])
    kept.mark("rose/img_001.png", "exclude")
    kept.mark("tulip/img_000.png", "fine")
    with pytest.raises(ValueError, match="not a class"):
        kept.mark("rose/img_002.png", "relabel", "lily", classes=["rose", "tulip"])
    kept.save()
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*")) == before  # the photos' folder untouched
    assert kept.file.is_relative_to(tmp_path / "data")
    again = Corrections.load(tmp_path / "data", dataset)
    assert again.counts() == {"relabel": 1, "exclude": 1, "fine": 1}
    assert again.effective() == {
        "rose/img_000.png": {"action": "relabel", "to": "tulip"},
        "rose/img_001.png": {"action": "exclude"},
    }
    assert corrections.dataset_key("abc", None) == "abc"
    assert corrections.dataset_key("abc", again.effective()) != "abc"


@pytest.mark.backend_agnostic
def test_apply_relabels_and_excludes_after_the_split():
    paths = ["a/0", "a/1", "b/0", "b/1", "b/2"]
    labels = np.array([0, 0, 1, 1, 1])
    split = Split(np.array([0, 2]), np.array([1, 3]), np.array([4]), "random")
    effective = {"a/0": {"action": "relabel", "to": "b"}, "b/1": {"action": "exclude"}, "gone/x": {"action": "exclude"}}
    new_labels, kept, notes = corrections.apply(effective, paths, labels, ["a", "b"], split)
    assert new_labels.tolist() == [1, 0, 1, 1, 1] and labels.tolist() == [0, 0, 1, 1, 1]
    assert kept.train.tolist() == [0, 2] and kept.val.tolist() == [1] and kept.test.tolist() == [4]
    assert "1 photo(s) relabelled, 1 excluded" in notes[0] and "no longer in the dataset" in notes[1]


def test_a_corrected_dataset_trains_a_new_run_on_the_same_split(tmp_path):
    from core import run_job
    from core.runs.analysis import RunAnalysis
    from core.runs.store import RunStore
    from core.settings.config import TrainConfig
    from core.train import jobs

    dataset = make_image_dataset(tmp_path / "photos", {"red": 10, "green": 10, "blue": 10}, seed=2)
    data_root = tmp_path / "data"
    store = RunStore(tmp_path / "models")
    config = TrainConfig(image_size=32, weights="none", epochs=1, batch_size=8, head=(8,), seed=1)
    first = jobs.submit(store, dataset, config, corrections=jobs.dataset_corrections(data_root, dataset))
    run_job.execute(store, first, data_root, console=False, ingest_workers=1)
    before = RunAnalysis.load(store.run_dir(first.run_id))

    test_photo = next(p for p in before.test.paths if p.startswith("red/"))  # a test photo relabelled
    kept = Corrections.load(data_root, dataset)
    kept.mark(test_photo, "relabel", "green")
    kept.mark(before.val.paths[0], "exclude")
    kept.save()
    second = jobs.submit(store, dataset, config, corrections=jobs.dataset_corrections(data_root, dataset))
    assert second.run_id != first.run_id and second.outcome == jobs.NEW
    assert store.get(second.run_id).config["dataset"]["corrections"] == kept.effective()
    run_job.execute(store, second, data_root, console=False, ingest_workers=1)
    after = RunAnalysis.load(store.run_dir(second.run_id))
    assert after.test.paths == before.test.paths  # the split was drawn before the corrections
    assert after.val.paths == before.val.paths[1:]
    row = after.test.paths.index(test_photo)
    assert after.classes[after.test.labels[row]] == "green"
    again = jobs.submit(store, dataset, config, corrections=jobs.dataset_corrections(data_root, dataset))
    assert again.cached and again.run_id == second.run_id


@pytest.mark.backend_agnostic
def test_a_multilabel_photo_is_relabelled_with_its_whole_label_list(tmp_path):
    names = ["red", "green", "blue"]
    kept = Corrections.load(tmp_path / "data", tmp_path / "mosaics")
    kept.mark("images/m0.png", "relabel", labels=["blue", "red", "red"], classes=names)  # kept in the labels' order
    kept.mark("images/m1.png", "relabel", labels=[], classes=names)  # none of its labels
    kept.mark("images/m2.png", "fine")
    with pytest.raises(ValueError, match="'pink': not a label of this dataset"):
        kept.mark("images/m3.png", "relabel", labels=["red", "pink"], classes=names)
    kept.save()
    again = Corrections.load(tmp_path / "data", tmp_path / "mosaics")
    effective = again.effective()
    assert effective == {
        "images/m0.png": {"action": "relabel", "labels": ["red", "blue"]},
        "images/m1.png": {"action": "relabel", "labels": []},
    }
    assert corrections.summary(effective) == "2 relabelled"
    assert [corrections.target_text(again.entries[p]) for p in ("images/m0.png", "images/m1.png")] == [
        "red, blue",
        "none of these",
    ]
    # the lists: marked photos take theirs, the others keep their own; the split is the caller's, before
    paths = ["images/m0.png", "images/m1.png", "images/m2.png", "images/m9.png"]
    targets = LabelSets.from_lists([[1], [0, 2], [1], [0]], 3)
    lists = corrections.relabel_lists(effective, paths, targets, names)
    assert lists.lists() == [[0, 2], [], [1], [0]] and targets.lists() == [[1], [0, 2], [1], [0]]
    assert corrections.relabel_lists(None, paths, targets, names) is targets
    split = Split(np.array([0, 1]), np.array([2]), np.array([3]), "random")
    labels, kept_split, notes = corrections.apply(effective, paths, np.full(4, -1), names, split)
    assert labels.tolist() == [-1] * 4 and kept_split.train.tolist() == [0, 1]  # labels of a multi-label run: -1
    assert "2 photo(s) relabelled, none excluded" in notes[0]
    # a classmate's label list proposed to the owner, accepted as the owner's own
    theirs = Corrections.load(tmp_path / "data", tmp_path / "mosaics", "bob")
    theirs.mark("images/m4.png", "relabel", labels=["green"], classes=names, proposed_to="local")
    theirs.save()
    owner = Corrections.load(tmp_path / "data", tmp_path / "mosaics")
    [proposal] = owner.proposals()
    assert proposal["labels"] == ["green"] and proposal["by"] == "bob"
    owner.accept("images/m4.png", "bob")
    owner.save()
    assert Corrections.load(tmp_path / "data", tmp_path / "mosaics").effective()["images/m4.png"] == {
        "action": "relabel",
        "labels": ["green"],
    }


def test_a_corrected_multilabel_dataset_trains_a_new_run_on_the_corrected_lists(tmp_path):
    from core import run_job
    from core.runs.analysis import RunAnalysis
    from core.runs.store import RunStore
    from core.settings.config import TrainConfig
    from core.train import jobs
    from tests.train.test_multilabel import make_mosaics

    dataset = make_mosaics(tmp_path / "mosaics", n=40, size=32, seed=5)
    data_root = tmp_path / "data"
    store = RunStore(tmp_path / "models")
    config = TrainConfig(image_size=32, weights="none", epochs=1, batch_size=8, head=(8,), seed=1)
    first = jobs.submit(store, dataset, config, corrections=jobs.dataset_corrections(data_root, dataset))
    run_job.execute(store, first, data_root, console=False, ingest_workers=1)
    before = RunAnalysis.load(store.run_dir(first.run_id))
    names = list(before.classes)

    photo = before.test.paths[0]
    row = before.test.targets[0]
    flipped = [name for name, has in zip(names, row, strict=True) if not has]  # every label it lacks, none it has
    kept = Corrections.load(data_root, dataset)
    kept.mark(photo, "relabel", labels=flipped, classes=names)
    kept.mark(before.val.paths[0], "exclude")
    kept.save()
    second = jobs.submit(store, dataset, config, corrections=jobs.dataset_corrections(data_root, dataset))
    assert second.run_id != first.run_id and second.outcome == jobs.NEW
    run_job.execute(store, second, data_root, console=False, ingest_workers=1)
    after = RunAnalysis.load(store.run_dir(second.run_id))
    assert after.test.paths == before.test.paths and after.val.paths == before.val.paths[1:]
    assert after.test.targets[0].tolist() == [int(not has) for has in row]  # trained and tested on the new list
    np.testing.assert_array_equal(after.test.targets[1:], before.test.targets[1:])


def test_copy_as_command_finds_each_run_again_corrected_or_not(tmp_path, capsys):
    """The command of a run trained before corrections were marked still finds it (--corrections none), and a
    corrected run's command finds that run (--corrections run:ID), whatever is marked since."""
    import json
    import shlex

    from core import cli
    from core.runs.store import RunStore
    from core.settings.options import run_command

    dataset = make_image_dataset(tmp_path / "photos", {"red": 10, "green": 10, "blue": 10}, seed=2)
    where = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data")]
    args = ["train", str(dataset), "--image-size", "32", "--weights", "none", "--epochs", "1", *where, "--json"]

    def train(*extra: str) -> dict:
        assert cli.main([*args, *extra]) == 0
        return json.loads(capsys.readouterr().out)

    plain = train()
    kept = Corrections.load(tmp_path / "data", dataset)
    kept.mark("red/img_000.png", "exclude")
    kept.save()
    corrected = train()  # the default applies the corrections kept now: another run
    assert corrected["run_id"] != plain["run_id"] and not corrected["cached"]
    kept.mark("red/img_001.png", "relabel", "green")
    kept.save()
    store = RunStore(tmp_path / "models")
    for run_id in (plain["run_id"], corrected["run_id"]):
        command = run_command(store.get(run_id))
        again = train(*shlex.split(command)[5:])  # after "python -m core train DATASET"
        assert again["run_id"] == run_id and again["cached"], command
    assert "--corrections none" in run_command(store.get(plain["run_id"]))
    assert f"--corrections run:{corrected['run_id']}" in run_command(store.get(corrected["run_id"]))
    assert cli.main([*args, "--corrections", "run:nosuchrun"]) == 1
    assert "no such run" in capsys.readouterr().err

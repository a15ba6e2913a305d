"""Label-next: unlabelled photos scanned apart and labelled in place (never lost), the margin-diverse picking, its
simulation against random (on a set built to reward it), and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.datasets import DatasetError, scan_dataset
from core.data.unlabelled import Unlabelled
from core.importers.common import ImportRejected
from core.importers.unlabelled import add_files, add_zip
from core.results.label_next import data as label_next_data
from core.results.label_next import tasks as label_next_tasks
from core.results.label_next.picking import STRATEGY, explain, margins, pick_margin_diverse
from core.results.label_next.simulation import saving, schedule, simulate
from core.results.train_features import training_features
from core.runs.store import RunStore
from tests.conftest import copy_run_and_dataset

pytestmark = pytest.mark.backend_agnostic


def _photo(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data" / "flowers"
    for cls, colour in (("rose", (220, 20, 40)), ("daisy", (240, 240, 240))):
        for i in range(3):
            _photo(root / cls / f"{i}.png", colour)
    return root


def test_the_unlabelled_folder_is_no_class_and_not_in_the_fingerprint(dataset, tmp_path):
    before = scan_dataset(dataset)
    _photo(dataset / "unlabelled" / "a.png")
    _photo(dataset / "Unlabeled" / "sub" / "b.png")
    after = scan_dataset(dataset)
    assert after.classes == ["daisy", "rose"] and after.fingerprint == before.fingerprint
    waiting = Unlabelled.load(tmp_path / "data", dataset)
    assert sorted(waiting.pending) == ["Unlabeled/sub/b.png", "unlabelled/a.png"]


def test_labelling_copies_into_the_class_folder_keeps_the_original_and_undo_takes_it_back(dataset, tmp_path):
    _photo(dataset / "unlabelled" / "0.png")  # the same name as a rose photo: the copy gets a new name
    _photo(dataset / "unlabelled" / "odd.png")
    data_root = tmp_path / "data"
    waiting = Unlabelled.load(data_root, dataset)
    copied = waiting.label("unlabelled/0.png", "rose", ["daisy", "rose"], by="alice")
    assert copied == "rose/0-2.png" and (dataset / copied).is_file() and (dataset / "unlabelled" / "0.png").is_file()
    waiting.label("unlabelled/odd.png", None, ["daisy", "rose"])
    again = Unlabelled.load(data_root, dataset)  # the record survives: nothing is offered twice
    assert again.pending == [] and again.labelled == {"unlabelled/0.png": "rose"}
    assert again.set_aside == ["unlabelled/odd.png"] and again.record["unlabelled/0.png"]["by"] == "alice"
    assert scan_dataset(dataset).class_counts()["rose"] == 4  # the next run trains on it
    again.undo("unlabelled/0.png")
    assert not (dataset / copied).exists() and (dataset / "unlabelled" / "0.png").is_file()
    assert "unlabelled/0.png" in Unlabelled.load(data_root, dataset).pending
    with pytest.raises(DatasetError, match="not a class"):
        again.label("unlabelled/0.png", "tulip", ["daisy", "rose"])
    with pytest.raises(DatasetError, match="not one of"):
        again.label("rose/1.png", "rose", ["daisy", "rose"])


def test_labelling_a_photo_again_makes_no_second_copy(dataset, tmp_path):
    _photo(dataset / "unlabelled" / "a.png")
    _photo(dataset / "unlabelled" / "b.png")
    data_root = tmp_path / "data"
    first = Unlabelled.load(data_root, dataset).label("unlabelled/a.png", "rose", ["daisy", "rose"])
    for _ in range(6):  # clicks that reached the server after the first one (each loads the record afresh)
        assert Unlabelled.load(data_root, dataset).label("unlabelled/a.png", "rose", ["daisy", "rose"]) == first
    assert sorted(p.name for p in (dataset / "rose").iterdir()) == ["0.png", "1.png", "2.png", "a.png"]
    assert Unlabelled.load(data_root, dataset).record["unlabelled/a.png"]["to"] == first == "rose/a.png"
    with pytest.raises(DatasetError, match="already labelled 'rose': undo that first"):
        Unlabelled.load(data_root, dataset).label("unlabelled/a.png", "daisy", ["daisy", "rose"])
    assert sorted(p.name for p in (dataset / "daisy").iterdir()) == ["0.png", "1.png", "2.png"]
    Unlabelled.load(data_root, dataset).label("unlabelled/b.png", None, ["daisy", "rose"])
    assert Unlabelled.load(data_root, dataset).label("unlabelled/b.png", None, ["daisy", "rose"]) is None
    with pytest.raises(DatasetError, match="already set aside"):
        Unlabelled.load(data_root, dataset).label("unlabelled/b.png", "rose", ["daisy", "rose"])


def test_a_dataset_with_its_own_split_gets_the_photo_in_training(tmp_path):
    root = tmp_path / "split"
    for split in ("train", "val"):
        _photo(root / split / "rose" / "1.png")
        _photo(root / split / "daisy" / "1.png", (250, 250, 250))
    _photo(root / "unlabelled" / "x.png")
    copied = Unlabelled.load(tmp_path, root).label("unlabelled/x.png", "daisy", ["daisy", "rose"])
    assert copied == "train/daisy/x.png"


@contextlib.contextmanager
def _as_a_user(folder: Path):
    """Run the block as a user for whom a 0555 folder is read-only: as root (CI's user), the effective uid becomes
    `nobody` for the block, with `folder` readable and every folder above it traversable, so the read-only path runs
    everywhere."""
    if os.geteuid() != 0:
        yield
        return
    above = [p for p in folder.parents if p != Path("/")]
    modes = {p: p.stat().st_mode & 0o7777 for p in [folder, *above]}
    for p, mode in modes.items():
        os.chmod(p, mode | (0o005 if p == folder else 0o001))  # the dataset listed, the folders above passed through
    os.setegid(65534)  # the group too: root's group would read the folders' group bits, not the others'
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        for p, mode in modes.items():
            os.chmod(p, mode)


def test_a_read_only_dataset_says_so_and_loses_nothing(dataset, tmp_path):
    _photo(dataset / "unlabelled" / "a.png")
    os.chmod(dataset / "rose", 0o555)
    unlabelled = Unlabelled.load(tmp_path / "data", dataset)
    try:
        with pytest.raises(DatasetError, match="writable"), _as_a_user(dataset):
            unlabelled.label("unlabelled/a.png", "rose", ["daisy", "rose"])
    finally:
        os.chmod(dataset / "rose", 0o755)
    assert (dataset / "unlabelled" / "a.png").is_file()
    assert Unlabelled.load(tmp_path / "data", dataset).pending == ["unlabelled/a.png"]


def test_uploads_keep_the_images_and_name_what_they_left_out(dataset):
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    result = add_files(dataset, [("a.png", io.BytesIO(png.getvalue())), ("notes.png", io.BytesIO(b"hello"))])
    assert result.added == ["unlabelled/a.png"]
    assert result.skipped[0]["path"] == "notes.png" and "not an image" in result.skipped[0]["reason"]
    again = add_files(dataset, [("a.png", io.BytesIO(png.getvalue()))])
    assert again.added == ["unlabelled/a-2.png"]  # never overwrites
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("trip/b.png", png.getvalue())
        zf.writestr("readme.txt", "x")
        zf.writestr("__MACOSX/._b.png", "x")
    archive.seek(0)
    result = add_zip(dataset, archive)
    assert result.added == ["unlabelled/trip-b.png"] and [s["path"] for s in result.skipped] == ["readme.txt"]
    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("../../evil.png", png.getvalue())
    hostile.seek(0)
    with pytest.raises(ImportRejected, match=r"\.\."):
        add_zip(dataset, hostile)
    assert not (dataset.parent.parent / "evil.png").exists()
    with pytest.raises(ImportRejected, match="not a zip"):
        add_zip(dataset, io.BytesIO(b"not a zip"))


def test_margins_and_the_batch_covers_each_uncertain_group_once():
    assert np.allclose(margins(np.array([[0.5, 0.4, 0.1], [0.9, 0.05, 0.05]])), [0.1, 0.85])
    rng = np.random.default_rng(0)
    # three tight groups of torn photos (15, 10, 10 near-copies) and 65 photos the model is sure of
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    torn = np.repeat(centres, [15, 10, 10], axis=0) + rng.normal(0, 0.01, (35, 3))
    x = np.concatenate([torn, rng.normal(9, 1, (65, 3))])
    p = np.concatenate(
        [
            np.tile([0.49, 0.48, 0.03], (15, 1)),
            np.tile([0.5, 0.45, 0.05], (10, 1)),
            np.tile([0.5, 0.42, 0.08], (10, 1)),
            np.tile([0.95, 0.04, 0.01], (65, 1)),
        ]
    )
    picked, groups = pick_margin_diverse(x, p, batch=3)
    assert len(set(picked.tolist())) == 3 and all(i < 35 for i in picked)  # only torn photos
    assert sorted(tuple(np.round(x[i] / 5).astype(int)) for i in picked) == [(0, 0, 1), (0, 1, 0), (1, 0, 0)]
    assert sorted(groups.tolist()) == [5, 10, 15]  # the 30 least certain: 15 + 10 + 5
    # pure margin would have taken three near-copies of the first group
    assert set(np.argsort(margins(p), kind="stable")[:3]) <= set(range(15))


def test_a_picks_reason_says_only_what_was_measured():
    # the walk of issue 39: "it stands for 27 similar uncertain photos, so one label teaches about all of them"
    _, _, why = explain(np.array([0.52, 0.48]), ["daisy", "dandelion"], group=27)
    assert "torn between daisy (52%) and dandelion (48%)" in why
    assert "of 27 uncertain photos that look alike" in why and "one photo from each such group" in why
    assert "teaches" not in why and "all of them" not in why
    assert "look alike" not in explain(np.array([0.52, 0.48]), ["daisy", "dandelion"], group=1)[2]


def _built_to_reward_it(n=2000, classes=5, easy=0.85, seed=0):
    """Most photos far out in their class (redundant: any few teach the same), the rest crowded near the boundaries
    where the head's accuracy is decided: random picking spends most labels on the redundant ones."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (classes, 16))
    y = rng.integers(classes, size=n)
    far = rng.random(n) < easy
    x = np.where(
        far[:, None], means[y] * 4 + rng.normal(0, 0.5, (n, 16)), means[y] * 0.6 + rng.normal(0, 0.35, (n, 16))
    )
    return x.astype(np.float32), y


def test_on_a_set_built_to_reward_it_flora_needs_no_more_labels_than_random():
    x, y = _built_to_reward_it()
    result = simulate(x[:1600], y[:1600], x[1600:], y[1600:], 5, seeds=3, batch=10)
    ours, theirs = result["strategies"][STRATEGY], result["strategies"]["random"]
    assert result["seeds"] == 3 and len(ours["labels_to_target_by_seed"]) == 3
    assert ours["labels_to_target"] is not None and theirs["labels_to_target"] is not None
    assert ours["labels_to_target"] <= theirs["labels_to_target"]
    assert result["saved_labels"] == theirs["labels_to_target"] - ours["labels_to_target"] > 0
    assert [c for c, _ in ours["curve"]] == [c for c, _ in theirs["curve"]]  # the same schedule
    assert ours["curve"][0][0] == 10  # 2 per class to start
    assert result["target_accuracy"] == pytest.approx(0.95 * result["full_accuracy"], abs=1e-3)
    assert result["validation_photos"] == 400
    band = (result["full_accuracy"] - result["target_accuracy"]) * 400
    assert result["target_band_photos"] == pytest.approx(band, abs=0.2)
    band = result["target_band_photos"]
    assert (
        f"target band was about {band:.0f} validation photo{'s' if round(band) != 1 else ''} wide" in result["verdict"]
    )
    json.dumps(result)  # the CLI prints it as it is


def test_the_verdict_calls_a_saving_measurable_only_when_every_seed_agrees():
    def figures(hits):
        return {"labels_to_target": float(np.median(hits)), "labels_to_target_by_seed": hits}

    clear = saving({STRATEGY: figures([20, 30, 20]), "random": figures([70, 90, 120])})
    assert clear["measurable"] and clear["saved_labels"] == 70 and "every seed" in clear["verdict"]
    overlap = saving({STRATEGY: figures([20, 30, 100]), "random": figures([40, 90, 120])})
    assert not overlap["measurable"] and "not measurable" in overlap["verdict"]
    worse = saving({STRATEGY: figures([90, 90, 90]), "random": figures([40, 40, 40])})
    assert worse["measurable"] and worse["better"] == "random" and worse["saved_labels"] == -50
    assert worse["verdict"].startswith("random picking did better: it reached the target with 40 labels, Flora's")
    assert "in every seed" in worse["verdict"]
    # the analyst's walk: seeds 156/44/462 against 34/44/24, a band 4 validation photos wide
    walk = saving({STRATEGY: figures([156, 44, 462]), "random": figures([34, 44, 24])}, band=4.0)
    assert walk["better"] == "random" and not walk["measurable"] and "saved nothing" not in walk["verdict"]
    assert walk["verdict"].startswith("random picking did better: it reached the target with 34 labels, Flora's ")
    assert "needed 156" in walk["verdict"] and "156, 44, 462" in walk["verdict"] and "not measurable" in walk["verdict"]
    assert "The target band was about 4 validation photos wide" in walk["verdict"]
    tie = saving({STRATEGY: figures([40, 40, 40]), "random": figures([40, 50, 30])})
    assert tie["better"] is None and "no saving" in tie["verdict"] and "band" not in tie["verdict"]
    never = saving(
        {STRATEGY: {"labels_to_target": None, "labels_to_target_by_seed": [None] * 3}, "random": figures([9])}
    )
    assert never["better"] == "random" and never["verdict"].startswith("random picking did better")
    assert schedule(10, 35, 10) == [10, 20, 30, 35] and len(schedule(10, 10**6, 10)) == 40  # bounded steps


@pytest.fixture
def own(trained_run, tmp_path):
    copied = copy_run_and_dataset(trained_run, tmp_path)
    classes = sorted(p.name for p in copied["dataset"].iterdir() if p.is_dir())
    for i, cls in enumerate(classes):  # photos of known classes, as if never labelled
        source = sorted((copied["dataset"] / cls).iterdir())[0]
        (copied["dataset"] / "unlabelled").mkdir(exist_ok=True)
        (copied["dataset"] / "unlabelled" / f"u{i}{source.suffix}").write_bytes(source.read_bytes())
    (copied["dataset"] / "unlabelled" / "broken.jpg").write_bytes(b"not a photo")
    copied["run"] = RunStore(copied["models_root"]).get(copied["run_id"])
    return copied


def test_a_run_ranks_its_unlabelled_photos_and_learns_from_each_labelled_one(own):
    run, data_root = own["run"], own["data_root"]
    train = training_features(run, data_root)
    computed = label_next_data.prepare_run(run, data_root)
    assert computed.failures and computed.failures[0]["path"] == "unlabelled/broken.jpg"  # said, not fatal
    assert label_next_data.UnlabelledFeatures.load(run.directory).paths == computed.paths
    waiting = Unlabelled.load(data_root, run.dataset_path)
    bench = label_next_data.workbench(run.classes, train.features, train.labels, waiting, computed)
    assert bench.ready and len(bench.pending_paths) == len(run.classes) and bench.newly_labelled == 0
    picks = bench.next_batch(batch=2)
    assert len(picks) == 2 and all(0 <= p.margin <= 1 and p.reason for p in picks)
    assert {g[0] for p in picks for g in p.guesses} <= set(run.classes)
    waiting.label(picks[0].path, run.classes[0], run.classes)
    after = label_next_data.workbench(
        run.classes, train.features, train.labels, Unlabelled.load(data_root, run.dataset_path), computed
    )
    assert after.newly_labelled == 1 and len(after.labelled_y) == len(train.labels) + 1
    assert picks[0].path not in after.pending_paths and after.labelled_y[-1] == 0
    copy = Unlabelled.load(data_root, run.dataset_path).record[picks[0].path]["to"]
    retrained = label_next_data.workbench(  # a run trained after the labelling already has the copy
        run.classes, train.features, train.labels, Unlabelled.load(data_root, run.dataset_path), computed,
        labelled_paths=[*train.paths[:-1], copy],
    )  # fmt: skip
    assert retrained.newly_labelled == 0 and len(retrained.labelled_y) == len(train.labels)
    assert retrained.labelled_here == 1, "the run trained on a photo labelled here"
    assert after.labelled_here == 1 and bench.labelled_here == 0


def test_the_simulation_task_stores_its_result_for_the_page(own):
    result = label_next_tasks.simulate_run(own["run"], own["data_root"])
    stored = label_next_tasks.stored_simulation(own["run"].directory)
    assert stored["strategies"].keys() == result["strategies"].keys() == {STRATEGY, "random"}
    assert stored["verdict"] and stored["seeds"] == 3


@pytest.mark.slow
def test_the_cli_lists_the_batch_and_the_simulation_as_json(own, capsys):
    """The text and JSON forms through the CLI's `main` in this process: what a person's `python -m core` runs, less
    a process that cost an import of Keras and its framework for the same code (tests/test_cli.py starts the real
    processes)."""
    from core.cli import main

    where = ["--models-dir", str(own["models_root"]), "--data-dir", str(own["data_root"])]

    def cli(*argv):
        assert main([*argv, *where]) == 0
        return capsys.readouterr().out

    listed = json.loads(cli("label-next", own["run_id"], "--batch", "2", "--json"))
    assert listed["pending"] == len(own["run"].classes) and len(listed["batch"]) == 2
    assert {"path", "guesses", "margin", "reason"} <= listed["batch"][0].keys()
    assert listed["unreadable"][0]["path"] == "unlabelled/broken.jpg"
    text = cli("label-next", own["run_id"], "--batch", "2")
    assert "the 2 to label next" in text and "could not read unlabelled/broken.jpg" in text
    simulated = json.loads(cli("label-next", own["run_id"], "--simulate", "--json"))
    assert {"target_accuracy", "seeds", "strategies"} <= simulated.keys() and simulated["seeds"] == 3
    assert all("labels_to_target" in s and "curve" in s for s in simulated["strategies"].values())


def test_photos_labelled_in_flora_join_training_and_the_rest_split_as_before(tmp_path):
    from core.data.ingest import ingest
    from core.runs.split import draw_split
    from core.settings.config import TrainConfig

    root = tmp_path / "data" / "flowers"
    for cls, colour in (("rose", (220, 20, 40)), ("daisy", (240, 240, 240)), ("tulip", (200, 100, 0))):
        for i in range(10):
            _photo(root / cls / f"{i}.png", (colour[0], colour[1], (colour[2] + 7 * i) % 255))
    for i in range(4):
        _photo(root / "unlabelled" / f"new{i}.png", (10, 10 + i, 10))
    config = TrainConfig(image_size=32, weights="none")

    def split_by_path():
        index = scan_dataset(root)
        cache = ingest(index, 36, tmp_path / "cache")
        split = draw_split(cache, index, config, None)
        return {name: {cache.paths[i] for i in getattr(split, name)} for name in ("train", "val", "test")}, split

    before, _ = split_by_path()
    waiting = Unlabelled.load(tmp_path / "data", root)
    copies = [waiting.label(f"unlabelled/new{i}.png", cls, ["daisy", "rose", "tulip"]) for i, cls in
              enumerate(("rose", "rose", "daisy", "tulip"))]  # fmt: skip
    after, split = split_by_path()
    assert set(copies) <= after["train"] and "4 photo(s) labelled in Flora join training" in " ".join(split.notes)
    assert after["val"] == before["val"] and after["test"] == before["test"]  # comparable photo by photo
    assert after["train"] - set(copies) == before["train"]
    waiting.undo("unlabelled/new0.png")
    assert copies[0] not in json.loads((root / "flora.json").read_text())["labelled_in_flora"]


def test_a_run_before_and_after_labelling_says_its_photos_differ(dataset, tmp_path):
    from types import SimpleNamespace

    from core.results.evaluation.compare import settings_table
    from core.settings.config import TrainConfig
    from pages.ui.train.launch import dataset_change

    index = scan_dataset(dataset)
    before = SimpleNamespace(
        run_id="aaaaaa", train_config=TrainConfig(), corrections=None, dataset_path=str(dataset),
        dataset_fingerprint=index.fingerprint, dataset_images=len(index.entries),
    )  # fmt: skip
    assert dataset_change(before) == ""
    _photo(dataset / "unlabelled" / "new.png")
    Unlabelled.load(tmp_path / "data", dataset).label("unlabelled/new.png", "rose", ["daisy", "rose"])
    now = scan_dataset(dataset)
    after = SimpleNamespace(**{**vars(before), "run_id": "bbbbbb", "dataset_fingerprint": now.fingerprint,
                               "dataset_images": len(now.entries)})  # fmt: skip
    words = dataset_change(before)
    assert "7 now, 6 when it trained" in words and "1 of its photos were labelled in Flora" in words
    table = settings_table([before, after])
    assert table.set_index("setting").loc["dataset photos"].tolist() == [
        f"6 ({index.fingerprint[:6]})",
        f"7 ({now.fingerprint[:6]})",
    ]

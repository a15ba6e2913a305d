"""Scanning layouts, fingerprints and the stratified split."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from core.data.datasets import (
    SMALL_TEST_SPLIT,
    DatasetError,
    list_datasets,
    resolve_dataset_path,
    scan_dataset,
    small_test_note,
    split_indices,
)
from tests.conftest import make_image_dataset


def test_scan_class_folders(tiny_dataset):
    (tiny_dataset / "red" / "notes.txt").write_text("not an image")
    (tiny_dataset / ".hidden").mkdir()
    (tiny_dataset / "red" / ".DS_Store").write_bytes(b"x")
    (tiny_dataset / "empty").mkdir()
    index = scan_dataset(tiny_dataset)
    assert index.classes == ["blue", "green", "red"]
    assert index.class_counts() == {"blue": 12, "green": 12, "red": 12}
    assert index.layout == "classes" and not index.has_split
    assert index.empty_classes == ["empty"]
    assert index.ignored_files == ["red/notes.txt"]
    assert all(e.split is None for e in index.entries)


def test_scan_presplit_folders(tmp_path):
    root = tmp_path / "split"
    make_image_dataset(root / "train", {"a": 4, "b": 4})
    make_image_dataset(root / "validation", {"a": 2, "b": 2})
    make_image_dataset(root / "test", {"a": 1, "b": 3})
    index = scan_dataset(root)
    assert index.layout == "presplit" and index.has_split
    assert index.classes == ["a", "b"]
    splits = [e.split for e in index.entries]
    assert splits.count("train") == 8 and splits.count("val") == 4 and splits.count("test") == 4
    split = split_indices(index.labels, index.classes, splits)
    assert split.source == "dataset"
    assert split.sizes() == {"train": 8, "val": 4, "test": 4}


def test_manifest_split_from_flora_json(tmp_path):
    root = make_image_dataset(tmp_path / "m", {"a": 3, "b": 3})
    splits = {
        "a/img_000.png": "train",
        "a/img_001.png": "val",
        "a/img_002.png": "test",
        "b/img_000.png": "train",
        "b/img_001.png": "valid",
        "b/img_002.png": "test",
    }
    (root / "flora.json").write_text(json.dumps({"name": "Manifest set", "splits": splits}))
    index = scan_dataset(root)
    assert index.layout == "manifest" and index.name == "Manifest set"
    split = split_indices(index.labels, index.classes, [e.split for e in index.entries])
    assert split.sizes() == {"train": 2, "val": 2, "test": 2}


def test_presplit_without_val_carves_it_from_train(tmp_path):
    root = tmp_path / "tt"
    make_image_dataset(root / "train", {"a": 10, "b": 10})
    make_image_dataset(root / "test", {"a": 2, "b": 2})
    index = scan_dataset(root)
    split = split_indices(index.labels, index.classes, [e.split for e in index.entries], val_fraction=0.2)
    assert split.sizes()["test"] == 4
    assert split.sizes()["val"] == 4 and split.sizes()["train"] == 16
    assert any("no val split" in note for note in split.notes)


@pytest.mark.parametrize("missing", ["nowhere", "file"])
def test_scan_errors_are_clear(tmp_path, missing):
    target = tmp_path / "nowhere"
    if missing == "file":
        target.write_text("x")
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(target)


def test_scan_of_a_folder_without_images(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match="no images found"):
        scan_dataset(tmp_path)


def test_a_flat_folder_of_photos_says_it_needs_class_folders(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"photo{i}.jpg")
    with pytest.raises(DatasetError, match=r"found 3 image\(s\) directly in .* but no class folders"):
        scan_dataset(tmp_path)


def test_fingerprint_changes_with_content_not_with_location(tiny_dataset, tmp_path):
    first = scan_dataset(tiny_dataset).fingerprint
    assert scan_dataset(tiny_dataset).fingerprint == first
    target = tiny_dataset / "red" / "img_000.png"
    stamp = time.time() + 5
    os.utime(target, (stamp, stamp))
    assert scan_dataset(tiny_dataset).fingerprint != first
    (tiny_dataset / "red" / "img_001.png").unlink()
    assert len({first, scan_dataset(tiny_dataset).fingerprint}) == 2


def test_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), [40, 20, 10, 100])
    classes = ["a", "b", "c", "d"]
    split = split_indices(labels, classes, val_fraction=0.15, test_fraction=0.15, seed=7)
    again = split_indices(labels, classes, val_fraction=0.15, test_fraction=0.15, seed=7)
    other = split_indices(labels, classes, val_fraction=0.15, test_fraction=0.15, seed=8)
    np.testing.assert_array_equal(split.test, again.test)
    assert not np.array_equal(split.test, other.test)
    everything = np.concatenate([split.train, split.val, split.test])
    assert len(everything) == len(labels) == len(set(everything.tolist()))
    counts = split.counts_by_class(labels, classes)
    assert counts["a"] == {"train": 28, "val": 6, "test": 6}
    assert counts["d"] == {"train": 70, "val": 15, "test": 15}
    assert split.source == "random" and split.notes == [small_test_note(len(split.test))]


@pytest.mark.parametrize(("per_class", "small"), [(20, True), (200, False)])
def test_a_small_test_split_says_what_its_accuracy_can_tell(per_class, small):
    labels = np.repeat(np.arange(4), per_class)
    split = split_indices(labels, ["a", "b", "c", "d"], seed=0)
    notes = [n for n in split.notes if n.startswith("Small test split")]
    assert bool(notes) == small == (len(split.test) < SMALL_TEST_SPLIT)
    if small:
        assert f"{len(split.test)} photos" in notes[0] and "±" in notes[0]
    assert small_test_note(37).startswith("Small test split: 37 photos, so one photo is 2.7 points")
    assert "±16 points" in small_test_note(37)  # 1.96 * sqrt(0.25 / 37)


def test_tiny_classes_go_to_train_with_a_note():
    labels = np.array([0] * 10 + [1] * 10 + [2] + [3, 3])
    split = split_indices(labels, ["a", "b", "solo", "pair"], seed=0)
    counts = split.counts_by_class(labels, ["a", "b", "solo", "pair"])
    assert counts["solo"] == {"train": 1, "val": 0, "test": 0}
    assert counts["pair"] == {"train": 1, "val": 0, "test": 1}
    assert any("'solo' has 1 image" in note for note in split.notes)
    assert any("'pair' has 2 images" in note for note in split.notes)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 0, 0, 0], "at least 2 classes"),
        ([0, 1], "too few images to make a val split"),
        ([0, 0, 1, 1], "too few images to make a val split"),
    ],
    ids=["one class", "one image each", "two images each"],
)
def test_split_errors(labels, message):
    with pytest.raises(DatasetError, match=message):
        split_indices(np.array(labels), ["a", "b"])


def test_list_and_resolve_datasets(tmp_path):
    make_image_dataset(tmp_path / "one", {"a": 2, "b": 2})
    make_image_dataset(tmp_path / "two", {"x": 1, "y": 1})
    (tmp_path / "not-a-dataset").mkdir()
    (tmp_path / ".cache").mkdir()
    assert [d.name for d in list_datasets(tmp_path)] == ["one", "two"]
    assert resolve_dataset_path("one", tmp_path) == (tmp_path / "one").resolve()
    assert resolve_dataset_path(str(tmp_path / "two"), "/nonexistent") == (tmp_path / "two").resolve()
    with pytest.raises(DatasetError, match="dataset not found"):
        resolve_dataset_path("three", tmp_path)

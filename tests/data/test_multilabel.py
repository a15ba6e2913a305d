"""Multi-label datasets on disk: label lists in compressed rows, the label file, the scan and its fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.data.datasets import DatasetError, scan_dataset
from core.data.multilabel import (
    LABEL_FILE,
    MULTI_LABEL,
    SINGLE_LABEL,
    LabelSets,
    check_label_name,
    label_set_ids,
    label_statistics,
    photos_of,
    write_label_file,
)
from tests.conftest import make_image_dataset
from tests.datafixtures import picture

NAMES = ["cat", "dog", "person"]
LISTS = [["cat"], ["dog", "person"], [], ["cat", "dog", "person"], ["person"], []]


def make_multilabel(root, lists=LISTS, names=NAMES, splits=None, size=32):
    """A multi-label dataset in core.data.multilabel's layout: images/ and labels.csv, photos made here."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, labels in enumerate(lists):
        rel = f"images/p{i:03d}.png"
        picture(i, (size, size)).save(root / rel)  # a distinct picture each
        rows.append((rel, labels, splits[i] if splits else None))
    write_label_file(root, rows, names)
    meta = {"task": MULTI_LABEL, "label_file": LABEL_FILE, "label_names": list(names)}
    (root / "flora.json").write_text(json.dumps(meta))
    return root


def test_label_sets_hold_lists_as_compressed_rows_and_give_dense_rows():
    sets = LabelSets.from_lists([[2, 0], [], [1], [0, 1, 2], [2, 2]], 3)
    assert sets.shape == (5, 3) and sets.lists() == [[0, 2], [], [1], [0, 1, 2], [2]]  # sorted, each label once
    assert sets.dense().tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1]]
    assert sets.dense([3, 1]).tolist() == [[1, 1, 1], [0, 0, 0]]
    assert sets.take([4, 1, 0]).lists() == [[2], [], [0, 2]]
    assert sets.take([1]).lists() == [[]]  # an empty list stays one
    assert sets.sizes().tolist() == [2, 0, 1, 3, 1]
    assert sets.positives().tolist() == [2, 2, 3] and sets.positives([0, 2]).tolist() == [1, 1, 1]
    co = sets.cooccurrence()
    assert co.tolist() == (sets.dense().T.astype(int) @ sets.dense().astype(int)).tolist()
    assert LabelSets.from_dense(sets.dense()).lists() == sets.lists()
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        LabelSets.from_lists([[3]], 3)


def test_a_label_name_that_would_break_the_label_file_is_refused():
    assert check_label_name("road") is None
    assert "separates labels" in check_label_name("a|b")
    assert check_label_name(" ") == "an empty label name"
    assert "starts or ends with a space" in check_label_name("road ")


def test_a_multilabel_dataset_scans_with_its_lists_and_keeps_photos_with_none(tmp_path):
    root = make_multilabel(tmp_path / "scenes")
    assert (root / LABEL_FILE).read_text().splitlines()[:4] == [
        "path,labels",
        "images/p000.png,cat",
        "images/p001.png,dog|person",
        "images/p002.png,",
    ]
    index = scan_dataset(root)
    assert index.task == MULTI_LABEL and index.multilabel and index.classes == NAMES
    assert [e.label for e in index.entries] == [-1] * 6  # the labels are the index's targets
    assert [[NAMES[j] for j in row] for row in index.targets.lists()] == [sorted(x) for x in LISTS]
    assert index.class_counts() == {"cat": 2, "dog": 2, "person": 3}
    assert index.layout == "classes" and not index.has_split
    assert photos_of(index, "person") == ["images/p001.png", "images/p003.png", "images/p004.png"]
    ids, names = label_set_ids(index.targets, index.classes)
    assert names[ids[2]] == "none of these" and ids[2] == ids[5] and names[ids[1]] == "dog|person"

    stats = label_statistics(index.targets, index.classes)
    assert stats["per_label"] == {"cat": 2, "dog": 2, "person": 3}
    assert stats["labels_per_photo"] == {0: 2, 1: 2, 2: 1, 3: 1} and stats["without_label"] == 2
    assert stats["pairs"][0] == ("dog", "person", 2) and ("cat", "dog", 1) in stats["pairs"]


def test_relabelling_a_photo_is_a_new_fingerprint_and_a_single_label_one_is_unchanged(tmp_path):
    first = scan_dataset(make_multilabel(tmp_path / "a")).fingerprint
    assert scan_dataset(tmp_path / "a").fingerprint == first  # stable
    relabelled = [list(x) for x in LISTS]
    relabelled[2] = ["cat"]
    write_label_file(tmp_path / "a", [(f"images/p{i:03d}.png", x, None) for i, x in enumerate(relabelled)], NAMES)
    assert scan_dataset(tmp_path / "a").fingerprint != first

    single = make_image_dataset(tmp_path / "single", {"red": 3, "blue": 3})
    index = scan_dataset(single)
    assert index.task == SINGLE_LABEL and not index.multilabel and index.targets is None
    assert sorted(set(index.labels.tolist())) == [0, 1]


def test_a_given_split_column_makes_a_manifest_layout(tmp_path):
    root = make_multilabel(tmp_path / "s", splits=["train", "train", "val", "test", "train", "test"])
    index = scan_dataset(root)
    assert index.layout == "manifest" and index.has_split
    assert [e.split for e in index.entries] == ["train", "train", "val", "test", "train", "test"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root: (root / LABEL_FILE).write_text("path,labels\nimages/p000.png,cat|horse\n"), "unknown label"),
        (lambda root: (root / LABEL_FILE).write_text("path,labels\nimages/p000.png,cat\nimages/p000.png,dog\n"),
         "listed twice"),
        (lambda root: (root / LABEL_FILE).write_text("path,labels\n../outside.png,cat\n"), "not a path inside"),
        (lambda root: (root / LABEL_FILE).write_text("file,tags\nimages/p000.png,cat\n"), "must start with the header"),
        (lambda root: (root / LABEL_FILE).unlink(), "cannot be read"),
        (lambda root: (root / LABEL_FILE).write_text("path,labels\nimages/gone.png,cat\n"), "no photo listed"),
        (lambda root: (root / "flora.json").write_text(json.dumps({"task": MULTI_LABEL})), "lists no label_names"),
    ],
)  # fmt: skip
def test_a_broken_label_file_is_named_with_its_line(tmp_path, change, message):
    root = make_multilabel(tmp_path / "broken")
    change(root)
    with pytest.raises(DatasetError, match=message):
        scan_dataset(root)


def test_a_listed_photo_that_is_missing_is_ignored_and_named(tmp_path):
    root = make_multilabel(tmp_path / "m")
    (root / "images" / "p004.png").unlink()
    index = scan_dataset(root)
    assert len(index.entries) == 5 and index.ignored_files == ["images/p004.png (listed in labels.csv, not found)"]


def test_dense_rows_are_cheap_for_many_photos_and_labels():
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 4, 100_000)
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    sets = LabelSets(indptr, rng.integers(0, 1000, int(sizes.sum())), 1000)
    assert sets.indices.nbytes + sets.indptr.nbytes < 2_000_000  # a dense uint8 matrix would be 100 MB
    rows = rng.choice(len(sets), 64, replace=False)
    expected = np.zeros((64, 1000), dtype=np.uint8)
    for r, i in enumerate(rows):
        expected[r, sets.indices[indptr[i] : indptr[i + 1]]] = 1
    assert np.array_equal(sets.dense(rows), expected)
    assert sets.positives().sum() == len(sets.indices)

"""The health check on a multi-label dataset: labels no photo has, rare labels, photos with none, uneven labels,
copies with other label lists, and the split it measures leaks under (iterative stratification, as training)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.data.datasets import scan_dataset
from core.data.multilabel import LABEL_FILE, MULTI_LABEL, write_label_file
from core.data.multilabel_split import split_multilabel
from core.health import check_dataset
from core.settings.config import TrainConfig
from tests.datafixtures import picture

NAMES = ["sky", "tree", "water", "bird", "boat"]  # boat: no photo has it


@pytest.fixture(scope="module")
def report_and_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlhealth") / "scenes"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(60):
        labels = (["sky"] if i % 2 == 0 else []) + (["tree"] if i % 3 == 0 else []) + (["water"] if i < 30 else [])
        labels += ["bird"] if i in (5, 17, 41) else []  # rare: 3 photos
        labels = [] if i >= 54 else labels  # 6 photos with none (and those with none by the rule above)
        rel = f"images/p{i:03d}.jpg"
        picture(1000 + i, (48, 40)).save(root / rel, quality=92)
        rows.append((rel, labels, None))
    shutil.copyfile(root / "images/p001.jpg", root / "images/copy.jpg")  # the same picture, another list
    rows.append(("images/copy.jpg", ["sky", "tree"], None))
    write_label_file(root, rows, NAMES)
    (root / "flora.json").write_text(json.dumps({"task": MULTI_LABEL, "label_file": LABEL_FILE, "label_names": NAMES}))
    return check_dataset(root), root


def test_label_findings(report_and_root):
    report, _ = report_and_root
    kinds = [f.kind for f in report.findings]
    assert "class_imbalance" not in kinds and "small_class" not in kinds  # the single-label checks do not run
    empty = report.by_kind("empty_label")
    assert empty.severity == "warning" and "1 label that no readable photo has: boat" in empty.title
    small = report.by_kind("small_label")
    assert "bird (3)" in small.title and sorted(small.files) == ["images/p005.jpg", "images/p017.jpg",
                                                                 "images/p041.jpg"]  # fmt: skip
    none = report.by_kind("no_label")
    assert none.severity == "info" and "images/p054.jpg" in none.files and "images/p001.jpg" not in none.files
    uneven = report.by_kind("label_imbalance")
    assert "the rarest on 3" in uneven.title and "bird (3)" in uneven.detail


def test_a_copy_with_another_label_list_is_a_conflict_named_by_its_lists(report_and_root):
    report, _ = report_and_root
    conflict = report.by_kind("conflicting_labels")
    assert conflict.severity == "error" and conflict.groups == [["images/copy.jpg", "images/p001.jpg"]]
    assert conflict.captions == {"images/copy.jpg": "sky|tree", "images/p001.jpg": "water"}


def test_counts_and_split_are_by_label_and_by_iterative_stratification(report_and_root):
    report, root = report_and_root
    index = scan_dataset(root)
    assert report.stats["class_counts"] == index.class_counts()
    assert report.stats["class_counts"]["bird"] == 3 and report.stats["class_counts"]["boat"] == 0
    config = TrainConfig()
    split = split_multilabel(index.targets, index.classes, None, config.val_fraction, config.test_fraction, config.seed)
    assert report.stats["split"]["sizes"] == split.sizes()
    assert any("no photo at all" in n or "that no photo has: boat" in n for n in report.stats["split"]["notes"])
    assert report.table.set_index("path").loc["images/copy.jpg", "class"] == "sky|tree"  # its list
    assert np.array_equal(report.table["readable"].to_numpy(), np.ones(61, dtype=bool))


def test_too_few_photos_to_split_is_said_for_the_label_file_not_class_folders(tmp_path):
    root = tmp_path / "two"
    (root / "images").mkdir(parents=True)
    for i in range(2):
        picture(i, (32, 32)).save(root / f"images/p{i}.jpg")
    write_label_file(root, [("images/p0.jpg", ["a"], None), ("images/p1.jpg", ["a", "b"], None)], ["a", "b"])
    (root / "flora.json").write_text(
        json.dumps({"task": MULTI_LABEL, "label_file": LABEL_FILE, "label_names": ["a", "b"]})
    )
    finding = check_dataset(root).by_kind("cannot_train")
    assert "at least 3 photos" in finding.title and finding.files == [LABEL_FILE]
    assert "classes" not in finding.detail

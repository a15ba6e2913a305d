"""The multi-label bench's data: a label per kind and quadrant shown, the single-label twin on the same mosaics, and
label lists that keep every photo's own class."""

from __future__ import annotations

import csv

import numpy as np

from core.bench import multilabel
from core.bench.mosaics import draw_mosaics, photos_by_kind
from tests.conftest import require_flowers


def test_quadrant_labels_name_every_cell_shown_and_the_twin_its_top_left(tmp_path):
    kinds = ["daisy", "rose", "tulip"]
    made = draw_mosaics(photos_by_kind(require_flowers(), kinds), tmp_path / "m", 30, seed=3, cell=16, cells=True)
    multi, single, labels = multilabel.quadrant_tables(made, tmp_path)
    with open(multi) as f:
        rows = list(csv.DictReader(f))
    with open(single) as f:
        twins = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [r["image"] for r in twins] == [name for name, _ in made]
    for (_, cells), row, twin in zip(made, rows, twins, strict=True):
        shown = {f"{k}_{multilabel.QUADRANTS[j]}" for j, k in enumerate(cells) if k is not None}
        assert set(row["tags"].split()) == shown and twin["label"] == (cells[0] or "none")
    assert set(labels) <= {f"{k}_{q}" for k in kinds for q in multilabel.QUADRANTS} and len(labels) > 6
    plain = draw_mosaics(photos_by_kind(require_flowers(), kinds), tmp_path / "p", 30, seed=3, cell=16)
    assert [sorted({k for k in cells if k}) for _, cells in made] == [labels for _, labels in plain]  # the same draw


def test_label_lists_keep_each_photos_class_and_add_a_few_by_zipf():
    lists = multilabel.label_lists(5_000, 1_000, seed=1)
    assert all(i % 1_000 in labels and 1 <= len(labels) <= 3 for i, labels in enumerate(lists))
    counts = np.bincount([j for labels in lists for j in labels], minlength=1_000)
    assert counts[0] > 5 * np.median(counts)  # the most frequent label by far: labels co-occur with it

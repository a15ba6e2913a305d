"""core.data.unlabelled's record: rows in the data folder's shared store, imported from the files kept before it."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from core.data.datasets import LABELLED_IN_FLORA, META_FILE, DatasetError
from core.data.unlabelled import Unlabelled, labelled_file
from core.fileio import write_json_atomic


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data" / "flowers"
    for path in ("rose/0.png", "daisy/0.png", "unlabelled/a.png", "unlabelled/b.png", "unlabelled/c.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (200, 30, 30)).save(root / path)
    return root


def test_a_record_kept_before_the_store_is_imported_once(dataset, tmp_path):
    data_root = tmp_path / "data"
    old = {
        "dataset": str(dataset),
        "photos": {
            "unlabelled/a.png": {"label": "rose", "to": "rose/a.png", "at": 1.0, "by": "alice"},
            "unlabelled/b.png": {"label": None, "at": 2.0, "by": "bob"},
        },
    }
    write_json_atomic(labelled_file(data_root, dataset), old)
    kept = Unlabelled.load(data_root, dataset)
    assert kept.labelled == {"unlabelled/a.png": "rose"} and kept.set_aside == ["unlabelled/b.png"]
    assert kept.pending == ["unlabelled/c.png"] and kept.record["unlabelled/a.png"]["by"] == "alice"
    write_json_atomic(labelled_file(data_root, dataset), {"dataset": str(dataset), "photos": {}})  # after: not read
    assert Unlabelled.load(data_root, dataset).labelled == {"unlabelled/a.png": "rose"}


def test_a_photo_two_people_label_at_once_is_labelled_once(dataset, tmp_path):
    """Both saw it waiting; the second to press is told who labelled it, and leaves no second copy."""
    data_root = tmp_path / "data"
    alice, bob = Unlabelled.load(data_root, dataset), Unlabelled.load(data_root, dataset)
    copied = alice.label("unlabelled/a.png", "rose", ["daisy", "rose"], by="alice")
    with pytest.raises(DatasetError, match="labelled as rose by alice meanwhile"):
        bob.label("unlabelled/a.png", "daisy", ["daisy", "rose"], by="bob")
    assert sorted(p.name for p in (dataset / "daisy").iterdir()) == ["0.png"]  # bob's copy taken back
    assert bob.record["unlabelled/a.png"]["label"] == "rose"
    meta = json.loads((dataset / META_FILE).read_text())
    assert meta[LABELLED_IN_FLORA] == [copied]
    bob.undo("unlabelled/a.png")  # undo takes back the label as it stands, whoever gave it
    assert not (dataset / copied).exists() and LABELLED_IN_FLORA not in json.loads((dataset / META_FILE).read_text())
    assert "unlabelled/a.png" in Unlabelled.load(data_root, dataset).pending

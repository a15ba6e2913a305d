"""core.data.unlabelled's record: rows in the data folder's shared store, imported from the files kept before it."""

from __future__ import annotations

import json
import time

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


def test_the_dataset_before_photos_were_labelled_is_found_again_by_their_dates(dataset, tmp_path):
    """A run made before some photos were labelled in Flora finds its own photos by leaving those out (walk 41: an
    older run's analysis failed as 'dataset changed'); with no date kept (labelled before dates were), the copy's
    status change time dates it."""
    from core.data.datasets import scan_dataset
    from core.data.unlabelled import LABELLED_IN_FLORA_AT, before_labelling

    waiting = Unlabelled.load(tmp_path / "data", dataset)
    first = waiting.label("unlabelled/a.png", "rose", ["daisy", "rose"])
    then, made = scan_dataset(dataset), time.time()
    time.sleep(0.05)
    later = [
        waiting.label("unlabelled/b.png", "daisy", ["daisy", "rose"]),
        waiting.label("unlabelled/c.png", "rose", ["daisy", "rose"]),
    ]
    now = scan_dataset(dataset)
    assert now.fingerprint != then.fingerprint and set(
        json.loads((dataset / META_FILE).read_text())[LABELLED_IN_FLORA_AT]
    ) == {first, *later}
    earlier = before_labelling(now, made)
    assert earlier.fingerprint == then.fingerprint and [e.path for e in earlier.entries] == [
        e.path for e in then.entries
    ]
    assert before_labelling(then, made) is None  # nothing labelled since: nothing to leave out
    meta = json.loads((dataset / META_FILE).read_text())
    del meta[LABELLED_IN_FLORA_AT]
    (dataset / META_FILE).write_text(json.dumps(meta))
    assert before_labelling(scan_dataset(dataset), made).fingerprint == then.fingerprint
    waiting.undo("unlabelled/c.png")
    assert later[1] not in json.loads((dataset / META_FILE).read_text()).get(LABELLED_IN_FLORA_AT, {})

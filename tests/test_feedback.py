"""core.feedback: who gave each photo is a row in the data folder's shared store, imported from feedback.json."""

from __future__ import annotations

from core.feedback import GIVERS_FILE, add_feedback, feedback_dir, list_feedback
from core.fileio import write_bytes_atomic, write_json_atomic
from tests.datafixtures import jpeg_bytes


def test_givers_kept_before_the_store_are_imported_once(tmp_path):
    data, dataset = tmp_path / "data", tmp_path / "flowers"
    dataset.mkdir()
    folder = feedback_dir(data, dataset)
    write_bytes_atomic(folder / "train" / "rose" / "0123456789abcdef.jpg", jpeg_bytes(1))
    write_json_atomic(folder / GIVERS_FILE, {"dataset": str(dataset), "by": {"0123456789abcdef": "alice"}})
    [old] = list_feedback(data, dataset)
    assert old.by == "alice" and old.label == "rose"
    new = add_feedback(data, dataset, ["rose", "tulip"], "tulip", jpeg_bytes(2), by="bob")
    write_json_atomic(folder / GIVERS_FILE, {"by": {}})  # written after the import: never read
    assert {(p.sha256[:16], p.by) for p in list_feedback(data, dataset)} == {
        ("0123456789abcdef", "alice"),
        (new.sha256[:16], "bob"),
    }

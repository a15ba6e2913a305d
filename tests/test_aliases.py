"""core.serving.aliases: rows in the run store's shared database, imported from aliases.json, with a version the
model server polls."""

from __future__ import annotations

from core.fileio import write_json_atomic
from core.runs.record import MODEL_FILE
from core.runs.store import RunStore
from core.serving.aliases import ALIASES_FILE, AliasStore, resolve


def _runs(root, *run_ids):
    store = RunStore(root)
    for run_id in run_ids:
        store.create(run_id, {"config": {}})
        (store.run_dir(run_id) / MODEL_FILE).write_bytes(b"")  # a saved model: what an alias may point at
    return store


def test_aliases_kept_before_the_store_are_imported_and_moves_change_the_stamp(tmp_path):
    store = _runs(tmp_path / "models", "aaa111", "bbb222")
    write_json_atomic(
        tmp_path / "models" / ALIASES_FILE,
        {"production": {"run_id": "aaa111", "updated_at": 5.0, "previous": None}, "broken": {"x": 1}},
    )
    aliases = AliasStore(store.root)
    before = aliases.stamp()
    assert aliases.all() == {"production": {"run_id": "aaa111", "updated_at": 5.0, "previous": None}}
    assert resolve(store, "production").run.run_id == "aaa111" and aliases.stamp() == before  # reads: no change
    entry = aliases.set("production", "bbb222")
    assert entry["previous"] == "aaa111" and aliases.get("production") == "bbb222"
    moved = aliases.stamp()
    assert moved != before
    assert aliases.remove("production") and not aliases.remove("production")
    assert aliases.stamp() not in (before, moved) and aliases.all() == {}

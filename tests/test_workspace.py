"""The app's memory between sessions: the dataset picked last and folders used from outside data/."""

from __future__ import annotations

import shutil

import pytest

from core import workspace
from core.shared_store import SharedStore


def test_folders_outside_data_are_remembered_most_recent_first(tmp_path):
    data, a, b = tmp_path / "data", tmp_path / "a", tmp_path / "b"
    for folder in (data / "inside", a, b):
        folder.mkdir(parents=True)
    assert workspace.last_dataset(data) is None and workspace.remembered_folders(data) == []
    workspace.remember_dataset(data, a)
    workspace.remember_dataset(data, b)
    workspace.remember_dataset(data, data / "inside")  # under data/: the current one, not a "folder"
    assert workspace.last_dataset(data) == str((data / "inside").resolve())
    assert workspace.remembered_folders(data) == [str(b.resolve()), str(a.resolve())]
    workspace.remember_dataset(data, a)
    assert workspace.remembered_folders(data) == [str(a.resolve()), str(b.resolve())]


def test_a_folder_gone_from_disk_is_not_offered_and_forget_drops_one(tmp_path):
    data, a, b = tmp_path / "data", tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    workspace.remember_dataset(data, a)
    workspace.remember_dataset(data, b)
    shutil.rmtree(b)
    assert workspace.last_dataset(data) is None
    assert workspace.remembered_folders(data) == [str(a.resolve())]
    workspace.forget_folder(data, a)
    assert workspace.remembered_folders(data) == []


def test_the_list_is_capped_and_an_unchanged_pick_writes_nothing(tmp_path):
    data = tmp_path / "data"
    folders = [tmp_path / f"f{i}" for i in range(workspace.MAX_FOLDERS + 3)]
    for folder in folders:
        folder.mkdir()
        workspace.remember_dataset(data, folder)
    remembered = workspace.remembered_folders(data)
    assert len(remembered) == workspace.MAX_FOLDERS and remembered[0] == str(folders[-1].resolve())
    writes = SharedStore.of_data(data).version(workspace.WORKSPACE)
    workspace.remember_dataset(data, folders[-1])
    workspace.set_preference(data, "teaching", workspace.preference(data, "teaching"))
    assert SharedStore.of_data(data).version(workspace.WORKSPACE) == writes


@pytest.mark.parametrize("junk", ["{not json", '["a list"]', '{"current": 5, "folders": "x"}'])
def test_a_damaged_workspace_file_from_before_the_store_imports_as_empty(tmp_path, junk):
    data, a = tmp_path / "data", tmp_path / "a"
    a.mkdir()
    (data / ".flora").mkdir(parents=True)
    (data / ".flora" / workspace.STATE_FILE).write_text(junk)
    assert workspace.last_dataset(data) is None and workspace.remembered_folders(data) == []
    workspace.remember_dataset(data, a)
    assert workspace.remembered_folders(data) == [str(a.resolve())]


def test_workspaces_kept_before_the_store_are_imported_once(tmp_path):
    """An upgraded Flora finds each person's dataset, folders, settings and preferences where they left them."""
    import hashlib

    from core.fileio import write_json_atomic

    data, a, b, flowers = tmp_path / "data", tmp_path / "a", tmp_path / "b", tmp_path / "flowers"
    for folder in (a, b, flowers):
        folder.mkdir()
    local = {"current": str(a), "folders": [str(a), str(b)], "preferences": {"teaching": True}}
    write_json_atomic(data / ".flora" / workspace.STATE_FILE, local)
    alices = data / ".flora" / workspace.PEOPLE_DIR / f"{hashlib.sha256(b'alice').hexdigest()[:16]}.json"
    write_json_atomic(alices, {"current": str(b), "train_settings": {str(flowers): {"dropout": 0.8}}})
    assert workspace.last_dataset(data) == str(a) and workspace.remembered_folders(data) == [str(a), str(b)]
    assert workspace.preference(data, "teaching") is True
    assert workspace.last_dataset(data, "alice") == str(b)
    assert workspace.train_settings(data, flowers, "alice") == {"dropout": 0.8}
    workspace.remember_dataset(data, b)  # the newest now, before the imported ones
    assert workspace.remembered_folders(data) == [str(b), str(a)]
    write_json_atomic(data / ".flora" / workspace.STATE_FILE, {"current": None})  # after the import: not read
    assert workspace.last_dataset(data) == str(b)


def test_each_person_has_their_own_workspace(tmp_path):
    """Before (walk): one student's form came out with "dropout 0.8 · smoothing 0.3" set by two others."""
    from core import workspace

    data = tmp_path / "data"
    flowers, cats = tmp_path / "flowers", tmp_path / "cats"
    flowers.mkdir(), cats.mkdir()
    workspace.remember_train_settings(data, flowers, {"dropout": 0.8}, person="alice")
    workspace.remember_dataset(data, cats, person="alice")
    workspace.set_preference(data, "teaching", True, person="alice")
    assert workspace.train_settings(data, flowers, person="bob") is None
    assert (
        workspace.last_dataset(data, person="bob") is None
        and workspace.preference(data, "teaching", person="bob") is None
    )
    assert workspace.train_settings(data, flowers, person="alice") == {"dropout": 0.8}
    assert workspace.last_dataset(data, person="alice") == str(cats.resolve())
    workspace.remember_dataset(data, flowers)  # the person at this machine: the app not shared, and the CLI
    assert workspace.last_dataset(data, person="root") == str(flowers.resolve())
    workspace.forget_person(data, "alice")
    assert workspace.last_dataset(data, person="alice") is None and workspace.last_dataset(data) == str(
        flowers.resolve()
    )

"""The app's memory between sessions: the dataset picked last and folders used from outside data/."""

from __future__ import annotations

import shutil

from core import workspace


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
    stamp = workspace.state_file(data).stat().st_mtime_ns
    workspace.remember_dataset(data, folders[-1])
    assert workspace.state_file(data).stat().st_mtime_ns == stamp


def test_a_damaged_state_file_is_treated_as_empty(tmp_path):
    data, a = tmp_path / "data", tmp_path / "a"
    a.mkdir()
    workspace.state_file(data).parent.mkdir(parents=True)
    for junk in ("{not json", '["a list"]', '{"current": 5, "folders": "x"}'):
        workspace.state_file(data).write_text(junk)
        assert workspace.last_dataset(data) is None and workspace.remembered_folders(data) == []
    workspace.remember_dataset(data, a)
    assert workspace.remembered_folders(data) == [str(a.resolve())]


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
    assert workspace.state_file(data) == workspace.state_file(data, "local") != workspace.state_file(data, "alice")

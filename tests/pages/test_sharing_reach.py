"""A shared Flora keeps to its data roots and to each person's own (issue 38, sections 2 and 4): a dataset folder
linked in from elsewhere is neither offered nor read, an import from a server folder says the same whether the
folder exists or not, a classmate's run gets no task from a student, downloads are an admin's, and server paths
show relative to the data folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.paths import imagenet_weights_cached
from pages.ui.navigation import page_file
from tests.conftest import copy_run, make_image_dataset
from tests.pages.conftest import APP, texts

TOKEN, ADMIN_TOKEN = "class-token-12345", "oak-admin-token-456"


def errors(at) -> list[str]:
    """The page's error messages as they read (user strings in them are Markdown-escaped)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]


@pytest.fixture
def shared(workspace, monkeypatch, tmp_path):
    """A shared Flora (the access token) on a data folder of its own, holding `flowers` and `linkds`, a link to a
    dataset outside the data folder; the runs are the workspace's (their photos lie outside this data folder).
    Returns a function signing a person in (admin with `admin=True`) on a fresh AppTest."""
    data = tmp_path / "data"
    make_image_dataset(data / "flowers", {"rose": 4, "tulip": 4})
    outside = make_image_dataset(tmp_path / "outside" / "secret", {"keys": 4, "notes": 4})
    (data / "linkds").symlink_to(outside)
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("FLORA_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("FLORA_DATA_ROOTS", raising=False)
    monkeypatch.delenv("FLORA_ADMINS", raising=False)
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))

    def sign_in(name: str = "Ash", admin: bool = False) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.text_input(key="flora_token_field").set_value(ADMIN_TOKEN if admin else TOKEN)
        at.text_input(key="flora_name_field").set_value(name)
        at.text_input(key="flora_passphrase_field").set_value("pikachu")
        at.button[0].click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        return at

    sign_in.data = data
    sign_in.outside = outside
    return sign_in


def test_a_dataset_folder_linked_from_outside_is_not_offered_anywhere(shared):
    """Before (probe): `data/linkds -> /elsewhere` was in every picker, a sweep read its photos, and the Train page
    failed with an error id when it was picked."""
    at = shared()
    at.switch_page(page_file("train")).run()
    at.session_state["train_tab"] = "New run"
    at.run()
    assert not at.exception
    offered = at.selectbox(key="train_dataset").options
    assert len(offered) == 1 and "flowers" in offered[0] and "linkds" not in " ".join(offered)
    assert "Something went wrong" not in texts(at)
    at.switch_page(page_file("dataset")).run()
    assert not at.exception
    assert [o for o in at.selectbox(key="dataset_pick").options if "linkds" in o or "secret" in o] == []
    # typed by hand: refused by the link rule, naming the link and not where it leads
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(shared.data / "linkds")).run()
    [refused] = [e for e in errors(at) if "linkds" in e]
    assert "is a link pointing outside the folders Flora may read datasets from" in refused
    assert str(shared.outside) not in refused and not at.get("imgs")


def test_a_folder_outside_the_roots_reads_the_same_whether_it_exists_or_not(shared, tmp_path):
    """Before (probe): the Dataset page said "No folder at /root/nonexistent" but scanned /root/.ssh, and the Oxford
    import answered "missing imagelabels.mat" for one and "not found" for the other."""
    at = shared()
    at.switch_page(page_file("dataset")).run()
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    existing, missing = tmp_path / "outside", tmp_path / "nothing-here"
    said = []
    for folder in (existing, missing):
        at.text_input(key="dataset_folder").set_value(str(folder)).run()
        said.append([e.replace(str(folder), "FOLDER") for e in errors(at)])
    assert said[0] == said[1] and len(said[0]) == 1 and "is outside the folders" in said[0][0]
    at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
    oxford = []
    for folder in (existing, missing):
        at.text_input(key="dataset_oxford_src").set_value(str(folder)).run()  # refused as typed
        assert next(b for b in at.button if b.label == "Import Oxford 102").disabled
        oxford.append([e.replace(str(folder), "FOLDER") for e in errors(at)])
    assert oxford[0] == oxford[1] and "is not a folder Flora may import from" in oxford[0][0]
    assert str(tmp_path) not in oxford[0][0]  # the allowed folders named, as a shared Flora shows them


def test_a_runs_photos_outside_the_roots_are_not_shown(shared):
    """The workspace's run was trained on photos outside this shared Flora's data folder (the command line may):
    its top losses are not read."""
    at = shared()
    at.switch_page(page_file("evaluate")).run()
    at.session_state["evaluate_tab"] = "Top losses"
    at.run()
    assert not at.exception
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert captions and all("outside the data folders this Flora reads" in c for c in captions)


def _signed_in(workspace, name: str, admin: bool, page: str, **state) -> AppTest:
    """A person signed in (their session opened as the sign-in page would), on `page`."""
    from core.sharing import User, sessions

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["flora_user"] = User(name, name, admin=admin, how="token")
    at.session_state["flora_session"] = sessions.open_session(workspace["data"], name, admin=admin)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page_file(page)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_student_starts_no_task_on_a_classmates_run(workspace, monkeypatch, tmp_path):
    """Before (probe): a student's "Find suspected label errors" on a classmate's run wrote into that run's folder.
    Now only its owner (or an admin) starts or stops one; the student is offered their own copy of the run."""
    from core.results import tasks as run_tasks
    from core.runs.store import RunStore
    from tests.conftest import copy_run

    store = RunStore(tmp_path / "models")
    copy_run(workspace["store"].run_dir(workspace["run_id"]), store.run_dir(workspace["run_id"]))
    run = store.get(workspace["run_id"])
    assert run.owner == "local" and not (run.directory / "label_issues.json").exists()
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(store.root))
    gary = _signed_in(workspace, "Gary", False, "explore", explore_tab="Suspected label errors")
    assert "This is local's run: only they (or an admin) can compute this" in texts(gary)
    assert not [b for b in gary.button if b.label == "Find suspected label errors"]
    [link] = [p for p in gary.get("page_link") if "your own copy" in p.proto.label]
    assert workspace["run_id"] in link.proto.page or workspace["run_id"] in str(link.proto)
    assert run_tasks.task_status(run, "label-issues") is None
    oak = _signed_in(workspace, "Oak", True, "explore", explore_tab="Suspected label errors")
    assert [b for b in oak.button if b.label == "Find suspected label errors"]  # an admin may


def test_downloads_are_an_admins_and_only_their_starter_or_an_admin_stops_one(workspace, monkeypatch, tmp_path):
    """Before (probe): any student could start the 229/345 MB downloads, and every student saw a download's Stop."""
    import time

    from core.importers import tasks as dataset_tasks
    from core.processes import JobState

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    workspace = {**workspace, "data": data}

    def on_downloads(name: str, admin: bool) -> AppTest:
        at = _signed_in(workspace, name, admin, "dataset")
        at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
        assert not at.exception
        return at

    gary = on_downloads("Gary", False)
    assert not [b for b in gary.button if b.label.startswith("Get ")]
    assert "downloads are for whoever runs it" in texts(gary)
    oak = on_downloads("Oak", True)
    assert {b.label for b in oak.button} >= {"Get tf_flowers", "Get oxford102"}
    # a download under way (its process just starting): its progress for everyone, its Stop for its owner or an admin
    folder = dataset_tasks._folder(dataset_tasks.tasks_dir(data) / "20260101-000000-tf_flowers-abcdef")
    folder.directory.mkdir(parents=True)
    folder.write(dataset_tasks.TaskStatus(state=JobState.RUNNING, key="tf_flowers", queued_at=time.time(), owner="Oak"))
    assert not [b for b in on_downloads("Gary", False).button if b.label == "Stop"]
    assert [b for b in on_downloads("Oak", True).button if b.label == "Stop"]


def test_server_paths_show_from_the_data_folder_on(shared):
    """Before (probe): Home's folder column, the Train command, the Keras cache and the Workspace panel showed
    the server's paths to every student."""
    at = shared()
    server = str(shared.data.parent)  # the server's own layout above the data folder
    home = at.dataframe[0].value if at.dataframe else None
    assert home is not None and list(home["path"]) == ["data/flowers"]
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert server not in sidebar and "this server's data folder" in sidebar
    at.switch_page(page_file("train")).run()
    at.session_state["train_tab"] = "New run"
    at.run()
    command = next(c.value for c in at.code if "-m core train" in c.value)
    assert command.startswith("python -m core train flowers ") and server not in command
    assert server not in texts(at) and str(Path.home()) + "/.keras" not in texts(at)
    if not imagenet_weights_cached():  # the form says where Keras keeps them, in words the admin knows
        assert "Keras's cache on the server" in texts(at)


def test_a_link_to_train_a_run_on_photos_outside_the_roots_says_so(shared, workspace):
    """The Train page's "train again" link reads the run's dataset: on a shared Flora not outside its roots."""
    at = shared()
    at.switch_page(page_file("train"))
    at.query_params["train_prefill"] = workspace["run_id"]
    at.run()
    assert not at.exception
    assert any("dataset is outside the data folders this Flora reads: nothing to fill" in w.value for w in at.warning)
    assert "linkds" not in " ".join(at.selectbox(key="train_dataset").options)


def test_short_folders_and_refusals_and_logs_show_no_server_path(shared, workspace, monkeypatch, tmp_path):
    """Walk of issue 38, items 1 and 12: `data/flowers30` (the hint's own spelling) was refused as
    "/work/walk38/data/flowers30 is outside..."; `~` answered "/root is outside..."; a run's log showed the data
    folder's server path."""
    models = tmp_path / "models"
    run_dir = copy_run(workspace["models"] / workspace["run_id"], models / workspace["run_id"])
    with (run_dir / "train.log").open("a") as log:  # the lines the walk saw, on this data folder
        log.write(f"run x: 150 images in 2 classes from {shared.data / 'flowers'}\n")
        log.write(f"decoding 150 photos at 224 px into {shared.data / '.cache' / '291a'} (3 MB)\n")
    monkeypatch.setenv("FLORA_MODELS_DIR", str(models))
    at = shared()
    server = str(shared.data.parent)
    at.switch_page(page_file("dataset")).run()
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    for typed in ("data/flowers", "flowers"):
        at.text_input(key="dataset_folder").set_value(typed).run()
        assert not at.exception and not at.error, errors(at)
        assert [m.value for m in at.metric if m.label == "Classes"] == ["2"]
    for typed, named in (("~", "~"), ("data/linkds", "data/linkds")):
        at.text_input(key="dataset_folder").set_value(typed).run()
        [refused] = errors(at)
        assert refused.startswith(f"{named} is ") and "(data)" in refused, refused
        assert server not in refused and str(Path.home()) + " " not in refused and str(shared.outside) not in refused
    at.switch_page(page_file("train"))
    at.query_params["train_run"] = workspace["run_id"]
    at.run()
    [log] = [c.value for c in at.code if "images in" in c.value]
    assert "from data/flowers" in log and "into data/.cache/291a" in log and server not in log, log


def test_an_admin_is_told_which_linked_dataset_no_list_offers(shared):
    """Walk of issue 38, item 13: `data/linkds` was in no picker and no view, with no note for the instructor."""
    student = shared()
    student.switch_page(page_file("dataset")).run()
    assert not [w for w in student.warning if "linkds" in w.value]
    admin = shared("Oak", admin=True)
    admin.switch_page(page_file("dataset")).run()
    [note] = [w.value for w in admin.warning if "linkds" in w.value]
    assert note.startswith("Not offered to anyone: `linkds` in the data folder is a link to a folder outside")
    assert str(shared.outside) not in note and "FLORA_DATA_ROOTS" in note

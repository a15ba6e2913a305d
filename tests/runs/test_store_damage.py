"""A run store with a damaged folder: listed as unreadable with why, never a traceback; reads never write;
ids and aliases that are paths refused."""

from __future__ import annotations

import hashlib
import json

import pytest

from core.cli import main as cli
from core.processes import JobState
from core.runs.record import RunNotFound, RunUnreadable, check_run_id
from core.runs.store import RunStore
from core.serving.aliases import AliasError, AliasStore
from tests.conftest import copy_run


def _record(name="ds"):
    return {
        "config": {"epochs": 2, "image_size": 32, "weights": "none"},
        "classes": ["a", "b"],
        "dataset": {"path": f"/data/{name}", "name": name},
    }


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def damaged(tmp_path):
    """A store with one good run and four damaged ones, as a crash or a hand edit leaves them."""
    store = RunStore(tmp_path / "models")
    for run_id in ("good", "statuslist", "badtype", "cutconfig", "cutstatus"):
        store.create(run_id, _record())
        store.set_status(run_id, state=JobState.DONE, finished_at=1.0, accuracy=0.5)
    (store.run_dir("statuslist") / "status.json").write_text("[1, 2, 3]\n")
    config = json.loads((store.run_dir("badtype") / "config.json").read_text())
    config["config"]["image_size"] = "<str>"
    (store.run_dir("badtype") / "config.json").write_text(json.dumps(config))
    for run_id, name in (("cutconfig", "config.json"), ("cutstatus", "status.json")):
        path = store.run_dir(run_id) / name
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
    return store


def test_damaged_runs_are_listed_apart_with_why(damaged):
    runs, unreadable = damaged.scan()
    assert [run.run_id for run in runs] == ["good"]
    reasons = {problem.run_id: problem.reason for problem in unreadable}
    assert set(reasons) == {"statuslist", "badtype", "cutconfig", "cutstatus"}
    assert "not an object" in reasons["statuslist"]
    assert "image_size is '<str>', not a whole number" in reasons["badtype"]
    assert "config.json is cut short" in reasons["cutconfig"]  # before: the run vanished without a word
    assert "status.json is cut short" in reasons["cutstatus"]
    with pytest.raises(RunUnreadable, match=r"unreadable: status\.json"):
        damaged.get("cutstatus")


def test_core_runs_lists_them_and_writes_nothing(damaged, capsys):
    before = {path: _digest(path) for path in damaged.root.rglob("*.json")}
    assert cli(["runs", "--models-dir", str(damaged.root)]) == 0
    out, err = capsys.readouterr()
    assert "good" in out and "Traceback" not in err
    assert "cutstatus  unreadable: status.json is cut short" in err
    assert cli(["runs", "--models-dir", str(damaged.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["run_id"]: row["state"] for row in rows}["badtype"] == "unreadable"
    assert cli(["runs", "--models-dir", str(damaged.root), "--show", "cutconfig"]) == 1
    assert "run cutconfig is unreadable: config.json is cut short" in capsys.readouterr().err
    # before: a read rewrote the cut-short status of a finished run as "failed"
    assert {path: _digest(path) for path in damaged.root.rglob("*.json")} == before


def test_a_read_shows_a_dead_run_failed_without_writing_it(tmp_path, capsys):
    store = RunStore(tmp_path / "models")
    store.create("dead", _record())
    store.set_status("dead", state=JobState.RUNNING, pid=2**22 + 12345, started_at=1.0)
    before = _digest(store.run_dir("dead") / "status.json")
    assert cli(["runs", "--models-dir", str(store.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "failed"
    assert _digest(store.run_dir("dead") / "status.json") == before
    assert store.refresh(store.get("dead")).state is JobState.FAILED  # the app (an owner of the store) writes it
    assert store.get("dead").state is JobState.FAILED


def test_the_owner_of_a_run_writes_a_whole_status_over_an_unreadable_one(damaged):
    damaged.set_status("cutstatus", state=JobState.RUNNING, epoch=1)
    assert damaged.get("cutstatus").state is JobState.RUNNING


def test_an_unreadable_folder_can_be_deleted_but_a_readable_run_not_that_way(damaged):
    damaged.delete_unreadable("cutconfig")
    assert not damaged.run_dir("cutconfig").exists()
    with pytest.raises(ValueError, match="can be read"):
        damaged.delete_unreadable("good")


@pytest.mark.parametrize("bad", ["../models/good", "..", "a/b", "/etc", "", ".hidden", "x" * 65])
def test_ids_that_are_paths_are_refused(damaged, bad):
    with pytest.raises(ValueError, match="is not a run id"):
        check_run_id(bad)
    with pytest.raises(ValueError, match="is not a run id"):
        damaged.find(bad)


def test_evaluate_and_alias_refuse_a_path_for_a_run(damaged, tmp_path, trained_run, capsys):
    store = RunStore(tmp_path / "store")
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), store.run_dir(trained_run["run_id"]))
    outside = copy_run(store.run_dir(trained_run["run_id"]), tmp_path / "outside" / "evilrun")
    assert cli(["evaluate", "--models-dir", str(store.root), f"../store/{trained_run['run_id']}"]) == 1
    assert "is not a run id" in capsys.readouterr().err
    assert cli(["alias", "staging", "../outside/evilrun", "--models-dir", str(store.root)]) == 1
    assert "is not a run id" in capsys.readouterr().err
    with pytest.raises((ValueError, AliasError)):
        AliasStore(store.root).set("staging", f"../outside/{outside.name}")
    assert AliasStore(store.root).all() == {}
    with pytest.raises(RunNotFound):
        store.get("evilrun")

"""The run store: layout, atomic status, torn metrics lines, dead processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.fileio import read_jsonl, write_json_atomic
from core.processes import JobState, process_start_time
from core.runs.record import RunNotFound
from core.runs.store import RunStore


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "models")


def _record(name="ds"):
    return {
        "config": {"epochs": 2, "image_size": 32, "weights": "none"},
        "classes": ["a", "b"],
        "dataset": {"path": f"/data/{name}", "name": name},
    }


def test_create_get_list(store):
    run = store.create("abc123", _record())
    assert run.state == JobState.QUEUED and (run.directory / "config.json").exists()
    got = store.get("abc123")
    assert got.classes == ["a", "b"] and got.dataset_name == "ds" and got.train_config.epochs == 2
    store.create("def456", _record("other"))
    assert [r.run_id for r in store.list()] == ["def456", "abc123"]  # newest first
    assert store.find("abc").run_id == "abc123"
    with pytest.raises(RunNotFound):
        store.get("nope")


def test_ambiguous_prefix(store):
    store.create("aa1", _record())
    store.create("aa2", _record())
    with pytest.raises(KeyError, match="ambiguous"):
        store.find("aa")


def test_status_merges_and_metrics_tolerate_a_torn_line(store):
    store.create("r1", _record())
    store.set_status("r1", state=JobState.RUNNING, epoch=1)
    status = store.set_status("r1", epoch=2)
    assert status.state == JobState.RUNNING and status.epoch == 2
    store.append_metrics("r1", {"epoch": 1, "loss": 0.5})
    with open(store.run_dir("r1") / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "lo')  # a writer died mid-line
    assert store.read_metrics("r1") == [{"epoch": 1, "loss": 0.5}]


def test_create_again_resets_outputs_but_keeps_the_folder(store):
    store.create("r1", _record())
    store.append_metrics("r1", {"epoch": 1})
    (store.run_dir("r1") / "model.keras").write_bytes(b"x")
    store.request_stop("r1")
    store.create("r1", _record())
    assert store.read_metrics("r1") == [] and not store.get("r1").has_model and not store.stop_requested("r1")


def test_atomic_json_never_leaves_temp_files(tmp_path):
    for i in range(5):
        write_json_atomic(tmp_path / "s.json", {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    assert json.loads((tmp_path / "s.json").read_text()) == {"i": 4}
    assert oct((tmp_path / "s.json").stat().st_mode & 0o777) != oct(0o600)


def test_refresh_marks_a_dead_process_failed_with_its_log(store):
    store.create("r1", _record())
    finished = subprocess.run([sys.executable, "-c", "print('boom: out of memory')"], capture_output=True)
    assert finished.returncode == 0
    dead_pid = 2**22 - 3  # beyond the usual pid range
    (store.run_dir("r1") / "train.log").write_text("loading\r10%\r50%\nboom: out of memory\n")
    store.set_status("r1", state=JobState.RUNNING, pid=dead_pid)
    run = store.refresh(store.get("r1"))
    assert run.state == JobState.FAILED
    assert "ended without finishing" in run.status.error and "boom: out of memory" in run.status.error
    assert store.log_tail("r1") == "50%\nboom: out of memory"


def test_refresh_leaves_live_and_finished_runs_alone(store):
    store.create("live", _record())
    store.set_status("live", state=JobState.RUNNING, pid=os.getpid(), pid_start=process_start_time(os.getpid()))
    assert store.refresh(store.get("live")).state == JobState.RUNNING
    store.create("done", _record())
    store.set_status("done", state=JobState.DONE)
    assert store.refresh(store.get("done")).state == JobState.DONE
    store.create("launching", _record())  # no pid yet: within the launch grace period
    assert store.refresh(store.get("launching")).state == JobState.QUEUED


def test_delete_refuses_an_active_run(store):
    store.create("r1", _record())
    store.set_status("r1", state=JobState.RUNNING, pid=os.getpid())
    with pytest.raises(ValueError, match="stop it before deleting"):
        store.delete("r1")
    store.set_status("r1", state=JobState.DONE)
    store.delete("r1")
    assert not store.exists("r1")


def test_read_jsonl_of_missing_file(tmp_path):
    assert read_jsonl(tmp_path / "nope.jsonl") == []


def test_status_is_typed_and_old_folders_still_load(store):
    store.create("old", _record())
    # a status.json written by an earlier version: a key this one does not know, another it renamed
    write_json_atomic(
        store.run_dir("old") / "status.json", {"state": "done", "accuracy": 0.5, "created": 1.0, "gpu_temp": 61}
    )
    run = store.get("old")
    assert run.state is JobState.DONE and run.status.accuracy == 0.5 and run.status.queued_at == 1.0
    assert run.status.extra == {"gpu_temp": 61}
    store.set_status("old", best_epoch=3)
    assert json.loads((store.run_dir("old") / "status.json").read_text())["gpu_temp"] == 61  # kept on rewrite
    with pytest.raises(TypeError, match="accuracyy"):
        store.set_status("old", accuracyy=0.9)  # a misspelt field fails instead of never being read


def test_evaluate_says_why_a_run_has_no_evaluation_yet(store, capsys):
    from core.cli import main

    store.create("r1", _record())
    store.set_status("r1", state=JobState.RUNNING, pid=os.getpid(), epoch=3, epochs_total=10)
    args = ["evaluate", "r1", "--models-dir", str(store.root)]
    assert main(args) == 1 and "is still running (epoch 3/10 in progress)" in capsys.readouterr().err
    store.request_stop("r1")
    assert main(args) == 1 and "is stopping: it is saving its best weights" in capsys.readouterr().err
    store.set_status("r1", state=JobState.STOPPED)
    assert main(args) == 1 and "stopped before its first epoch finished" in capsys.readouterr().err

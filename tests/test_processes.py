"""The job layer: typed job status, the job folder (status, stop flag, log) and process liveness."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.processes import (
    JobFolder,
    JobState,
    JobStatus,
    process_alive,
    process_start_time,
    spawn_detached,
)
from core.processes.workers import worker_context
from tests.conftest import PROJECT_ROOT, script_as_main

pytestmark = pytest.mark.backend_agnostic


@dataclass
class ExampleStatus(JobStatus):
    items: int = 0


def test_status_round_trips_and_keeps_unknown_keys():
    stored = {"state": "running", "pid": 12, "items": 3, "from_the_future": {"a": 1}, "stage_progress": [2, 5]}
    status = ExampleStatus.from_dict(stored)
    assert status.state is JobState.RUNNING and status.active and status.items == 3
    assert status.stage_progress == (2, 5) and status.extra == {"from_the_future": {"a": 1}}
    again = status.to_dict()
    assert again["state"] == "running" and again["from_the_future"] == {"a": 1} and again["stage_progress"] == [2, 5]
    assert ExampleStatus.from_dict(again) == status


def test_old_and_odd_status_files_still_load():
    old = JobStatus.from_dict({"state": "running", "created": 10.0, "finished": 20.0})
    assert old.queued_at == 10.0 and old.finished_at == 20.0  # names of an earlier version
    assert JobStatus.from_dict({"state": "exploded"}).state is JobState.QUEUED
    assert JobStatus.from_dict(None).state is JobState.QUEUED
    assert JobStatus.from_dict({"stage_progress": "half"}).stage_progress is None
    assert JobState.DONE == "done" and str(JobState.DONE) == "done"  # the stored text compares equal


def test_a_misspelt_field_fails_loudly(tmp_path):
    folder = JobFolder(tmp_path / "job", "job.log", ExampleStatus)
    folder.update(state=JobState.RUNNING, items=2)
    with pytest.raises(TypeError, match="no field"):
        folder.update(itemz=3)
    status = folder.read()
    assert isinstance(status, ExampleStatus) and status.items == 2 and status.updated_at is not None


def test_stop_flag_and_log_tail(tmp_path):
    folder = JobFolder(tmp_path / "job", "job.log")
    assert not folder.stop_requested() and folder.stop_requested_at() is None
    folder.request_stop()
    assert folder.stop_requested() and abs(folder.stop_requested_at() - time.time()) < 5
    folder.clear_stop()
    assert not folder.stop_requested()
    folder.log_path.write_text("loading\r10%\r50%\n\nboom\n")
    assert folder.log_tail() == "50%\nboom"


def test_refresh_fails_a_job_whose_process_is_gone(tmp_path):
    folder = JobFolder(tmp_path / "job", "job.log")
    folder.update(state=JobState.RUNNING, pid=2**22 - 3)
    folder.log_path.write_text("Killed\n")
    status = folder.refresh(what="the worker")
    assert (
        status.state is JobState.FAILED
        and "the worker (pid 4194301) ended" in status.error
        and "Killed" in status.error
    )
    live = JobFolder(tmp_path / "live", "job.log")
    live.claim(state=JobState.RUNNING)
    assert live.refresh().state is JobState.RUNNING
    young = JobFolder(tmp_path / "young", "job.log")
    young.update(state=JobState.QUEUED, queued_at=time.time())  # no pid yet: within the grace period
    assert young.refresh().state is JobState.QUEUED
    young.update(queued_at=time.time() - 3600)
    assert young.refresh().state is JobState.FAILED


def test_launch_detaches_and_logs(tmp_path):
    folder = JobFolder(tmp_path / "job", "job.log")
    status = folder.launch([sys.executable, "-c", "print('hello from the job')"])
    assert status.pid and status.launched_at
    deadline = time.time() + 30
    while process_alive(status.pid, status.pid_start) and time.time() < deadline:
        time.sleep(0.05)
    assert "hello from the job" in folder.log_tail()


def test_process_alive_detects_zombies_and_pid_reuse():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":
        time.sleep(0.01)
    assert not process_alive(child.pid)  # exited but not reaped: a zombie is not alive
    child.wait()
    assert process_alive(os.getpid())
    assert not process_alive(os.getpid(), start_time="not-my-start-time")
    assert process_alive(os.getpid(), start_time=process_start_time(os.getpid()))
    assert not process_alive(None)
    pid, _ = spawn_detached([sys.executable, "-c", "pass"], Path(os.devnull))
    assert pid > 0


def test_worker_processes_do_not_run_the_parents_main_script_again(tmp_path, monkeypatch):
    """Plain spawn runs the parent's main script in each worker before its task (the app's workers imported the
    whole app and Keras); `worker_context`'s workers do not, and the parent's main module is left as it was."""
    marker = script_as_main(tmp_path, monkeypatch)
    main = sys.modules["__main__"]
    for context, runs_main in ((multiprocessing.get_context("spawn"), True), (worker_context(), False)):
        marker.unlink(missing_ok=True)
        with ProcessPoolExecutor(2, mp_context=context) as pool:
            pids = {pool.submit(os.getpid).result(timeout=120) for _ in range(4)}
        assert os.getpid() not in pids
        assert marker.exists() is runs_main
    assert sys.modules["__main__"] is main


def test_a_process_ended_by_exit_process_keeps_its_code_its_output_and_its_atexit_handlers():
    """Flora's entry points end with `exit_process` (no garbage collection over everything loaded): what the
    process printed, its exit status and its atexit handlers (logging's flush among them) are as with sys.exit."""
    code = (
        "import atexit, logging, sys; from core.processes import exit_process\n"
        "atexit.register(print, 'atexit ran')\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s'); logging.warning('logged')\n"
        "print('out', end=' '); exit_process(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])"
    )
    for argument, status, said in (("3", 3, ""), ("0", 0, ""), ("it broke", 1, "it broke")):
        done = subprocess.run(
            [sys.executable, "-c", code, argument], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == status and done.stdout == "out atexit ran\n", done
        assert done.stderr.split("\n")[0] == "logged" and said in done.stderr

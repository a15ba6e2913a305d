"""Runs as jobs: cache hits, one run per device, background processes that stop or die."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest

from core.processes import JobState, process_start_time
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.train import jobs
from tests.conftest import make_image_dataset

CONFIG = TrainConfig(image_size=32, weights="none", epochs=2, batch_size=8, head=(8,), seed=0)


@pytest.fixture
def dataset(tmp_path):
    return make_image_dataset(tmp_path / "ds", {"a": 8, "b": 8}, seed=2)


def test_submit_new_then_cached_then_forced(tmp_path, dataset, trained_run):
    store = trained_run["store"]
    again = jobs.submit(store, trained_run["dataset"], trained_run["config"])
    assert again.outcome == jobs.CACHED and again.run_id == trained_run["run_id"]
    fresh = RunStore(tmp_path / "models")
    first = jobs.submit(fresh, dataset, CONFIG)
    assert first.outcome == jobs.NEW and fresh.get(first.run_id).state == "queued"


def test_an_active_run_is_not_started_twice(tmp_path, dataset):
    store = RunStore(tmp_path / "models")
    first = jobs.submit(store, dataset, CONFIG)
    store.set_status(first.run_id, state=JobState.RUNNING, pid=os.getpid(), pid_start=process_start_time(os.getpid()))
    assert jobs.submit(store, dataset, CONFIG).outcome == jobs.ACTIVE
    store.set_status(first.run_id, state=JobState.FAILED)
    assert jobs.submit(store, dataset, CONFIG).outcome == jobs.NEW  # a failed run is retried


def test_device_lock_makes_the_second_run_wait(tmp_path):
    order = []
    release = threading.Event()

    def holder():
        with jobs.device_lock(tmp_path, "cpu"):
            order.append("first in")
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=holder)
    thread.start()
    while not order:
        time.sleep(0.01)
    waited = []
    threading.Timer(0.3, release.set).start()
    with jobs.device_lock(tmp_path, "cpu", on_wait=lambda: waited.append(True)):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"] and waited == [True]


def test_stop_while_waiting_for_the_device(tmp_path):
    with jobs.device_lock(tmp_path, "gpu"), pytest.raises(jobs.StopWhileWaiting):  # noqa: SIM117
        with jobs.device_lock(tmp_path, "gpu", should_stop=lambda: True):
            pass


def _wait_for(store, run_id, states, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = store.refresh(store.get(run_id))
        if run.state in states:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {run.state} after {timeout}s:\n{store.log_tail(run_id)}")


@pytest.mark.slow
def test_launch_trains_in_the_background_and_the_same_request_is_cached(tmp_path, dataset):
    models, data = tmp_path / "models", tmp_path / "data"
    started = time.time()
    submission = jobs.launch(dataset, CONFIG, models, data)
    assert submission.outcome == jobs.NEW and time.time() - started < 5  # returns at once
    store = RunStore(models)
    run = _wait_for(store, submission.run_id, {JobState.DONE, JobState.FAILED})
    assert run.state == JobState.DONE, store.log_tail(submission.run_id)
    log = (store.run_dir(submission.run_id) / "train.log").read_text()
    assert "test accuracy" in log
    if not shutil.which("nvidia-smi"):  # a CPU-only machine: one plain line, not CUDA errors
        assert "no GPU found: training on the CPU" in log and "cuInit" not in log and "cudart_stub" not in log
    assert jobs.launch(dataset, CONFIG, models, data).outcome == jobs.CACHED


@pytest.mark.slow
def test_a_background_run_can_be_stopped_and_a_killed_one_shows_failed(tmp_path, dataset):
    models, data = tmp_path / "models", tmp_path / "data"
    store = RunStore(models)
    slow = CONFIG.replace(epochs=200, early_stopping_patience=0, feature_cache=False)
    submission = jobs.launch(dataset, slow, models, data)
    _wait_for_epoch(store, submission.run_id)
    jobs.stop(store, submission.run_id)
    run = _wait_for(store, submission.run_id, {JobState.STOPPED, JobState.FAILED, JobState.DONE})
    assert run.state == JobState.STOPPED and run.has_model  # keeps the best weights it had

    killed = jobs.launch(dataset, slow.replace(seed=1), models, data)
    _wait_for_epoch(store, killed.run_id)
    os.kill(store.get(killed.run_id).status.pid, signal.SIGKILL)
    run = _wait_for(store, killed.run_id, {JobState.FAILED}, timeout=30)
    assert "ended without finishing" in run.status.error


def _wait_for_epoch(store, run_id, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(m.get("kind") == "epoch" for m in store.read_metrics(run_id)):
            return
        assert store.refresh(store.get(run_id)).state != JobState.FAILED, store.log_tail(run_id)
        time.sleep(0.3)
    raise AssertionError(f"no epoch finished in {timeout}s:\n{store.log_tail(run_id)}")


@pytest.mark.parametrize("ending", ["done", "failed"])
def test_a_second_identical_train_command_waits_for_the_first_and_reports_its_result(
    tmp_path, dataset, monkeypatch, capsys, ending
):
    """Before: the second `core train` exited 0 at once, printing "state": "queued"."""
    import json

    from core.cli import main as cli
    from core.cli import runs as cli_runs

    store = RunStore(tmp_path / "models")
    first = jobs.submit(store, dataset, CONFIG, corrections=None)
    me = os.getpid()
    store.set_status(first.run_id, state=JobState.RUNNING, pid=me, pid_start=process_start_time(me), epoch=1)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(CONFIG.to_dict()))
    monkeypatch.setattr(cli_runs, "WAIT_POLL_SECONDS", 0.05)
    waiting = threading.Event()  # the CLI has found the run active and waits for it
    wait_for_run = cli_runs.wait_for_run

    def waits(*args, **kwargs):
        waiting.set()
        return wait_for_run(*args, **kwargs)

    monkeypatch.setattr(cli_runs, "wait_for_run", waits)

    def the_first_one_ends():  # only once the CLI waits: ended earlier, a failed run is retried, not waited for
        if waiting.wait(timeout=120):
            time.sleep(0.5)
        if ending == "done":
            store.set_status(first.run_id, state=JobState.DONE, accuracy=0.75, finished_at=time.time())
        else:
            store.set_status(first.run_id, state=JobState.FAILED, error="out of cheese", finished_at=time.time())

    ender = threading.Thread(target=the_first_one_ends)
    ender.start()
    started = time.monotonic()
    where = ["--models-dir", str(store.root), "--data-dir", str(tmp_path / "data")]
    code = cli(["train", str(dataset), "--config", str(config_file), "--corrections", "none", "--json", *where])
    ender.join()
    result = json.loads(capsys.readouterr().out)
    assert waiting.is_set(), "the CLI did not wait for the run already training"
    assert time.monotonic() - started >= 0.4  # it waited
    assert result["run_id"] == first.run_id and result["state"] == ending
    if ending == "done":
        assert result["accuracy"] == 0.75  # the first one's figure: nothing trained here
    assert code == (0 if ending == "done" else 1)
    if ending == "failed":
        assert result["error"] == "out of cheese"

"""Background dataset tasks: a fetch runs as its own process and reports through its folder."""

from __future__ import annotations

import time

import pytest

from core.data.datasets import scan_dataset
from core.fileio import write_json_atomic
from core.importers import tasks as dataset_tasks
from core.processes import JobState
from tests.datafixtures import FileServer, tf_flowers_members, tgz_bytes


@pytest.fixture
def server():
    running = FileServer().start()
    yield running
    running.stop()


def _wait(task, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = dataset_tasks.get_task(task.directory)
        if not task.active:
            return task
        time.sleep(0.3)
    raise AssertionError(f"task still running:\n{task.log_tail()}")


@pytest.mark.slow
def test_fetch_runs_in_the_background_and_reports(tmp_path, server):
    url = server.add("/mirror/flower_photos.tgz", tgz_bytes(tf_flowers_members()))
    task = dataset_tasks.launch_fetch("tf_flowers", tmp_path, url=url)
    assert task.active and task.key == "tf_flowers"
    assert dataset_tasks.launch_fetch("tf_flowers", tmp_path, url=url).task_id == task.task_id  # not twice at once
    task = _wait(task)
    assert task.state == JobState.DONE, task.status
    assert task.status.result["classes"] == 5
    assert scan_dataset(tmp_path / "tf_flowers").classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert "done: tf_flowers" in task.log_tail()
    assert [t.task_id for t in dataset_tasks.list_tasks(tmp_path)] == [task.task_id]


@pytest.mark.slow
def test_a_failed_fetch_says_why(tmp_path, server):
    task = _wait(dataset_tasks.launch_fetch("tf_flowers", tmp_path, url=server.url + "/missing.tgz"))
    assert task.state == JobState.FAILED and "404" in task.status.error
    assert not (tmp_path / "tf_flowers").exists()


def test_stop_before_the_download_and_a_dead_process(tmp_path, server):
    url = server.add("/f.tgz", tgz_bytes(tf_flowers_members()))
    folder = dataset_tasks.tasks_dir(tmp_path) / "t1"
    folder.mkdir(parents=True)
    write_json_atomic(
        folder / dataset_tasks.STATUS_FILE,
        {"state": "running", "key": "tf_flowers", "url": url, "data_root": str(tmp_path), "created": time.time()},
    )
    (folder / dataset_tasks.STOP_FILE).write_text("now")
    assert dataset_tasks.run(folder) == 0
    assert dataset_tasks.get_task(folder).state == JobState.STOPPED

    dead = dataset_tasks.tasks_dir(tmp_path) / "t2"
    dead.mkdir()
    write_json_atomic(
        dead / dataset_tasks.STATUS_FILE,
        {"state": "running", "key": "oxford102", "pid": 2**22 - 5, "created": time.time()},
    )
    (dead / dataset_tasks.TASK_LOG).write_text("downloading: 5/10\nKilled\n")
    task = dataset_tasks.get_task(dead)
    assert task.state == JobState.FAILED and "Killed" in task.status.error

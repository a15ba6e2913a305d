"""The line for the device: round-robin between people, a cap per person, each waiting run's place and estimate,
and a waiting process that takes the device only on its turn."""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.processes import process_start_time
from core.runs import RunState, RunStore
from core.train import jobs
from core.train.queue import TooManyQueued, check_share, fair_order, my_turn, ordinal, places


def _record(owner: str, epochs: int = 2):
    return {
        "owner": owner,
        "config": {"epochs": epochs, "image_size": 32, "weights": "none"},
        "classes": ["a", "b"],
        "dataset": {"path": "/data/ds", "name": "ds"},
    }


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "models")


def queue(store: RunStore, run_id: str, owner: str, at: float) -> None:
    """A run waiting for the device, its process this (live) one."""
    me = os.getpid()
    store.create(run_id, _record(owner))
    store.set_status(run_id, state=RunState.QUEUED, queued_at=at, pid=me, pid_start=process_start_time(me))


def test_one_persons_ten_runs_do_not_hold_the_others_back(store):
    for i in range(10):
        queue(store, f"ash{i}", "ash", at=100 + i)
    queue(store, "misty0", "misty", at=200)
    queue(store, "brock0", "brock", at=300)
    queue(store, "misty1", "misty", at=400)
    order = [run.run_id for run in fair_order(store.list())]
    assert order[:6] == ["ash0", "misty0", "brock0", "ash1", "misty1", "ash2"]
    assert order[6:] == [f"ash{i}" for i in range(3, 10)]


def test_who_trained_last_waits_behind_who_has_not(store):
    store.create("done0", _record("ash"))
    store.set_status("done0", state=RunState.DONE, started_at=500.0, finished_at=560.0, epochs_done=2)
    queue(store, "ash1", "ash", at=600)
    queue(store, "misty1", "misty", at=700)  # queued later, but misty has not had the device yet
    assert [run.run_id for run in fair_order(store.list())] == ["misty1", "ash1"]
    assert my_turn(store, "misty1") and not my_turn(store, "ash1")
    assert my_turn(store, "done0")  # not waiting: nothing to wait for


def test_places_and_estimates_from_the_stores_own_pace(store):
    store.create("done0", _record("ash", epochs=2))
    store.set_status("done0", state=RunState.DONE, started_at=10.0, finished_at=130.0, epochs_done=2)  # 60 s/epoch
    store.create("busy", _record("brock", epochs=2))
    store.set_status("busy", state=RunState.RUNNING, started_at=1000.0)
    queue(store, "ash1", "ash", at=1001)
    queue(store, "misty1", "misty", at=1002)
    found = places(store.list(), now=1030.0)
    assert found["misty1"].place == 1 and found["ash1"].place == 2  # ash trained last
    assert found["misty1"].estimate_seconds == pytest.approx(90.0)  # busy: 120 s expected, 30 s done
    assert found["ash1"].estimate_seconds == pytest.approx(210.0)  # then misty's 2 epochs
    assert found["misty1"].text == "next in line, about 2 min"
    assert found["ash1"].text == "2nd in line, about 4 min"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"
    ]  # fmt: skip


def test_a_cap_on_runs_one_person_may_queue(store, tmp_path):
    for i in range(3):
        queue(store, f"ash{i}", "ash", at=i)
    with pytest.raises(TooManyQueued, match="already has 3 runs waiting"):
        check_share(store.list(), "ash", 3)
    check_share(store.list(), "misty", 3)
    check_share(store.list(), "ash", None)  # no cap (not shared)
    from tests.conftest import make_image_dataset
    from tests.test_train_jobs import CONFIG

    dataset = make_image_dataset(tmp_path / "ds", {"a": 4, "b": 4})
    with pytest.raises(TooManyQueued):
        jobs.submit(store, dataset, CONFIG, owner="ash", max_queued=3)
    submission = jobs.submit(store, dataset, CONFIG, owner="misty", max_queued=3)
    assert store.get(submission.run_id).owner == "misty"


def test_a_waiting_run_takes_the_device_only_on_its_turn(store):
    queue(store, "ash1", "ash", at=1)
    queue(store, "misty1", "misty", at=2)
    store.create("ran", _record("ash"))
    store.set_status("ran", state=RunState.DONE, started_at=5.0)  # ash trained last: misty goes first
    got: list[str] = []

    def wait_for_the_device(run_id: str) -> None:
        with jobs.device_lock(store.root, "cpu", my_turn=lambda: my_turn(store, run_id)):
            got.append(run_id)
            store.set_status(run_id, state=RunState.DONE, started_at=time.time())

    with jobs.device_lock(store.root, "cpu"):  # someone is training
        threads = [threading.Thread(target=wait_for_the_device, args=(r,)) for r in ("ash1", "misty1")]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
    for thread in threads:
        thread.join(30)
    assert got == ["misty1", "ash1"]


def test_no_line_while_nobody_holds_the_device(store):
    """A run launched a moment ago is starting, not 'next in line' (the walk saw that with nothing else running)."""
    queue(store, "ash1", "ash", at=1)
    assert places(store.list()) == {}

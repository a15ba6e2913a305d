"""The line for the device: round-robin between people, a cap per person, each waiting run's place and estimate,
and a waiting process that takes the device only on its turn."""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.processes import JobState, process_start_time
from core.runs.store import RunStore
from core.train import jobs
from core.train.queue import (
    RAY_LINE,
    TooManyQueued,
    check_share,
    fair_order,
    in_flight,
    my_turn,
    ordinal,
    places,
)


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


def queue(store: RunStore, run_id: str, owner: str, at: float, line: str | None = None) -> None:
    """A run waiting for the device (`line` "ray": for the Ray cluster), its process this (live) one."""
    me = os.getpid()
    store.create(run_id, _record(owner))
    store.set_status(run_id, state=JobState.QUEUED, queued_at=at, pid=me, pid_start=process_start_time(me), line=line)


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
    store.set_status("done0", state=JobState.DONE, started_at=500.0, finished_at=560.0, epochs_done=2)
    queue(store, "ash1", "ash", at=600)
    queue(store, "misty1", "misty", at=700)  # queued later, but misty has not had the device yet
    assert [run.run_id for run in fair_order(store.list())] == ["misty1", "ash1"]
    assert my_turn(store, "misty1") and not my_turn(store, "ash1")
    assert my_turn(store, "done0")  # not waiting: nothing to wait for


def test_places_and_estimates_from_the_stores_own_pace(store):
    store.create("done0", _record("ash", epochs=2))
    store.set_status("done0", state=JobState.DONE, started_at=10.0, finished_at=130.0, epochs_done=2)  # 60 s/epoch
    store.create("busy", _record("brock", epochs=2))
    store.set_status("busy", state=JobState.RUNNING, started_at=1000.0)
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
    store.set_status("ran", state=JobState.DONE, started_at=5.0)  # ash trained last: misty goes first
    got: list[str] = []

    def wait_for_the_device(run_id: str) -> None:
        with jobs.device_lock(store.root, "cpu", my_turn=lambda: my_turn(store, run_id)):
            got.append(run_id)
            store.set_status(run_id, state=JobState.DONE, started_at=time.time())

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


def test_the_ray_clusters_line_and_this_devices_line_never_hold_each_other_back(store):
    """Issue 20: a run waiting for the cluster is not ahead of a run waiting for this machine's device."""
    store.create("busy", _record("brock"))
    store.set_status("busy", state=JobState.RUNNING, started_at=10.0)  # this machine's device is taken
    queue(store, "misty_ray", "misty", at=1, line=RAY_LINE)  # first of all, but for the cluster
    queue(store, "ash_local", "ash", at=2)
    queue(store, "ash_ray", "ash", at=3, line=RAY_LINE)
    assert [run.run_id for run in fair_order(store.list())] == ["ash_local"]
    assert [run.run_id for run in fair_order(store.list(), RAY_LINE)] == ["misty_ray", "ash_ray"]
    assert my_turn(store, "ash_local") and my_turn(store, "misty_ray") and not my_turn(store, "ash_ray")
    found = places(store.list())
    assert found["ash_local"].waiting_text.startswith("waiting for the device: next in line")
    assert found["ash_ray"].waiting_text == "waiting for the Ray cluster: 2nd in line"  # no estimate: Ray knows
    store.set_status("misty_ray", submitted_at=20.0)  # handed to Ray: in flight, out of Flora's line
    assert [run.run_id for run in in_flight(store.list())] == ["misty_ray"]
    assert my_turn(store, "ash_ray")


def test_a_run_for_the_cluster_is_handed_to_ray_on_its_turn_and_when_there_is_room(store):
    """The fair line feeds the cluster: first in line and fewer runs in flight than it takes, never before."""
    from core.train.ray import capacity, wait_for_turn

    queue(store, "on_ray", "misty", at=1, line=RAY_LINE)
    store.set_status("on_ray", submitted_at=2.0)  # training on the cluster
    queue(store, "ash1", "ash", at=3, line=RAY_LINE)
    queue(store, "misty2", "misty", at=4, line=RAY_LINE)
    handed: list[str] = []

    def submit(run_id: str) -> None:
        if wait_for_turn(store, run_id, room=lambda: 1, poll_seconds=0.05):
            store.set_status(run_id, submitted_at=time.time())
            handed.append(run_id)

    threads = [threading.Thread(target=submit, args=(r,)) for r in ("misty2", "ash1")]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    assert handed == []  # the cluster takes 1 run at once and has one
    assert (
        store.get("ash1").status.stage
        == "waiting for the Ray cluster: 1st in line (1 of the 1 run(s) it takes at once)"
    )
    assert "2nd in line" in store.get("misty2").status.stage  # queued after ash1, and misty is on the cluster
    store.set_status("on_ray", state=JobState.DONE, started_at=2.0)
    deadline = time.time() + 20
    while len(handed) < 1 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert handed == ["ash1"]  # one at a time: misty2 waits for room again
    store.set_status("ash1", state=JobState.DONE, started_at=time.time())
    for thread in threads:
        thread.join(20)
    assert handed == ["ash1", "misty2"]
    queue(store, "late", "brock", at=9, line=RAY_LINE)
    store.request_stop("late")
    assert wait_for_turn(store, "late", room=lambda: 0, poll_seconds=0.05) is False  # Stop while in line
    assert capacity({"GPU": 4.0, "CPU": 64.0}, {"num_gpus": 1, "num_cpus": 1}) == 4
    assert capacity({"CPU": 8.0}, {"num_gpus": 0, "num_cpus": 3}) == 2
    assert capacity({"CPU": 1.0}, {"num_gpus": 0, "num_cpus": 3}) == 1  # a run too big still gets a turn

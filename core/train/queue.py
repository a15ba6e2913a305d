"""The line for the device: round-robin between people, with each waiting run's place and an estimate.

One run trains per accelerator at a time (core.train.jobs.device_lock). Runs waiting for it used to
take it in whatever order their processes polled, so one student's ten runs could hold nine others
back. The order now: the person whose last run got the device longest ago goes first (someone who
has not trained yet, first of all), their oldest waiting run; then the next person; and round again.
A waiting process takes the lock only when it is first in that order.

Each person may have `max_queued` runs waiting at once (core.sharing: FLORA_MAX_QUEUED_RUNS when shared).

There are two lines, each fair on its own: this machine's device (`LOCAL_LINE`) and a Ray cluster
(`RAY_LINE`, core.train.ray). A run for the cluster waits in Flora's line until it is first and the cluster
has room for one more run (`in_flight` below its capacity); only then is it handed to Ray's scheduler, so
the fair order, not the order of submission, decides who gets the cluster's next free device. A run in
one line never holds back a run in the other.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from core.errors import Busy
from core.processes import JobState
from core.runs.record import Run
from core.runs.store import RunStore

FALLBACK_SECONDS_PER_EPOCH = 60.0  # an estimate before any run of this store has finished
LOCAL_LINE = None  # RunStatus.line of a run for this machine's device
RAY_LINE = "ray"  # ... of a run for the Ray cluster
LINE_NAMES = {LOCAL_LINE: "the device", RAY_LINE: "the Ray cluster"}


class TooManyQueued(Busy, ValueError):
    """A person already has their share of runs waiting for the device."""


@dataclass(frozen=True)
class Place:
    """Where a waiting run stands: 1 is next; `ahead` waiting runs before it; seconds until it may start."""

    place: int
    ahead: int
    estimate_seconds: float | None
    line: str | None = LOCAL_LINE

    @property
    def text(self) -> str:
        """'next in line', '3rd in line, about 6 min'."""
        where = "next in line" if self.place == 1 else f"{ordinal(self.place)} in line"
        if self.estimate_seconds is None:
            return where
        minutes = self.estimate_seconds / 60
        when = "under a minute" if minutes < 1 else f"about {minutes:.0f} min"
        return f"{where}, {when}"

    @property
    def waiting_text(self) -> str:
        """'waiting for the device: next in line', 'waiting for the Ray cluster: 2nd in line'."""
        return f"waiting for {LINE_NAMES.get(self.line, self.line)}: {self.text}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def waiting(runs: list[Run]) -> list[Run]:
    """Runs waiting for the device: queued (launched or about to be), not yet training."""
    return [run for run in runs if run.state is JobState.QUEUED]


def in_line(runs: list[Run], line: str | None = LOCAL_LINE) -> list[Run]:
    """Runs waiting in Flora's `line`: queued there and, for the cluster, not yet handed to Ray."""
    return [run for run in waiting(runs) if run.status.line == line and run.status.submitted_at is None]


def in_flight(runs: list[Run]) -> list[Run]:
    """Runs handed to the Ray cluster and not ended: queued on Ray's scheduler or training on a node."""
    return [run for run in runs if run.active and run.status.line == RAY_LINE and run.status.submitted_at is not None]


def fair_order(runs: list[Run], line: str | None = LOCAL_LINE) -> list[Run]:
    """The runs waiting in `line` among `runs`, in the order they get its device (round-robin between owners)."""
    last_use: dict[str, float] = {}
    for run in runs:
        if run.status.started_at is not None and run.status.line == line:
            last_use[run.owner] = max(last_use.get(run.owner, 0.0), float(run.status.started_at))
    lines: dict[str, list[Run]] = {}
    for run in sorted(in_line(runs, line), key=lambda r: (r.status.queued_at or r.created, r.run_id)):
        lines.setdefault(run.owner, []).append(run)
    order: list[Run] = []
    turn = max(last_use.values(), default=0.0) + 1.0
    while lines:
        # the owner whose last turn is oldest (never: 0), ties by whose waiting run came first
        owner = min(lines, key=lambda o: (last_use.get(o, 0.0), lines[o][0].status.queued_at or 0.0))
        order.append(lines[owner].pop(0))
        if not lines[owner]:
            del lines[owner]
        last_use[owner] = turn  # their next run goes after everyone else's
        turn += 1.0
    return order


def live_runs(store: RunStore) -> list[Run]:
    """The store's runs, an active one whose process is gone shown failed (read-only: a waiting process never
    writes another run's status; the app and each run's own process do)."""
    return [store.refresh(run, persist=False) if run.active else run for run in store.list()]


def my_turn(store: RunStore, run_id: str) -> bool:
    """True when `run_id` is first in its line (or not in a line at all: nothing to wait for)."""
    runs = live_runs(store)
    mine = next((run for run in runs if run.run_id == run_id), None)
    order = fair_order(runs, mine.status.line if mine else LOCAL_LINE)
    return not order or order[0].run_id == run_id or run_id not in {run.run_id for run in order}


def places(runs: list[Run], now: float | None = None) -> dict[str, Place]:
    """Each waiting run's place in its line, with an estimate of when it starts on this machine's device (from
    this store's own pace; none for the cluster, whose free devices Ray knows, not Flora)."""
    found = {
        run.run_id: Place(position + 1, position, None, RAY_LINE)
        for position, run in enumerate(fair_order(runs, RAY_LINE))
    }
    return {**found, **_local_places(runs, now)}


def _local_places(runs: list[Run], now: float | None) -> dict[str, Place]:
    now = time.time() if now is None else now
    local = [run for run in runs if run.status.line == LOCAL_LINE]
    if not any(run.state is JobState.RUNNING for run in local):
        return {}  # nobody holds the device: a queued run is starting, not waiting in line
    per_epoch = seconds_per_epoch(runs)
    remaining = 0.0
    for run in local:
        if run.state is JobState.RUNNING and run.status.started_at is not None:
            expected = per_epoch * max(1, run.train_config.total_epochs)
            remaining += max(per_epoch, expected - (now - float(run.status.started_at)))
    result: dict[str, Place] = {}
    ahead_seconds = remaining
    for position, run in enumerate(fair_order(local)):
        estimate = ahead_seconds if per_epoch else None
        result[run.run_id] = Place(position + 1, position, estimate)
        ahead_seconds += per_epoch * max(1, run.train_config.total_epochs)
    return result


def seconds_per_epoch(runs: list[Run]) -> float:
    """The median seconds per epoch of this store's finished runs (a fixed guess before there are any)."""
    paces = []
    for run in runs:
        status = run.status
        if run.state is JobState.DONE and status.started_at and status.finished_at and status.epochs_done:
            paces.append((float(status.finished_at) - float(status.started_at)) / int(status.epochs_done))
    return statistics.median(paces) if paces else FALLBACK_SECONDS_PER_EPOCH


def check_share(runs: list[Run], owner: str, max_queued: int | None) -> None:
    """Raise TooManyQueued when `owner` already has `max_queued` runs waiting (None: no cap)."""
    if max_queued is None:
        return
    mine = [run for run in waiting(runs) if run.owner == owner]
    if len(mine) >= max_queued:
        raise TooManyQueued(
            f"{owner} already has {len(mine)} runs waiting for the device, the most one person may queue here "
            f"({max_queued}); wait for one to start, or stop one"
        )

"""The instructor's view of a shared Flora, as data: who is here, what each person has run, queued and used
of the device, and what one more round of the class's exercise would cost in queue time.

No Streamlit: the Class page (admins only) draws it; the runs come from the run store, presence and
sessions from `core.sharing.sessions`, locked names from `core.sharing.attempts`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from core.processes import JobState
from core.runs.curves import format_duration
from core.sharing.people import layer_of
from core.sharing.sessions import ACTIVE_MINUTES

RECENT_RUNS = 20  # the finished runs a duration estimate is the median of


@dataclass(frozen=True)
class Person:
    name: str
    runs: int
    running: int
    queued: int
    device_seconds: float  # summed start-to-finish time of their runs on the device
    last_seen: float | None  # None: never seen on a page (runs from the command line, say)

    def active(self, now: float) -> bool:
        return self.last_seen is not None and now - self.last_seen <= ACTIVE_MINUTES * 60


def people_table(runs: list, seen: dict[str, float], sweeps: list = ()) -> list[Person]:
    """One row per person who owns runs or sweeps or has used a page, the most recently seen first. A running
    sweep counts as running (it holds the device)."""
    names = {layer_of(run.owner) for run in runs} | {layer_of(name) for name in seen}
    names |= {layer_of(sweep.owner) for sweep in sweeps}
    rows = []
    for name in names:
        theirs = [run for run in runs if layer_of(run.owner) == name]
        rows.append(
            Person(
                name=name,
                runs=len(theirs),
                running=sum(1 for run in theirs if run.state is JobState.RUNNING)
                + sum(1 for sweep in sweeps if layer_of(sweep.owner) == name and sweep.state is JobState.RUNNING),
                queued=sum(1 for run in theirs if run.state is JobState.QUEUED),
                device_seconds=sum(_device_seconds(run) for run in theirs),
                last_seen=max((t for n, t in seen.items() if layer_of(n) == name), default=None),
            )
        )
    return sorted(rows, key=lambda p: (-(p.last_seen or 0.0), p.name))


def _device_seconds(run) -> float:
    if run.reused_from:  # a copy of a classmate's run: the device did nothing for it
        return 0.0
    started, finished = run.status.started_at, run.status.finished_at
    if started and finished and finished > started:
        return float(finished - started)
    if started and run.state is JobState.RUNNING:
        return max(0.0, time.time() - float(started))
    return 0.0


def typical_run_seconds(runs: list) -> float | None:
    """The median start-to-finish time of the newest finished runs here (None before any finished)."""
    finished = [run for run in runs if run.state is JobState.DONE and _device_seconds(run) > 0 and not run.reused_from]
    finished.sort(key=lambda run: run.status.finished_at or 0.0, reverse=True)
    durations = [_device_seconds(run) for run in finished[:RECENT_RUNS]]
    return statistics.median(durations) if durations else None


def class_cost(runs: list, people: int) -> str:
    """In words: what one run takes here, and what one run each for `people` people costs in queue time
    (one device trains one run at a time; identical settings are trained once and copied)."""
    typical = typical_run_seconds(runs)
    if typical is None:
        return "No run has finished here yet: once one has, this says what a run of the class's exercise costs."
    people = max(1, people)
    return (
        f"A run here has taken about {format_duration(typical)} (the median of the last "
        f"{min(RECENT_RUNS, sum(1 for r in runs if r.state is JobState.DONE))} finished). One run each for "
        f"{people} {'person' if people == 1 else 'people'} is about {format_duration(typical * people)} of queue on "
        "one device; the same settings launched by several people are trained once and copied."
    )

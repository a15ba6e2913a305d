"""Background dataset tasks: fetching tf_flowers or Oxford 102 takes minutes, so it runs as a
detached process of the job layer (`core.processes`), like training, and the Dataset page polls
its folder.

  data/.flora/tasks/<task_id>/status.json   a TaskStatus: state, stage, progress, error, result, pid
  data/.flora/tasks/<task_id>/task.log      the process's output
  data/.flora/tasks/<task_id>/STOP          present when someone asked it to stop

`python -m core.importers.tasks <task dir>` is the process; `launch_fetch` starts it.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import Cancelled, FloraError
from core.importers import get_dataset
from core.paths import flora_dir
from core.processes import STATUS_FILE, STOP_FILE, TASK_LOG, JobFolder, JobState, JobStatus, exit_process

TASKS_DIRNAME = "tasks"  # in <data>/.flora/
_WRITE_INTERVAL = 0.5
__all__ = [
    "STATUS_FILE",
    "STOP_FILE",
    "TASK_LOG",
    "Task",
    "TaskStatus",
    "get_task",
    "launch_fetch",
    "list_tasks",
    "run",
    "stop",
    "tasks_dir",
]


@dataclass
class TaskStatus(JobStatus):
    """A dataset task's status: the job fields, plus what it fetches and what came of it."""

    kind: str = "fetch"
    key: str = ""  # the dataset: "tf_flowers" | "oxford102"
    url: str | None = None
    force: bool = False
    data_root: str = ""
    result: dict[str, Any] | None = None  # ImportResult.to_dict() once done
    owner: str = ""  # who started it (a shared Flora lets only them, or an admin, stop it)


@dataclass
class Task:
    """A background task as read from its folder."""

    task_id: str
    directory: Path
    status: TaskStatus

    @property
    def state(self) -> JobState:
        return self.status.state

    @property
    def key(self) -> str:
        return self.status.key

    @property
    def active(self) -> bool:
        return self.status.active

    @property
    def owner(self) -> str:
        return self.status.owner

    @property
    def fraction(self) -> float | None:
        done, total = self.status.stage_progress or (0, 0)
        return min(1.0, done / total) if total else None

    def log_tail(self, lines: int = 15) -> str:
        return _folder(self.directory).log_tail(lines)


def _folder(directory: str | os.PathLike) -> JobFolder:
    return JobFolder(directory, TASK_LOG, TaskStatus)


def tasks_dir(data_root: str | os.PathLike) -> Path:
    return flora_dir(data_root) / TASKS_DIRNAME


def list_tasks(data_root: str | os.PathLike) -> list[Task]:
    """All tasks, newest first; a task whose process died shows as failed."""
    folder = tasks_dir(data_root)
    if not folder.is_dir():
        return []
    tasks = [get_task(child) for child in folder.iterdir() if (child / STATUS_FILE).exists()]
    return sorted(tasks, key=lambda t: t.status.queued_at or 0, reverse=True)


def get_task(directory: str | os.PathLike) -> Task:
    folder = _folder(directory)
    status = folder.refresh(what="the task's process")
    return Task(folder.directory.name, folder.directory, status)


def launch_fetch(
    key: str, data_root: str | os.PathLike, url: str | None = None, force: bool = False, owner: str = ""
) -> Task:
    """Start fetching dataset `key` in the background for `owner`; an active fetch of the same key is returned
    instead."""
    for task in list_tasks(data_root):
        if task.active and task.key == key:
            return task
    task_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{key}-{uuid.uuid4().hex[:6]}"
    folder = _folder(tasks_dir(data_root) / task_id)
    folder.directory.mkdir(parents=True)
    folder.write(
        TaskStatus(
            state=JobState.RUNNING,
            key=key,
            url=url,
            force=force,
            queued_at=time.time(),
            data_root=str(Path(data_root).resolve()),
            stage="starting",
            owner=owner,
        )
    )
    folder.launch([sys.executable, "-m", "core.importers.tasks", str(folder.directory)])
    return get_task(folder.directory)


def stop(task: Task) -> None:
    """Ask the task to stop; a partial download is kept so the next fetch resumes it."""
    _folder(task.directory).request_stop()


def run(directory: str | os.PathLike) -> int:
    """The task process: do the work, reporting to status.json; exit status 0 when done."""

    folder = _folder(directory)
    spec: TaskStatus = folder.claim(state=JobState.RUNNING, started_at=time.time())
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= _WRITE_INTERVAL or (total and done >= total):
            last[0] = now
            folder.update(stage=stage, stage_progress=(int(done), int(total)))
            print(f"{stage}: {done}/{total}", flush=True)

    try:
        result = get_dataset(
            spec.key,
            spec.data_root,
            progress=progress,
            should_stop=folder.stop_requested,
            url=spec.url,
            force=bool(spec.force),
        )
    except Cancelled as e:
        folder.update(state=JobState.STOPPED, error=None, note=str(e), finished_at=time.time())
        print(f"stopped: {e}", flush=True)
        return 0
    except (FloraError, OSError) as e:
        folder.update(state=JobState.FAILED, error=str(e), finished_at=time.time())
        print(f"error: {e}", flush=True)
        return 1
    except Exception as e:  # a bug: its traceback in the fetch's log
        traceback.print_exc()
        folder.update(state=JobState.FAILED, error=f"{type(e).__name__}: {e}", finished_at=time.time())
        return 1
    folder.update(state=JobState.DONE, result=result.to_dict(), finished_at=time.time(), stage="done")
    print(f"done: {result.name} ({result.classes} classes, {result.images} images)", flush=True)
    return 0


if __name__ == "__main__":
    exit_process(run(sys.argv[1]))

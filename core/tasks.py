"""Background dataset tasks: fetching tf_flowers or Oxford 102 takes minutes, so it runs as a
detached process (like training), reporting to a status file the Dataset page polls.

  data/.flora/tasks/<task_id>/status.json   state, stage, done, total, error, result, pid
  data/.flora/tasks/<task_id>/task.log      the process's output
  data/.flora/tasks/<task_id>/STOP          present when someone asked it to stop

`python -m core.tasks <task dir>` is the process; `launch_fetch` starts it.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.fileio import read_json, write_json_atomic
from core.runs import LAUNCH_GRACE_SECONDS, process_alive, process_start_time, spawn_detached

TASKS_DIRNAME = Path(".flora") / "tasks"
STATUS_FILE = "status.json"
LOG_FILE = "task.log"
STOP_FILE = "STOP"
RUNNING, DONE, FAILED, STOPPED = "running", "done", "failed", "stopped"
_WRITE_INTERVAL = 0.5


@dataclass
class Task:
    """A background task as read from its folder."""

    task_id: str
    directory: Path
    status: dict[str, Any]

    @property
    def state(self) -> str:
        return self.status.get("state", RUNNING)

    @property
    def key(self) -> str:
        return self.status.get("key", "")

    @property
    def active(self) -> bool:
        return self.state == RUNNING

    @property
    def fraction(self) -> float | None:
        total = self.status.get("total") or 0
        return min(1.0, self.status.get("done", 0) / total) if total else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.directory / LOG_FILE).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        cleaned = [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.strip()]
        return "\n".join(cleaned[-lines:])


def tasks_dir(data_root: str | os.PathLike) -> Path:
    return Path(data_root) / TASKS_DIRNAME


def list_tasks(data_root: str | os.PathLike) -> list[Task]:
    """All tasks, newest first; a task whose process died shows as failed."""
    folder = tasks_dir(data_root)
    if not folder.is_dir():
        return []
    tasks = [get_task(child) for child in folder.iterdir() if (child / STATUS_FILE).exists()]
    return sorted(tasks, key=lambda t: t.status.get("created", 0), reverse=True)


def get_task(directory: str | os.PathLike) -> Task:
    directory = Path(directory)
    task = Task(directory.name, directory, read_json(directory / STATUS_FILE, default={}) or {})
    return _refresh(task)


def _refresh(task: Task) -> Task:
    if task.state != RUNNING:
        return task
    pid = task.status.get("pid")
    if (
        pid is None and time.time() - float(task.status.get("created", 0)) < LAUNCH_GRACE_SECONDS
    ):  # just launched: no pid yet
        return task
    if pid is not None and process_alive(pid, task.status.get("pid_start")):
        return task
    tail = task.log_tail(8)
    error = "the task's process ended without finishing" + (f"; last log lines:\n{tail}" if tail else "")
    task.status = _update(task.directory, state=FAILED, error=error, finished=time.time())
    return task


def _update(directory: Path, **fields: Any) -> dict[str, Any]:
    status = read_json(directory / STATUS_FILE, default={}) or {}
    status.update(fields)
    write_json_atomic(directory / STATUS_FILE, status)
    return status


def launch_fetch(key: str, data_root: str | os.PathLike, url: str | None = None, force: bool = False) -> Task:
    """Start fetching dataset `key` in the background; an active fetch of the same key is returned instead."""
    for task in list_tasks(data_root):
        if task.active and task.key == key:
            return task
    task_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{key}-{uuid.uuid4().hex[:6]}"
    directory = tasks_dir(data_root) / task_id
    directory.mkdir(parents=True)
    write_json_atomic(
        directory / STATUS_FILE,
        {
            "state": RUNNING,
            "kind": "fetch",
            "key": key,
            "url": url,
            "force": force,
            "created": time.time(),
            "data_root": str(Path(data_root).resolve()),
            "stage": "starting",
            "done": 0,
            "total": 0,
        },
    )
    pid, pid_start = spawn_detached([sys.executable, "-m", "core.tasks", str(directory)], directory / LOG_FILE)
    _update(directory, pid=pid, pid_start=pid_start)
    return get_task(directory)


def stop(task: Task) -> None:
    """Ask the task to stop; a partial download is kept so the next fetch resumes it."""
    (task.directory / STOP_FILE).write_text(str(time.time()))


def run(directory: str | os.PathLike) -> int:
    """The task process: do the work, reporting to status.json; exit status 0 when done."""
    from core.importers import DownloadError, ImportCancelled, ImportRejected, get_dataset

    directory = Path(directory)
    spec = read_json(directory / STATUS_FILE, default={}) or {}
    _update(directory, pid=os.getpid(), pid_start=process_start_time(os.getpid()), started=time.time())
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= _WRITE_INTERVAL or (total and done >= total):
            last[0] = now
            _update(directory, stage=stage, done=int(done), total=int(total))
            print(f"{stage}: {done}/{total}", flush=True)

    try:
        result = get_dataset(
            spec["key"],
            spec["data_root"],
            progress=progress,
            should_stop=lambda: (directory / STOP_FILE).exists(),
            url=spec.get("url"),
            force=bool(spec.get("force")),
        )
    except ImportCancelled as e:
        _update(directory, state=STOPPED, error=None, note=str(e), finished=time.time())
        print(f"stopped: {e}", flush=True)
        return 0
    except (DownloadError, ImportRejected, OSError, ValueError) as e:
        _update(directory, state=FAILED, error=str(e), finished=time.time())
        print(f"error: {e}", flush=True)
        return 1
    _update(directory, state=DONE, result=result.to_dict(), finished=time.time(), stage="done")
    print(f"done: {result.name} ({result.classes} classes, {result.images} images)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))

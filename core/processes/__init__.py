"""The one job layer: background processes, their folders, their states and how they end.

Every kind of background work is a detached process that owns one job folder, and uses this layer to
be spawned, watched, stopped and logged the same way: training runs (core.train.jobs), dataset
fetches (core.importers.tasks), analysis on a finished run (core.results.tasks), sweeps (core.sweeps) and
the model server (core.serving.job).

  <job>/status.json   its status: a `JobStatus` (or a subclass) as JSON, written atomically
  <job>/<log>         the process's stdout and stderr
  <job>/STOP          present when someone asked it to stop

`JobFolder` reads and writes that folder; `spawn_detached` starts the process (forked from a warm
launcher where this process keeps one: `launcher.py`); `process_alive` tells a live process from a
dead (or reused) pid, so a job whose process died is shown as failed with the tail of its log, never
as running forever. `workers.py`: the spawned worker pools (decoding, the server's body parser).
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

from core.field_types import FieldTypeError, check_field_types
from core.fileio import UnreadableFile, load_json, write_json_atomic
from core.paths import PROJECT_ROOT
from core.processes import launcher

STATUS_FILE = "status.json"
STOP_FILE = "STOP"
TASK_LOG = "task.log"  # a background task's log: a dataset fetch (core.importers.tasks), a run's analysis
UNREADABLE = "unreadable"  # the key JobFolder.read puts in a status it could not read: why
# A job launched a moment ago has no pid yet; it is not "dead" during this grace period.
LAUNCH_GRACE_SECONDS = 30.0
_LOG_TAIL_BYTES = 256 * 1024


class JobState(str, enum.Enum):
    """Where a background job is in its life. The values are what status.json stores."""

    QUEUED = "queued"  # created, waiting for its process or for the device
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"  # stopped on request (it may have kept what it had)

    @property
    def active(self) -> bool:
        """True while the job may still change: queued or running."""
        return self in (JobState.QUEUED, JobState.RUNNING)

    @property
    def finished(self) -> bool:
        return not self.active

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Any, default: JobState | None = None) -> JobState:
        """A state from stored text; `default` (queued) for a missing or unknown value."""
        try:
            return cls(value)
        except ValueError:
            return default or cls.QUEUED


ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})

S = TypeVar("S", bound="JobStatus")


@dataclass
class JobStatus:
    """What every job's status.json holds; subclasses add the fields of their kind of job.

    `from_dict` is tolerant: an unknown key (a newer version, a hand edit) is kept in `extra`
    and written back unchanged; a missing one takes its default, so old folders still load.
    Writers go through `JobFolder.update`, which refuses a field the status does not declare,
    so a misspelt key fails loudly instead of silently never being read.
    """

    state: JobState = JobState.QUEUED
    pid: int | None = None
    pid_start: str | None = None  # the process's start time, to tell a reused pid apart
    queued_at: float | None = None
    launched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    error: str | None = None
    note: str | None = None
    stage: str | None = None  # what it is doing now, in words
    stage_started_at: float | None = None
    stage_progress: tuple[int, int] | None = None  # (done, total) of the current stage
    extra: dict[str, Any] = field(default_factory=dict)

    # Fields a status file of an older version named differently: old name -> field.
    RENAMED: ClassVar[dict[str, str]] = {"created": "queued_at", "started": "started_at", "finished": "finished_at"}

    @property
    def active(self) -> bool:
        return self.state.active

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls)) - {"extra"}

    @property
    def unreadable(self) -> str | None:
        """Why the stored status could not be read (JobFolder.read), None when it could."""
        return self.extra.get(UNREADABLE)

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any] | None) -> S:
        """Build from stored JSON: unknown keys go to `extra`, renamed ones to their field.

        Raises:
            FieldTypeError: not an object, or a declared field holding a value of the wrong kind.
        """
        if data is not None and not isinstance(data, dict):
            raise FieldTypeError(f"{STATUS_FILE} holds {type(data).__name__} {data!r:.40}, not an object")
        data = dict(data or {})
        known = cls.field_names()
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            name = cls.RENAMED.get(key, key) if key not in known else key
            if name in known:
                values.setdefault(name, value)
            else:
                extra[key] = value
        values["state"] = JobState.parse(values.get("state"))
        progress = values.get("stage_progress")
        if progress is not None:
            try:
                values["stage_progress"] = (int(progress[0]), int(progress[1]))
            except (TypeError, ValueError, IndexError):
                values["stage_progress"] = None
        check_field_types(cls, values, STATUS_FILE)
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: every field (the state as its text) and the unknown keys kept."""
        data = {name: getattr(self, name) for name in self.field_names()}
        data["state"] = self.state.value
        if self.stage_progress is not None:
            data["stage_progress"] = list(self.stage_progress)
        return {**self.extra, **data}

    def get(self, name: str, default: Any = None) -> Any:
        """A declared field, or a key kept in `extra` (for fields a newer version added)."""
        if name in self.field_names():
            value = getattr(self, name)
            return default if value is None else value
        return self.extra.get(name, default)


class JobRecord:
    """What a job read from disk says of itself (a Run, a Sweep): its state, whether it may still change, and
    whether it was asked to stop. A subclass has `status` (a JobStatus) and `stop_requested_at`."""

    status: JobStatus
    stop_requested_at: float | None

    @property
    def state(self) -> JobState:
        return self.status.state

    @property
    def active(self) -> bool:
        return self.status.active

    @property
    def stopping(self) -> bool:
        """Asked to stop and not ended yet (a run finishes its batch, saves its best weights, evaluates)."""
        return self.active and self.stop_requested_at is not None


class JobFolder:
    """One job's folder: its status, its stop flag and its log."""

    def __init__(self, directory: str | os.PathLike, log_name: str, status_type: type[JobStatus] = JobStatus):
        self.directory = Path(directory)
        self.log_name = log_name
        self.status_type = status_type

    @property
    def status_path(self) -> Path:
        return self.directory / STATUS_FILE

    @property
    def log_path(self) -> Path:
        return self.directory / self.log_name

    @property
    def stop_path(self) -> Path:
        return self.directory / STOP_FILE

    def read(self) -> JobStatus:
        """The status as stored (a default, queued status when there is none yet).

        A status file that cannot be read (cut short, not an object, a field of the wrong kind) reads
        as a failed job whose `unreadable` says why: never a traceback, and never rewritten by a reader.
        """
        try:
            return self.status_type.from_dict(load_json(self.status_path))
        except FileNotFoundError:
            return self.status_type()
        except (UnreadableFile, FieldTypeError) as e:
            return self.status_type(state=JobState.FAILED, error=f"unreadable: {e}", extra={UNREADABLE: str(e)})

    def write(self, status: JobStatus) -> JobStatus:
        status.updated_at = time.time()
        write_json_atomic(self.status_path, status.to_dict())
        return status

    def update(self, **fields: Any) -> JobStatus:
        """Merge `fields` into the stored status and write it atomically; return the new status.

        Raises:
            TypeError: a field this kind of status does not declare (a typo, or a renamed field).
        """
        unknown = set(fields) - self.status_type.field_names()
        if unknown:
            raise TypeError(
                f"{self.status_type.__name__} has no field(s) {sorted(unknown)}; "
                f"declare them on the status class. Known: {sorted(self.status_type.field_names())}"
            )
        status = self.read()
        if status.unreadable:  # its owner writes a whole status again
            status = self.status_type()
        for name, value in fields.items():
            if name == "state":
                value = JobState(value)
            elif name == "stage_progress" and value is not None:
                value = (int(value[0]), int(value[1]))
            setattr(status, name, value)
        return self.write(status)

    # ------------------------------------------------------------------ stop flag

    def request_stop(self) -> None:
        """Ask the job's process to stop at its next check."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stop_path.write_text(str(time.time()))

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def stop_requested_at(self) -> float | None:
        """When a stop was asked for (epoch seconds), or None when it was not."""
        try:
            text = self.stop_path.read_text()
        except FileNotFoundError:
            return None
        try:
            return float(text)
        except ValueError:  # written by hand (touch STOP): counts as asked just now
            return time.time()

    def clear_stop(self) -> None:
        self.stop_path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ the process

    def launch(self, command: list[str], env: dict[str, str] | None = None) -> JobStatus:
        """Start `command` detached (with `env` added to this environment), its output appended to the log;
        record its pid."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pid, pid_start = spawn_detached(command, self.log_path, env)
        return self.update(pid=pid, pid_start=pid_start, launched_at=time.time())

    def claim(self, **fields: Any) -> JobStatus:
        """Record that this very process now owns the job (its pid, so readers can check it is alive)."""
        me = os.getpid()
        return self.update(pid=me, pid_start=process_start_time(me), **fields)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def refresh(
        self, status: JobStatus | None = None, what: str = "the job's process", persist: bool = True
    ) -> JobStatus:
        """The status, with a job whose process is gone marked failed (with its last log lines).

        A queued job without a pid is given `LAUNCH_GRACE_SECONDS` to start. With `persist` the failure
        is written to the folder; without it (a read-only command) it is only returned.
        """
        status = status if status is not None else self.read()
        if not status.active or not self.is_dead(status):
            return status
        pid = status.pid
        error = f"{what}{f' (pid {pid})' if pid else ''} ended without finishing"
        tail = self.log_tail(15)
        if tail:
            error += f"; last log lines:\n{tail}"
        if not persist:
            return dataclasses.replace(status, state=JobState.FAILED, error=error, finished_at=time.time(), stage=None)
        return self.update(state=JobState.FAILED, error=error, finished_at=time.time(), stage=None)

    @staticmethod
    def is_dead(status: JobStatus, now: float | None = None) -> bool:
        """True when an active job's process is gone (or never came within the grace period)."""
        if status.pid is None:
            since = status.launched_at or status.queued_at or status.updated_at or 0.0
            return (now or time.time()) - float(since) >= LAUNCH_GRACE_SECONDS
        return not process_alive(status.pid, status.pid_start)


def log_tail(path: str | os.PathLike, lines: int = 40) -> str:
    """The last `lines` non-empty lines of a log (carriage-return progress redraws collapsed)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    # split on "\n" only: a progress bar redraws its line with "\r", keep the last drawing
    cleaned = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    kept = [line for line in cleaned if line.strip()]
    return "\n".join(kept[-lines:])


def job_environment(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """A job's environment: this one, `extra_env`, the project on PYTHONPATH and unbuffered output."""
    existing = os.environ.get("PYTHONPATH")
    pythonpath = f"{PROJECT_ROOT}{os.pathsep}{existing}" if existing else str(PROJECT_ROOT)
    return {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}


def keep_warm_launcher(now: bool = True) -> bool:
    """For a process that launches jobs again and again: fork them from a warm launcher (core.processes.launcher),
    started `now` or at the first job."""
    return launcher.keep_warm(job_environment(), now)


def spawn_detached(
    command: list[str], log_path: str | os.PathLike, extra_env: dict[str, str] | None = None
) -> tuple[int, str | None]:
    """Start `command` in its own session (it outlives the app and the tab), output appended to `log_path`.

    Runs from the project root with the project on PYTHONPATH and unbuffered output, forked from the warm
    launcher where this process keeps one for this environment (`keep_warm_launcher`), else as a new process.
    Either way the child is reaped when it ends (by a daemon thread here, or by the launcher), so it never lingers
    as a zombie that looks alive. Returns its (pid, start time) for `process_alive`.
    """
    env = job_environment(extra_env)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    forked = launcher.spawn(command, log_path, env)  # from a warm launcher, where this process keeps one
    if forked is not None:
        return forked, process_start_time(forked)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process.pid, process_start_time(process.pid)


def exit_process(code: int | str | None = 0) -> NoReturn:
    """`sys.exit(code)` for a Flora process's entry point, without the garbage collector's passes over everything
    the process loaded: at exit Python searches all its objects for cycles once more, and after TensorFlow and Keras
    that took 0.9 of the 5.3 s a `core device` took here. What is still alive is left to the operating system;
    the atexit handlers (logging's flush, MLflow's, Ray's, temporary folders') still run."""
    gc.freeze()
    sys.exit(code)


def host_tag() -> str:
    """This machine's name as a file name part (no dots or @): a pid in a name means something only on the
    machine that wrote it, and a folder on shared storage may be written from several."""
    import socket

    return socket.gethostname().replace(".", "-").replace("@", "-") or "host"


def process_alive(pid: int | None, start_time: str | None = None) -> bool:
    """True when `pid` is a live, non-zombie process (and started at `start_time`, when given)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    stat = _proc_stat(int(pid))
    if stat is None:
        return True  # no /proc (macOS): the signal check is all we have
    state, started = stat
    if state in ("Z", "X"):
        return False
    return not (start_time and started != start_time)  # the pid was reused by another process


def process_start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields follow the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], fields[19]

"""The run store: one folder per training run under `models/`, behind a small interface.

The folder's files and `Run` (a folder as read) are in core.runs.record; this module finds, reads, writes,
lists and deletes them. Every write is atomic; readers tolerate a torn last metrics line, missing fields and
fields they do not know.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.fileio import UnreadableFile, append_jsonl, load_json, read_json, read_jsonl, write_json_atomic
from core.processes import STATUS_FILE, STOP_FILE, JobFolder, JobState, process_alive
from core.runs.record import (
    CONFIG_FILE,
    LABEL_FILE,
    MAX_NAME_LENGTH,
    METRICS_FILE,
    MODEL_FILE,
    RUN_ID_PATTERN,
    RUN_OUTPUTS,
    TASKS_DIR,
    TRAIN_LOG,
    AmbiguousRun,
    Run,
    RunActive,
    RunNotFound,
    RunStatus,
    RunUnreadable,
    check_record,
    check_run_id,
)


class RunStore:
    """Create, read, list and update run folders. Folder and file names live here only."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        """The folder of `run_id`. Raises ValueError for an id that is not one (a path, '..')."""
        return self.root / check_run_id(run_id)

    def _job(self, run_id: str) -> JobFolder:
        return JobFolder(self.run_dir(run_id), TRAIN_LOG, RunStatus)

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / CONFIG_FILE).exists()

    def create(self, run_id: str, record: dict[str, Any]) -> Run:
        """Create (or reset for a retrain) the folder of `run_id` with its config, state queued."""
        directory = self.run_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        for name in RUN_OUTPUTS:
            target = directory / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                target.unlink()
        record = {**record, "run_id": run_id, "created": time.time()}
        write_json_atomic(directory / CONFIG_FILE, record)
        status = self._job(run_id).write(RunStatus(state=JobState.QUEUED, queued_at=time.time()))
        return Run(run_id, directory, record, status)

    def reuse(self, source_id: str, run_id: str, owner: str) -> Run:
        """`owner`'s own copy of the finished run `source_id` as `run_id`: every file hard-linked (copied across
        file systems), the config re-owned and saying where it came from, the status as finished; its name,
        note, log and analysis jobs are not carried (they were the other person's)."""
        source = self.get(source_id)
        directory = self.run_dir(run_id)
        partial = directory.with_name(f".{run_id}.reusing")
        shutil.rmtree(partial, ignore_errors=True)
        skip = {CONFIG_FILE, STATUS_FILE, STOP_FILE, LABEL_FILE, TRAIN_LOG, TASKS_DIR}

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(
            source.directory,
            partial,
            ignore=lambda d, names: skip & set(names) if d == str(source.directory) else (),
            copy_function=link,
        )
        record = {
            **source.config,
            "owner": owner,
            "created": time.time(),
            "run_id": run_id,
            "reused_from": {"run_id": source_id, "owner": source.owner},
        }
        write_json_atomic(partial / CONFIG_FILE, record)
        status = {**source.status.to_dict(), "pid": None, "node": None, "mlflow": None}  # logged under its id
        write_json_atomic(partial / STATUS_FILE, status)
        (partial / TRAIN_LOG).write_text(
            f"Reused {source.owner}'s identical run {source_id} (the same settings and data): its files are "
            "hard-linked here, nothing was trained again.\n"
        )
        shutil.rmtree(directory, ignore_errors=True)  # a failed or unreadable earlier try
        os.replace(partial, directory)
        return self.get(run_id)

    def get(self, run_id: str) -> Run:
        """The run `run_id`.

        Raises:
            RunNotFound: no such run.
            RunUnreadable: its config or status is cut short, not JSON, or holds values of the wrong kind.
        """
        directory = self.run_dir(run_id)
        try:
            config = load_json(directory / CONFIG_FILE)
            check_record(config)
        except FileNotFoundError:
            raise RunNotFound(run_id) from None
        except UnreadableFile as e:
            raise RunUnreadable(run_id, str(e), directory) from None
        job = self._job(run_id)
        status = job.read()
        if status.unreadable:
            raise RunUnreadable(run_id, status.unreadable, directory)
        label = read_json(directory / LABEL_FILE, default={})
        label = label if isinstance(label, dict) else {}
        return Run(
            run_id,
            directory,
            config,
            status,
            stop_requested_at=job.stop_requested_at(),
            name=str(label.get("name") or ""),
            note=str(label.get("note") or ""),
        )

    def find(self, prefix: str) -> Run:
        """The run whose id is `prefix` or starts with it (like git's short hashes).

        Raises:
            NotARunId: `prefix` is not a run id (a path, '..').
            RunNotFound, RunUnreadable: as `get`; AmbiguousRun: an ambiguous prefix.
        """
        check_run_id(prefix)
        if self.exists(prefix):
            return self.get(prefix)
        matches = [run_id for run_id in self._ids() if run_id.startswith(prefix)]
        if len(matches) == 1:
            return self.get(matches[0])
        if len(matches) > 1:
            raise AmbiguousRun(f"run id prefix {prefix!r} is ambiguous: {', '.join(sorted(matches))}")
        raise RunNotFound(prefix)

    def list(self) -> list[Run]:
        """All readable runs, newest first (`unreadable()` lists the others)."""
        return self.scan()[0]

    def unreadable(self) -> list[RunUnreadable]:
        """The run folders that cannot be read, each with why (pages and `core runs` list them)."""
        return self.scan()[1]

    def scan(self) -> tuple[list[Run], list[RunUnreadable]]:
        """(readable runs newest first, unreadable run folders by id): one pass over the store."""
        runs, unreadable = [], []
        for run_id in self._ids():
            try:
                runs.append(self.get(run_id))
            except RunNotFound:
                continue  # a folder being created right now
            except RunUnreadable as e:
                unreadable.append(e)
        return sorted(runs, key=lambda run: run.created, reverse=True), sorted(unreadable, key=lambda e: e.run_id)

    def _ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and RUN_ID_PATTERN.match(p.name) and (p / CONFIG_FILE).exists()
        ]

    def set_status(self, run_id: str, **fields: Any) -> RunStatus:
        """Merge `fields` (RunStatus fields) into status.json, atomically; return the new status.

        Raises:
            TypeError: a field RunStatus does not declare.
        """
        return self._job(run_id).update(**fields)

    def launch(self, run_id: str, command: list[str]) -> RunStatus:
        """Start `command` as the run's detached process (output to train.log); record its pid."""
        return self._job(run_id).launch(command)

    def claim(self, run_id: str, **fields: Any) -> RunStatus:
        """Record that the calling process now owns the run (its pid), with `fields`."""
        return self._job(run_id).claim(**fields)

    def set_label(self, run_id: str, name: str | None = None, note: str | None = None) -> None:
        """Give a run a name and/or a note (None leaves that one as it is; "" clears it).

        Raises:
            RunNotFound: no such run.
            ValueError: a name longer than MAX_NAME_LENGTH or spanning lines.
        """
        run = self.get(run_id)
        label = {"name": run.name, "note": run.note}
        if name is not None:
            name = " ".join(name.split())
            if len(name) > MAX_NAME_LENGTH:
                raise InvalidInput(f"a run name has at most {MAX_NAME_LENGTH} characters. Received: {len(name)}")
            label["name"] = name
        if note is not None:
            label["note"] = note.strip()
        write_json_atomic(run.directory / LABEL_FILE, label)

    def stamp(self) -> tuple[int, float]:
        """Changes whenever a run is created, deleted, or writes its status (cheap: a stat per run).

        Pages poll it to notice runs started elsewhere without reading every run's files.
        """
        count, latest = 0, 0.0
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0, 0.0
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                count += 1
                try:
                    latest = max(latest, entry.stat().st_mtime)
                except OSError:
                    continue
        return count, latest

    def folder_stamps(self) -> dict[str, int]:
        """Each run folder's modification time in ns (a stat per run). A folder's time moves whenever the run
        writes a file into it (every write is atomic: a new file renamed into place), so an unchanged time means
        an unchanged config, status, label and stop flag (metrics.jsonl, appended in place, is read apart)."""
        stamps = {}
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return {}
        for entry in entries:
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir():
                    stamps[entry.name] = entry.stat().st_mtime_ns
        return stamps

    def append_metrics(self, run_id: str, record: dict[str, Any]) -> None:
        append_jsonl(self.run_dir(run_id) / METRICS_FILE, record)

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        return read_jsonl(self.run_dir(run_id) / METRICS_FILE)

    def request_stop(self, run_id: str) -> None:
        """Ask a queued or running run to stop at its next batch."""
        self._job(run_id).request_stop()

    def stop_requested(self, run_id: str) -> bool:
        return self._job(run_id).stop_requested()

    def stop_requested_at(self, run_id: str) -> float | None:
        """When a stop was asked for (epoch seconds), or None when it was not."""
        return self._job(run_id).stop_requested_at()

    def log_path(self, run_id: str) -> Path:
        """train.log of `run_id`: where the training process (here or on a Ray node) writes its output."""
        return self.run_dir(run_id) / TRAIN_LOG

    def model_path(self, run_id: str) -> Path:
        """model.keras of `run_id` (it may not exist yet: a run still training has none)."""
        return self.run_dir(run_id) / MODEL_FILE

    def log_tail(self, run_id: str, lines: int = 40) -> str:
        """The last `lines` lines of train.log (carriage-return progress redraws collapsed)."""
        return self._job(run_id).log_tail(lines)

    def delete(self, run_id: str) -> None:
        """Remove a run folder. Raises ValueError for a run that is still active."""
        run = self.get(run_id)
        if run.active and process_alive(run.status.pid):
            raise RunActive(f"run {run_id} is {run.state}; stop it before deleting")
        shutil.rmtree(run.directory)

    def delete_unreadable(self, run_id: str) -> None:
        """Remove a run folder that cannot be read (`unreadable()`). Raises ValueError for one that can."""
        try:
            self.get(run_id)
        except RunUnreadable as e:
            shutil.rmtree(e.directory or self.run_dir(run_id))
            return
        raise RunActive(f"run {run_id} can be read; delete it as a run (stopping it first if it is active)")

    def refresh(self, run: Run, persist: bool = True) -> Run:
        """Mark a queued/running run whose process is gone as failed, so it is never shown running forever.

        `persist=False` (read-only commands such as `core runs`) shows it failed without writing.
        """
        run.status = self._job(run.run_id).refresh(run.status, what="the training process", persist=persist)
        return run


class RunListing:
    """The store's runs, kept between looks and read again folder by folder: a run whose folder has not changed
    since the last look is not read again. A page polling every two seconds while one run trains then reads that
    run's files, not the 500 a class's store holds (before, every status write of one run re-read every run).
    Safe across the threads of one server; the runs it returns are shared, so callers do not change them."""

    def __init__(self, store: RunStore):
        self.store = store
        self._lock = threading.Lock()
        self._known: dict[str, tuple[int, Run | RunUnreadable]] = {}
        self._listed: tuple[list[Run], list[RunUnreadable]] = ([], [])

    def scan(self) -> tuple[list[Run], list[RunUnreadable]]:
        """(readable runs newest first, unreadable run folders by id), as `RunStore.scan` gives them."""
        with self._lock:
            stamps = self.store.folder_stamps()
            if stamps.keys() == self._known.keys() and all(self._known[k][0] == v for k, v in stamps.items()):
                return self._listed
            known: dict[str, tuple[int, Run | RunUnreadable]] = {}
            for run_id, stamp in stamps.items():
                seen = self._known.get(run_id)
                if seen is not None and seen[0] == stamp:
                    known[run_id] = seen
                    continue
                try:
                    known[run_id] = (stamp, self.store.get(run_id))
                except RunNotFound:
                    continue  # a folder being created right now: read when its config is there
                except RunUnreadable as e:
                    known[run_id] = (stamp, e)
                except ValueError:
                    continue  # a folder whose name is not a run id
            runs = [item for _, item in known.values() if isinstance(item, Run)]
            unreadable = [item for _, item in known.values() if isinstance(item, RunUnreadable)]
            self._known = known
            self._listed = (
                sorted(runs, key=lambda run: run.created, reverse=True),
                sorted(unreadable, key=lambda e: e.run_id),
            )
            return self._listed

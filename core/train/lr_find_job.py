"""The learning-rate range test (core.train.lr_find) as a background job, for the Train page's New run form.

  <data>/.flora/lr-find/<key>/status.json   a FinderStatus: the job fields and what it tests
  <data>/.flora/lr-find/<key>/task.log      the process's output
  <data>/.flora/lr-find/<key>/result.json   the RangeTest, once done

Decoding the photos and extracting their features can take a minute or more on a CPU, too long to hold a
page's script, so the test runs in its own process of the one job layer (core.processes) and the page polls
its folder. The key names the test (the dataset's fingerprint, the settings it depends on, the phase, the
label corrections): asking again for the same test finds the finished one. `python -m core.train.lr_find_job
DIR` is the process; nothing here imports Keras.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.data.datasets import DatasetError, scan_dataset
from core.errors import Cancelled
from core.fileio import read_json, write_json_atomic
from core.paths import cache_dir, flora_dir
from core.processes import TASK_LOG, JobFolder, JobRecord, JobState, JobStatus, exit_process
from core.settings.config import TrainConfig, canonical_json
from core.train.lr_find import HEAD, RangeTest, check_phase, identity

log = logging.getLogger("flora")
FINDER_DIRNAME = "lr-find"  # in <data>/.flora/
RESULT_FILE = "result.json"


@dataclass
class FinderStatus(JobStatus):
    """A range test's status: the job fields, and what it tests."""

    dataset: str = ""
    fingerprint: str = ""
    phase: str = HEAD
    config: dict[str, Any] | None = None  # the settings the test depends on (core.train.lr_find.identity)
    corrections: dict[str, Any] | None = None
    data_root: str = ""
    models_root: str = ""


@dataclass
class Finder(JobRecord):
    """A range test as read from its folder: its status and, once done, its result (state, active and stopping
    as every job record has them)."""

    key: str
    folder: JobFolder
    status: FinderStatus
    result: RangeTest | None

    @property
    def stop_requested_at(self) -> float | None:
        return self.folder.stop_requested_at()

    def log_tail(self, lines: int = 15) -> str:
        return self.folder.log_tail(lines)


def finder_key(fingerprint: str, config: TrainConfig, phase: str, corrections: dict | None) -> str:
    """The name of a range test: equal for requests that would give the same curve."""
    check_phase(phase)
    payload = {
        "fingerprint": fingerprint,
        "config": identity(config, phase).to_dict(),
        "phase": phase,
        "corrections": corrections or {},
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def _folder(data_root: str | os.PathLike, key: str) -> JobFolder:
    return JobFolder(flora_dir(data_root) / FINDER_DIRNAME / key, TASK_LOG, FinderStatus)


def read(
    data_root: str | os.PathLike, fingerprint: str, config: TrainConfig, phase: str, corrections: dict | None
) -> Finder | None:
    """The range test of this request (a dead process shown as failed), or None when it was never asked for."""
    return read_key(data_root, finder_key(fingerprint, config, phase, corrections))


def read_key(data_root: str | os.PathLike, key: str) -> Finder | None:
    folder = _folder(data_root, key)
    if not folder.status_path.exists():
        return None
    status = folder.refresh(what="the range test's process")
    data = read_json(folder.directory / RESULT_FILE) if status.state is JobState.DONE else None
    try:
        result = RangeTest.from_dict(data) if isinstance(data, dict) else None
    except (TypeError, ValueError):  # a torn or foreign file: asked for again, it runs again
        result = None
    return Finder(key, folder, status, result)


def launch(
    data_root: str | os.PathLike,
    models_root: str | os.PathLike,
    dataset: str | os.PathLike,
    fingerprint: str,
    config: TrainConfig,
    phase: str = HEAD,
    corrections: dict | None = None,
) -> Finder:
    """Start the range test in the background; a finished or running one of the same request is returned instead."""
    key = finder_key(fingerprint, config, phase, corrections)
    current = read_key(data_root, key)
    if current is not None and (current.active or current.result is not None):
        return current
    folder = _folder(data_root, key)
    folder.directory.mkdir(parents=True, exist_ok=True)
    folder.clear_stop()
    folder.log_path.unlink(missing_ok=True)
    folder.write(
        FinderStatus(
            state=JobState.QUEUED,
            queued_at=time.time(),
            dataset=str(Path(dataset).resolve()),
            fingerprint=fingerprint,
            phase=phase,
            config=identity(config, phase).to_dict(),
            corrections=corrections or None,
            data_root=str(Path(data_root).resolve()),
            models_root=str(Path(models_root).resolve()),
        )
    )
    folder.launch([sys.executable, "-m", "core.train.lr_find_job", str(folder.directory)])
    return read_key(data_root, key)


def stop(finder: Finder) -> None:
    finder.folder.request_stop()


def run(directory: str | os.PathLike) -> int:
    """The process: the range test the folder's status asks for, its progress in the status; 0 when done."""
    from core.train.lr_find import find_learning_rate  # heavy: keras
    from core.train.trainer import StageReporter  # heavy: keras

    folder = JobFolder(directory, TASK_LOG, FinderStatus)
    status: FinderStatus = folder.claim(state=JobState.RUNNING, started_at=time.time(), stage="starting")
    try:
        index = scan_dataset(status.dataset)
        if index.fingerprint != status.fingerprint:
            raise DatasetError(f"the dataset at {status.dataset} changed since the range test was asked for: ask again")
        result = find_learning_rate(
            index,
            TrainConfig.from_dict(status.config or {}),
            cache_dir(status.data_root),
            phase=status.phase,
            corrections=status.corrections,
            models_dir=status.models_root,
            report=StageReporter(folder.update),
            should_stop=folder.stop_requested,
        )
    except Cancelled as e:
        folder.update(state=JobState.STOPPED, note=str(e), finished_at=time.time(), stage=None)
        return 0
    except Exception as e:
        log.exception("the range test failed")
        folder.update(state=JobState.FAILED, error=f"{type(e).__name__}: {e}", finished_at=time.time(), stage=None)
        return 1
    write_json_atomic(folder.directory / RESULT_FILE, result.to_dict())
    folder.update(state=JobState.DONE, finished_at=time.time(), stage=None, stage_progress=None)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s flora: %(message)s")
    exit_process(run(sys.argv[1]))

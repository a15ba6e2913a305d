"""Logging an ended run to MLflow in a process of its own.

The Train page launches settings that were already trained (a cached run) with its MLflow field filled: nothing
trains, so nothing would log it; `core train --track` logs such a run in the foreground. Here the same logging
(`mlflow_log.track_run`: once per tracking URI) runs in the background, in the run's task folder
`tasks/mlflow/` (status and log), so the page does not wait for MLflow and the run view can say how it went.

    python -m core.tracking.background MODELS_DIR RUN_ID URI
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from core.processes import TASK_LOG, JobFolder, JobState, JobStatus, exit_process
from core.runs.files import run_files
from core.runs.record import Run
from core.runs.store import RunStore

KIND = "mlflow"


def folder(run: Run) -> JobFolder:
    return JobFolder(run_files(run).task(KIND), TASK_LOG)


def status(run: Run) -> JobStatus | None:
    """How the last background logging of `run` went (a dead process shown as failed); None if never started."""
    jobs = folder(run)
    return jobs.refresh(what="logging to MLflow") if jobs.status_path.exists() else None


def track_later(store: RunStore, run_id: str, uri: str) -> bool:
    """Log the ended run `run_id` to `uri` in a background process, unless it is logged there already or a
    logging of it is under way. True when a process was started."""
    run = store.get(run_id)
    if uri in (run.status.mlflow or {}):
        return False
    current = status(run)
    if current is not None and current.active:
        return False
    jobs = folder(run)
    jobs.directory.mkdir(parents=True, exist_ok=True)
    jobs.log_path.unlink(missing_ok=True)
    jobs.write(JobStatus(state=JobState.QUEUED, queued_at=time.time(), note=uri))
    jobs.launch([sys.executable, "-m", "core.tracking.background", str(store.root), run_id, uri])
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.tracking.background")
    parser.add_argument("models_dir")
    parser.add_argument("run_id")
    parser.add_argument("uri")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s flora: %(message)s")
    store = RunStore(args.models_dir)
    jobs = folder(store.get(args.run_id))
    jobs.claim(state=JobState.RUNNING, started_at=time.time(), stage="logging to MLflow")
    from core.tracking.mlflow_log import track_run  # heavy: mlflow (and Keras for the model it logs)

    result = track_run(store, args.run_id, args.uri)  # never raises: an MLflow error comes back as `error`
    if result.get("error"):
        jobs.update(state=JobState.FAILED, error=result["error"], finished_at=time.time(), stage=None)
        return 1
    jobs.update(state=JobState.DONE, finished_at=time.time(), stage=None)
    return 0


if __name__ == "__main__":
    exit_process(main())

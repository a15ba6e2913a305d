"""`train` and `runs`: start (or find) a run, list the run store, show one run with its command."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from core import run_job
from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cell, emit_json, fail, format_table, job_failed
from core.data.corrections import resolve as resolve_corrections
from core.data.corrections import summary as correction_summary
from core.data.datasets import resolve_dataset_path
from core.errors import InvalidInput, Unavailable
from core.paths import data_dir
from core.processes import JobState
from core.runs.record import Run, RunUnreadable
from core.runs.store import RunStore
from core.settings.config import ConfigError, TrainConfig
from core.settings.options import add_train_flags, config_from_flags, run_command
from core.sharing.people import layer_of
from core.tracking import tracking_uri
from core.train import jobs, multihost
from core.train.ray import train_on_ray

log = logging.getLogger("flora")


def register(sub, common: argparse.ArgumentParser) -> None:
    train = sub.add_parser("train", parents=[common], help="train (or find) a run on a dataset folder")
    train.add_argument(
        "dataset",
        nargs="?",
        metavar="DATA_DIR",
        help="a folder of class folders, or a dataset name under --data-dir",
    )
    train.add_argument("--config", help="a TrainConfig JSON file (or a run's config.json); flags override it")
    add_train_flags(train)
    train.add_argument(
        "--corrections",
        default="kept",
        metavar="kept|none|run:ID|FILE",
        help="label corrections to apply: kept (those kept for the dataset now, the default), none, run:ID (exactly "
        "those a run applied: what a run's copied command says), or a JSON file of them",
    )
    train.add_argument(
        "--owner", help="whose run it is, as the app's runs table shows it (default: this machine's user name)"
    )
    train.add_argument("--workers", type=int, help="image decoding processes (default: one per core)")
    train.add_argument("--force", action="store_true", help="train again even if this run already finished")
    train.add_argument("--json", action="store_true", help="print one JSON object instead of the run id")
    train.add_argument(
        "--track",
        metavar="URI",
        help="log the run to an MLflow tracking server when it ends: settings, curves, metrics, artifacts and the "
        "model (default $MLFLOW_TRACKING_URI; none: no tracking)",
    )
    train.add_argument("--launched-run", help=argparse.SUPPRESS)  # used by the app's background launcher
    train.add_argument(
        "--ray",
        metavar="ADDRESS",
        nargs="?",
        const="",
        help="train as a task on a Ray cluster (head:6379; --ray alone: $FLORA_RAY_ADDRESS): Ray starts it on a node "
        "with a free GPU (or CPU); models/ and data/ must be on storage every node mounts",
    )
    hosts = train.add_argument_group(
        "multi-host (JAX)", "phase 2 data parallel across N processes, one per host; process 0 writes the run"
    )
    hosts.add_argument(
        "--distributed",
        metavar="HOST:PORT",
        help="the coordinator: process 0's address and a port; auto: what SLURM (srun), Open MPI (mpirun) or a "
        "Kubernetes JobSet set for this process (JAX's detection)",
    )
    hosts.add_argument("--num-processes", type=int, metavar="N", help="processes in all (one per host)")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process's number, 0 to N-1 (0 coordinates)")
    add_runtime_option(train)
    train.set_defaults(handler=cmd_train)

    runs = sub.add_parser("runs", parents=[common], help="list the runs in the store (or --show one)")
    runs.add_argument("--show", metavar="RUN", help="one run: its settings, results and the command that reproduces it")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=cmd_runs)


def config_from_args(args: argparse.Namespace, store=None) -> TrainConfig:
    """A TrainConfig from --config (if any), overridden by the flags that were given."""
    base: dict[str, Any] = {}
    if args.config:
        data = json.loads(Path(args.config).read_text())
        base = data.get("config", data) if isinstance(data, dict) else {}
    return config_from_flags(args, TrainConfig.from_dict(base) if base else TrainConfig(), store)


def cmd_train(args: argparse.Namespace) -> int:

    store = store_of(args)
    data_root = data_dir(args.data_dir)
    hosts = None
    if args.distributed:  # one process of a multi-host run: only process 0 writes to the run store
        hosts = multihost.parse(args.distributed, args.num_processes, args.process_id)
        if not hosts.writer:
            import tempfile

            store = RunStore(tempfile.mkdtemp(prefix=f"flora-process-{hosts.process_id}-"))
            args.force = True
    if args.launched_run:
        submission = jobs.submission_for_launched(store, args.launched_run)
    else:
        if not args.dataset:
            print("error: train needs DATA_DIR (a folder of class folders)", file=sys.stderr)
            return EXIT_USAGE
        config = config_from_args(args, store)
        dataset = resolve_dataset_path(args.dataset, data_root)
        corrections = resolve_corrections(args.corrections, data_root, dataset, store)
        if corrections:
            log.info("applying label corrections (%s): %s", args.corrections, correction_summary(corrections))
        owner = args.owner or os_user()
        submission = jobs.submit(store, dataset, config, force=args.force, corrections=corrections, owner=owner)

    if hosts is not None:
        return _train_across_hosts(args, store, data_root, submission, hosts)
    run_id = submission.run_id
    if submission.outcome == jobs.CACHED:
        log.info("run %s already finished with this config and data: cached (use --force to train again)", run_id)
        return _train_result(args, store, run_id, cached=True, tracked=track(args, store, run_id))
    if submission.outcome == jobs.ACTIVE:
        run = submission.run
        log.info(
            "run %s is already %s in another process (pid %s); not starting it twice: waiting for it to end "
            "(Ctrl-C leaves it running)",
            run_id,
            run.state,
            run.status.pid,
        )
        wait_for_run(store, run_id)
        return _train_result(args, store, run_id, cached=False, tracked=track(args, store, run_id))

    index = submission.index
    log.info("run %s: %d images in %d classes from %s", run_id, len(index.entries), len(index.classes), index.root)
    if args.ray is not None:
        return _train_on_ray(args, store, data_root, run_id)
    jobs.install_stop_on_sigterm(store, run_id)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras and downloads print to stdout; keep it for results
            run_job.execute(store, submission, data_root, console=True, ingest_workers=args.workers)
    except Exception as e:  # recorded in the run as failed by execute, which logged its traceback
        return _train_failed(args, store, run_id, e, tracked=track(args, store, run_id))
    return _train_result(args, store, run_id, cached=False, tracked=track(args, store, run_id))


def _train_failed(args, store, run_id: str, error: Exception, where: str = "", tracked: dict | None = None) -> int:
    """A run that failed: why on stderr, its result on stdout, and the exit code (a bug's: its traceback is above)."""
    code = job_failed(f"run {run_id}{where}", error)
    if store is not None:
        _train_result(args, store, run_id, cached=False, tracked=tracked)
    return code


def track(args: argparse.Namespace, store: RunStore, run_id: str) -> dict[str, Any] | None:
    """--track (or $MLFLOW_TRACKING_URI): log the ended run to MLflow once (a run already logged to that URI,
    a cached one too, is not logged again); what `train --json` says under "mlflow", None without tracking.
    A failure to log is a warning only."""
    uri = tracking_uri(args.track)
    if uri is None:
        return None
    from core.tracking.mlflow_log import track_run  # heavy: mlflow

    with contextlib.redirect_stdout(sys.stderr):
        return track_run(store, run_id, uri)


def _train_on_ray(args, store, data_root, run_id: str) -> int:
    """`--ray`: the run as a Ray task on the cluster; this process waits for it as the run's owner."""

    jobs.install_stop_on_sigterm(store, run_id)
    try:
        train_on_ray(store, run_id, data_root, args.ray or None, run_job.ray_task)
    except InvalidInput as e:  # no address anywhere
        store.set_status(run_id, state=JobState.FAILED, finished_at=time.time(), error=str(e))
        return fail(str(e))
    except Unavailable as e:  # the task failed on its node: the run says why
        print(f"error: run {run_id} failed: {e}", file=sys.stderr)
        _train_result(args, store, run_id, cached=False, tracked=track(args, store, run_id))
        return EXIT_FAILED
    return _train_result(args, store, run_id, cached=False, tracked=track(args, store, run_id))


def _train_across_hosts(args, store, data_root, submission, hosts) -> int:
    """One process of a multi-host run: join the others and train (phase 2 across all). Process 0 writes the
    run folder; the others train in the scratch store they were given, removed at the end."""
    import shutil

    try:
        multihost.check_config(submission.config, hosts)
        if submission.outcome != jobs.NEW:
            raise ConfigError(f"run {submission.run_id} is already {submission.run.state}: add --force to train again")
        multihost.initialize(hosts)
    except ConfigError as e:
        if not hosts.writer:
            shutil.rmtree(store.root, ignore_errors=True)
        return fail(str(e))
    log.info("run %s, %s", submission.run_id, hosts.label)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            run_job.execute(store, submission, data_root, console=True, ingest_workers=args.workers, hosts=hosts)
    except Exception as e:  # recorded and logged (traceback) by execute
        return _train_failed(args, None, submission.run_id, e, f" ({hosts.label})")
    finally:
        if not hosts.writer:
            shutil.rmtree(store.root, ignore_errors=True)
    if not hosts.writer:
        print(f"{submission.run_id} (trained as {hosts.label}; process 0 wrote the run)")
        return EXIT_OK
    return _train_result(args, store, submission.run_id, cached=False)


WAIT_POLL_SECONDS = 2.0


def wait_for_run(store, run_id: str, poll: float | None = None) -> Run:
    """Wait until a run another process trains has ended (a dead process counts as failed); log its epochs.
    `poll`: seconds between looks, WAIT_POLL_SECONDS (read at the call) when None."""
    poll = WAIT_POLL_SECONDS if poll is None else poll
    said = None
    while True:
        run = store.refresh(store.get(run_id))
        if not run.active:
            return run
        where = (
            f"{run.state}, epoch {run.status.epoch}/{run.status.epochs_total} in progress"
            if run.status.epoch
            else run.state
        )
        if where != said:
            log.info("run %s: %s", run_id, where)
            said = where
        time.sleep(poll)


def os_user() -> str:
    """This machine's user name (the owner of runs the CLI starts), "local" when there is none."""
    import getpass

    try:
        return getpass.getuser() or "local"
    except (KeyError, OSError):  # no passwd entry (a container with a bare uid)
        return "local"


def _train_result(args, store, run_id: str, cached: bool, tracked: dict[str, Any] | None = None) -> int:
    run = store.get(run_id)
    result = train_result(run, cached)
    if tracked is not None:
        result["mlflow"] = tracked
    if args.json:
        emit_json(result)
    else:
        note = " (cached)" if cached else ""
        if run.state in (JobState.DONE, JobState.STOPPED) and run.status.accuracy is not None:
            print(f"test accuracy {run.status.accuracy:.4f}, state {run.state}{note}", file=sys.stderr)
        elif run.state in (JobState.DONE, JobState.STOPPED) and run.status.map is not None:
            print(f"test mAP {run.status.map:.4f} (multi-label), state {run.state}{note}", file=sys.stderr)
        if tracked is not None:
            print(tracked_line(tracked), file=sys.stderr)
        print(run_id)
    return EXIT_FAILED if run.state is JobState.FAILED else EXIT_OK


def tracked_line(tracked: dict[str, Any]) -> str:
    """Where --track logged the run, in a line: the MLflow run id (and its page), or why it was not logged."""
    uri = tracked["tracking_uri"]
    if tracked.get("error"):
        return f"MLflow: not logged to {uri} ({tracked['error']}): the same command logs it once the server answers"
    where = f" ({tracked['url']})" if tracked.get("url") else ""
    if tracked["already_logged"]:
        return f"MLflow: already logged to {uri} as MLflow run {tracked['run_id']}{where}, not logged again"
    return f"MLflow: logged to {uri} as MLflow run {tracked['run_id']}{where}"


def train_result(run: Run, cached: bool) -> dict[str, Any]:
    """What `train --json` prints about a run: its id, state, test metrics, where it lives."""
    status = run.status
    result = {
        "run_id": run.run_id,
        "cached": cached,
        "state": run.state.value,
        "accuracy": status.accuracy,
        "macro_f1": status.macro_f1,
        **({"task": "multilabel", "map": status.map} if run.multilabel else {}),
        "epochs_done": status.epochs_done,
        "best_epoch": status.best_epoch,
        "device": status.device,
        "run_dir": str(run.directory),
    }
    if status.error:
        result["error"] = status.error
    return result


def cmd_runs(args: argparse.Namespace) -> int:
    store = store_of(args)
    # A read: a run whose process died shows as failed here, but only the app or its owner writes that down.
    if args.show:
        return _show(store.refresh(store.find(args.show), persist=False), args.json)
    runs, unreadable = store.scan()
    rows = [run_row(store.refresh(run, persist=False)) for run in runs]
    rows += [unreadable_row(problem) for problem in unreadable]
    if args.json:
        emit_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no runs in {store.root}", file=sys.stderr)
        return EXIT_OK
    headers = ["run_id", "state", "owner", "dataset", "classes", "size", "weights", "epochs", "accuracy", "created"]
    if any(row.get("map") is not None for row in rows):  # walk 55: "CLASSES 4, ACCURACY -" said of a multi-label run
        headers[4:4] = ["kind"]
        headers.insert(headers.index("accuracy") + 1, "map")
    print(format_table(headers, [[cell(row[h]) for h in headers] for row in rows if row["state"] != UNREADABLE]))
    for problem in unreadable:
        print(f"{problem.run_id}  unreadable: {problem.reason}", file=sys.stderr)
    return EXIT_OK


UNREADABLE = "unreadable"


def unreadable_row(problem: RunUnreadable) -> dict[str, Any]:
    """`core runs --json`'s entry for a run folder it cannot read: the id, the state "unreadable" and why."""
    return {"run_id": problem.run_id, "state": UNREADABLE, "error": problem.reason, "dir": str(problem.directory)}


def run_row(run: Run) -> dict[str, Any]:
    config = run.train_config
    status = run.status
    return {
        "run_id": run.run_id,
        "state": run.state.value,
        "owner": layer_of(run.owner),  # the person at this machine is "local", whether from the app or here
        "dataset": run.dataset_name,
        "kind": "multi-label" if run.multilabel else "single-label",
        "classes": len(run.classes),  # a multi-label run's labels
        "size": config.image_size,
        "weights": config.weights,
        "epochs": f"{status.epochs_done or 0}/{config.total_epochs}",
        "accuracy": status.accuracy,  # a single-label run's test accuracy; a multi-label run's is its test mAP
        "map": status.map if run.multilabel else None,
        "created": datetime.datetime.fromtimestamp(run.created).strftime("%Y-%m-%d %H:%M"),
        "device": status.device,
        "error": status.error,
    }


def _show(run: Run, as_json: bool) -> int:
    command = run_command(run)
    if as_json:
        emit_json({**run_row(run), "command": command, "config": run.train_config.to_dict(), "dir": str(run.directory)})
        return EXIT_OK
    row = run_row(run)
    for key in (
        "run_id",
        "state",
        "owner",
        "dataset",
        "kind",
        "classes",
        "size",
        "weights",
        "epochs",
        "accuracy" if not run.multilabel else "map",
        "created",
        "device",
    ):
        print(f"{key:<10} {cell(row[key])}")
    if row["error"]:
        print(f"error      {row['error']}")
    print(f"folder     {run.directory}")
    print()
    print("reproduce it with:")
    print(f"  {command}")
    return EXIT_OK

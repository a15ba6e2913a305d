"""`sweep` and `sweeps`: search head settings with Optuna on cached features, list sweeps, train the best.

  python -m core sweep DATA --trials N [--timeout S] [--space FILE] [fixed train flags] [--promote] [--json]
  python -m core sweep --sweep ID [--trials N] [--promote]     continue (or promote) a sweep by id
  python -m core sweeps [--show ID | --stop ID] [--json]

The same DATA, fixed flags and space name the same sweep: running the command again continues it
(finished trials are kept) up to N finished trials. `--promote` trains the best trial as an ordinary
run (with `--fine-tune-epochs N`, phase 2 on top), which is evaluated on the test split.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from core import run_job
from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cell, emit_json, fail, format_table, job_failed
from core.cli.runs import config_from_args, os_user, train_result
from core.data.corrections import resolve
from core.data.datasets import resolve_dataset_path
from core.errors import InvalidInput
from core.paths import data_dir, models_dir
from core.processes import JobState
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.settings.options import OPTIONS, add_train_flags, train_command
from core.sharing.people import layer_of
from core.sweeps import ACTIVE, FINISHED, SweepStore, SweepSubmission, default_space, promote, resubmit, submit
from core.sweeps.results import most_accurate
from core.sweeps.space import display_value
from core.tracking import tracking_uri
from core.train import jobs

log = logging.getLogger("flora")


def register(sub, common: argparse.ArgumentParser) -> None:
    sweep = sub.add_parser(
        "sweep",
        parents=[common],
        help="search head settings with Optuna on cached features; --promote trains the best as a run",
        description="Features are extracted once; every trial trains only the head on them. The validation "
        "split chooses; the test split is never used to choose.",
    )
    sweep.add_argument("dataset", nargs="?", metavar="DATA_DIR", help="a folder of class folders, or a dataset name")
    sweep.add_argument("--trials", type=int, metavar="N", help="finished trials to reach, over every launch")
    sweep.add_argument("--timeout", type=float, metavar="S", help="start no new trial after S seconds (this launch)")
    sweep.add_argument(
        "--space",
        metavar="FILE|JSON",
        help='the search space, a JSON file or text: {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": true}, '
        '"head": {"choices": ["", "256", "512,128"]}, ...} (default: rate, dropout, head, smoothing, batch, '
        "views, schedule)",
    )
    sweep.add_argument("--config", help="a TrainConfig JSON file for the fixed settings; flags override it")
    add_train_flags(sweep)
    sweep.add_argument("--sweep", metavar="ID", help="an existing sweep (id or unique prefix) instead of DATA_DIR")
    sweep.add_argument(
        "--promote",
        action="store_true",
        help="train the best trial as an ordinary run, evaluated on the test split (--fine-tune-epochs for phase 2)",
    )
    sweep.add_argument(
        "--corrections",
        default="kept",
        metavar="kept|none|run:ID|FILE",
        help="label corrections the trials and the promoted run apply: kept (those kept for the dataset now, the "
        "default), none, run:ID or a JSON file; recorded with the sweep",
    )
    sweep.add_argument(
        "--owner", help="whose sweep it is (and its promoted run), as the app shows it (default: this machine's user)"
    )
    sweep.add_argument("--workers", type=int, help="image decoding processes (default: one per core)")
    sweep.add_argument("--json", action="store_true", help="print one JSON object: the trials, the best, the run")
    sweep.add_argument(
        "--track",
        metavar="URI",
        help="log the sweep to an MLflow tracking server when it ends, its trials as child runs (and the promoted "
        "run); default $MLFLOW_TRACKING_URI",
    )
    sweep.add_argument("--launched-sweep", help=argparse.SUPPRESS)  # the app's background launcher
    sweep.add_argument(
        "--ray",
        metavar="ADDRESS",
        nargs="?",
        const="",
        help="run the trials on a Ray cluster's workers, sharing the study (--ray alone: $FLORA_RAY_ADDRESS); "
        "needs --trials; models/ and data/ on storage every node mounts",
    )
    sweep.add_argument("--ray-workers", type=int, default=2, metavar="N", help="Ray workers running trials (2)")
    add_runtime_option(sweep)
    sweep.set_defaults(handler=cmd_sweep)

    sweeps = sub.add_parser("sweeps", parents=[common], help="list sweeps (--show one's trials, --stop one)")
    sweeps.add_argument("--show", metavar="ID", help="one sweep: its trials and its best")
    sweeps.add_argument("--stop", metavar="ID", help="ask a running sweep to stop (it continues when launched again)")
    sweeps.add_argument("--json", action="store_true")
    sweeps.set_defaults(handler=cmd_sweeps)


PROMOTION_FIELDS = ("fine_tune_epochs", "unfreeze_stages", "fine_tune_learning_rate")


def cmd_sweep(args: argparse.Namespace) -> int:

    models_root, data_root = models_dir(args.models_dir), data_dir(args.data_dir)
    store = SweepStore(models_root)
    ray = (args.ray or None, max(1, args.ray_workers)) if args.ray is not None else None
    if args.launched_sweep:
        code = _run(store, args.launched_sweep, data_root, args.workers, console=False, ray=ray)
        _track(args, store, args.launched_sweep, None, models_root)
        return code

    submission = _submit(args, models_root, data_root)
    if submission is None:
        return EXIT_USAGE
    sweep_id = submission.sweep.sweep_id
    code = EXIT_OK
    if submission.outcome == ACTIVE:
        log.info("sweep %s is already running (pid %s); not running it twice", sweep_id, submission.sweep.status.pid)
    elif submission.outcome == FINISHED:
        done = submission.sweep.status.trials_done
        log.info("sweep %s already has %s finished trials: nothing to run", sweep_id, done)
    elif submission.outcome is not None:
        code = _run(store, sweep_id, data_root, args.workers, console=True, ray=ray)
    sweep = store.refresh(store.get(sweep_id))
    result = sweep_result(sweep)
    if args.promote:
        if sweep.active:
            return fail(f"sweep {sweep_id} is still running; promote its best when it ends")
        promoted, promoted_code = _promote(args, models_root, data_root, sweep_id)
        result["promoted"] = promoted
        result["promoted_run"] = promoted["run_id"]
        code = code or promoted_code
    _track(args, store, sweep_id, result.get("promoted_run"), models_root)
    _print(result, args.json)
    return code


def _track(args: argparse.Namespace, store: SweepStore, sweep_id: str, promoted: str | None, models_root) -> None:
    """--track (or $MLFLOW_TRACKING_URI): the sweep as a parent MLflow run, its trials (and promoted run) children."""
    uri = tracking_uri(args.track)
    if uri is None:
        return
    from core.tracking.mlflow_log import log_quietly, log_sweep  # heavy: mlflow

    sweep = store.refresh(store.get(sweep_id))
    run = RunStore(models_root).get(promoted) if promoted else None
    with contextlib.redirect_stdout(sys.stderr):
        log_quietly(f"sweep {sweep_id}", log_sweep, sweep_result(sweep), sweep.trials().get("trials", []), uri, run)


def _submit(args: argparse.Namespace, models_root: Path, data_root: Path):
    """The sweep the arguments name, (re)started if there is budget to spend; None after a usage error."""
    if args.sweep:
        given = [o for o in OPTIONS if getattr(args, o.field) is not None]
        fixed_flags = [o.flag for o in given if o.field not in PROMOTION_FIELDS]
        if args.dataset or args.space or args.config or fixed_flags:
            print(
                "error: --sweep continues a sweep as it was defined; its data, space and fixed settings cannot "
                f"change ({', '.join(fixed_flags) or 'DATA_DIR/--space/--config'} given). Start a new sweep instead.",
                file=sys.stderr,
            )
            return None
        if args.trials is None and args.timeout is None:  # only show it (and promote)
            return SweepSubmission(SweepStore(models_root).find(args.sweep), FINISHED)
        return resubmit(models_root, args.sweep, args.trials, args.timeout)
    if not args.dataset:
        print("error: sweep needs DATA_DIR (a folder of class folders) or --sweep ID", file=sys.stderr)
        return None

    fixed = config_from_args(args, store_of(args))
    space = _load_space(args.space) if args.space else default_space(fixed)
    dataset = resolve_dataset_path(args.dataset, data_root)

    owner = args.owner or os_user()
    corrections = resolve(args.corrections, data_root, dataset, store_of(args), person=owner)
    return submit(models_root, dataset, fixed, space, args.trials, args.timeout, corrections=corrections, owner=owner)


def _load_space(value: str) -> Any:
    """--space: JSON text (starting with '{') or a JSON file. Raises InvalidInput with the reason."""
    text = value if value.lstrip().startswith("{") else None
    if text is None:
        path = Path(value).expanduser()
        if not path.is_file():
            raise InvalidInput(f"--space: no such file {value!r} (give a JSON file or JSON text)")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"--space is not valid JSON: {e}") from None


def _run(store, sweep_id: str, data_root: Path, workers: int | None, console: bool, ray=None) -> int:
    """Run the sweep in this process (SIGTERM asks it to stop); the exit status."""
    from core.sweeps.search import run_sweep  # heavy: keras

    signal.signal(signal.SIGTERM, lambda signum, frame: store.request_stop(sweep_id))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints; stdout is for the result
            status = run_sweep(store, sweep_id, data_root, console=console, workers=workers, ray=ray)
    except Exception as e:  # recorded as failed and logged (traceback) by run_sweep
        return job_failed(f"sweep {sweep_id}", e)
    return EXIT_FAILED if status.state is JobState.FAILED else EXIT_OK


def _promote(args, models_root: Path, data_root: Path, sweep_id: str) -> tuple[dict[str, Any], int]:
    """Train the best trial as a run in this process; (the run's result, the exit status)."""

    chosen = TrainConfig().replace(**{f: getattr(args, f) for f in PROMOTION_FIELDS if getattr(args, f) is not None})
    fine_tune = {f: getattr(chosen, f) for f in PROMOTION_FIELDS}
    submission = promote(models_root, data_root, sweep_id, fine_tune, background=False)
    runs = RunStore(models_root)
    failed = EXIT_FAILED
    if submission.outcome == jobs.NEW:
        log.info("training the best trial as run %s", submission.run_id)
        jobs.install_stop_on_sigterm(runs, submission.run_id)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                run_job.execute(runs, submission, data_root, console=True, ingest_workers=args.workers)
        except Exception as e:  # recorded in the run as failed by execute, which logged its traceback
            failed = job_failed(f"run {submission.run_id}", e)
    else:
        log.info("the best trial's settings are run %s already (%s)", submission.run_id, submission.outcome)
    run = runs.get(submission.run_id)
    result = train_result(run, cached=submission.outcome == jobs.CACHED)
    result["command"] = train_command(run.dataset_path, run.train_config)
    return result, failed if run.state is JobState.FAILED else EXIT_OK


def sweep_result(sweep) -> dict[str, Any]:
    """What `sweep --json` prints: the sweep, every trial (settings, validation metrics, state), the best."""
    snapshot = sweep.trials()
    status = sweep.status

    def plain(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in ("curve", "shown")}

    best = snapshot.get("best")
    if best:
        best = {**plain(best), "command": train_command(sweep.dataset_path, TrainConfig.from_dict(best["config"]))}
    return {
        "sweep_id": sweep.sweep_id,
        "state": sweep.state.value,
        "owner": layer_of(sweep.owner),
        "dataset": sweep.dataset_path,
        "sweep_dir": str(sweep.directory),
        "fixed": sweep.spec.get("fixed"),
        "space": sweep.spec.get("space"),
        "trials_target": status.trials_target,
        "timeout_seconds": status.timeout_seconds,
        "trials_done": status.trials_done or 0,
        "trials_pruned": status.trials_pruned or 0,
        "features_seconds": status.features_seconds,
        "device": status.device,
        "note": status.note,
        "error": status.error,
        "chosen_on": "validation split (the test split is never used to choose)",
        "trials": [plain(row) for row in snapshot.get("trials", [])],
        "best": best,
        "importance": snapshot.get("importance", {}),
        "promoted_run": status.promoted_run,
    }


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    rows = result["trials"]
    names = list(result["space"] or {})
    if rows:
        judged = "val_map" if any(r.get("val_map") is not None for r in rows) else "val_accuracy"  # multi-label: mAP
        headers = ["trial", "state", "val_map" if judged == "val_map" else "val_acc", "val_loss", "epochs", "seconds"]
        headers += names
        table = [
            [
                str(r["number"]),
                r["state"],
                cell(r.get(judged)),
                cell(r["val_loss"]),
                cell(r["epochs_run"]),
                cell(r["seconds"]),
                *[_short(r["params"].get(n), n) for n in names],
            ]
            for r in rows
        ]
        print(format_table(headers, table), file=sys.stderr)
    print(
        f"sweep {result['sweep_id']}: {result['state']}, {result['trials_done']} finished trials "
        f"({result['trials_pruned']} pruned){'; ' + result['note'] if result['note'] else ''}",
        file=sys.stderr,
    )
    best = result["best"]
    if best and best.get("val_map") is not None:  # a multi-label sweep: chosen by its validation mAP
        print(f"best (highest validation mAP): trial {best['number']}, mAP {best['val_map']:.4f}", file=sys.stderr)
        print(f"  {best['command']}", file=sys.stderr)
    elif best:
        print(
            f"best (lowest validation loss): trial {best['number']}, loss {best['val_loss']:.4f}, "
            f"validation accuracy {best['val_accuracy']:.4f}",
            file=sys.stderr,
        )
        top = most_accurate(result["trials"])
        if top and top["number"] != best["number"]:
            print(
                f"highest validation accuracy: trial {top['number']}, {top['val_accuracy']:.4f} "
                f"(loss {top['val_loss']:.4f})",
                file=sys.stderr,
            )
        print(f"  {best['command']}", file=sys.stderr)
    if result["importance"]:
        ordered = sorted(result["importance"].items(), key=lambda item: -item[1])
        ranked = ", ".join(f"{k} {v:.2f}" for k, v in ordered)
        print(f"importance: {ranked}", file=sys.stderr)
    promoted = result.get("promoted")
    if promoted and promoted.get("accuracy") is not None:
        print(f"run {promoted['run_id']}: test accuracy {promoted['accuracy']:.4f}", file=sys.stderr)
    print(promoted["run_id"] if promoted else result["sweep_id"])


def _short(raw: Any, name: str) -> str:

    return "-" if raw is None else display_value(name, raw)


def cmd_sweeps(args: argparse.Namespace) -> int:
    store = SweepStore(models_dir(args.models_dir))
    if args.stop:
        sweep = store.find(args.stop)
        if not sweep.active:
            return fail(f"sweep {sweep.sweep_id} is {sweep.state}, not running")
        store.request_stop(sweep.sweep_id)
        print(f"asked sweep {sweep.sweep_id} to stop", file=sys.stderr)
        return EXIT_OK
    if args.show:
        _print(sweep_result(store.refresh(store.find(args.show))), args.json)
        return EXIT_OK
    rows = [
        {
            "sweep_id": s.sweep_id,
            "state": s.state.value,
            "owner": layer_of(s.owner),
            "dataset": s.dataset_name,
            "trials": f"{s.status.trials_done or 0}/{s.status.trials_target or '-'}",
            "pruned": s.status.trials_pruned or 0,
            "best_val_accuracy": s.status.best_val_accuracy,
            "promoted_run": s.status.promoted_run,
        }
        for s in store.list()
    ]
    if args.json:
        emit_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no sweeps in {store.root}", file=sys.stderr)
        return EXIT_OK
    headers = list(rows[0])
    print(format_table(headers, [[cell(row[h]) for h in headers] for row in rows]))
    return EXIT_OK

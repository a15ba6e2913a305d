"""`python -m core ...`: the same engine the pages use, from a terminal.

Results go to stdout (the last line of `train` is the run id, or one JSON object with --json);
progress bars and logs go to stderr, so scripts can read stdout alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from core.config import AUGMENT_PRESETS, AugmentConfig, ConfigError, TrainConfig
from core.processes import RunState

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("flora")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s flora: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except KeyError as e:  # RunNotFound and friends say it well; a bare KeyError only quotes
        print(f"error: {e if type(e) is not KeyError else e.args[0]}", file=sys.stderr)
        return EXIT_FAILED
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", help="the run store (default: $FLORA_MODELS_DIR or models/)")
    common.add_argument("--data-dir", help="datasets and caches (default: $FLORA_DATA_DIR or data/)")

    parser = argparse.ArgumentParser(prog="python -m core", description="Flora: transfer learning on image datasets.")
    sub = parser.add_subparsers(metavar="COMMAND")

    train = sub.add_parser("train", parents=[common], help="train (or find) a run on a dataset folder")
    train.add_argument(
        "dataset",
        nargs="?",
        metavar="DATA_DIR",
        help="a folder of class folders, or a dataset name under --data-dir",
    )
    train.add_argument("--config", help="a TrainConfig JSON file (or a run's config.json); flags override it")
    train.add_argument("--image-size", type=int)
    train.add_argument("--weights", help="imagenet | none | a weights file | a run id or run folder")
    train.add_argument("--epochs", type=int, help="phase 1 epochs (backbone frozen)")
    train.add_argument("--fine-tune-epochs", type=int, help="phase 2 epochs (top stages unfrozen)")
    train.add_argument("--unfreeze-stages", type=int, help="residual stages to unfreeze in phase 2 (1-4)")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, dest="learning_rate", help="phase 1 learning rate")
    train.add_argument("--fine-tune-lr", type=float, dest="fine_tune_learning_rate", help="phase 2 learning rate")
    train.add_argument("--head", help="Dense units of the head, comma separated (e.g. 256 or 512,128; '' for none)")
    train.add_argument("--dropout", type=float)
    train.add_argument("--label-smoothing", type=float)
    train.add_argument(
        "--patience",
        type=int,
        dest="early_stopping_patience",
        help="early-stopping patience (0 = off)",
    )
    train.add_argument("--class-weights", dest="class_weighting", choices=["auto", "balanced", "none"])
    train.add_argument(
        "--augment",
        help=f"a preset ({', '.join(AUGMENT_PRESETS)}) or a JSON object of AugmentConfig fields",
    )
    train.add_argument("--augmented-views", type=int, help="cached augmented views per training image")
    train.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="train phase 1 on images, not cached features",
    )
    train.add_argument("--val-fraction", type=float)
    train.add_argument("--test-fraction", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--workers", type=int, help="image decoding processes (default: one per core)")
    train.add_argument("--force", action="store_true", help="train again even if this run already finished")
    train.add_argument("--json", action="store_true", help="print one JSON object instead of the run id")
    train.add_argument("--launched-run", help=argparse.SUPPRESS)  # used by the app's background launcher
    train.set_defaults(handler=cmd_train)

    runs = sub.add_parser("runs", parents=[common], help="list the runs in the store")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=cmd_runs)

    evaluate = sub.add_parser("evaluate", parents=[common], help="test-split metrics of a run")
    evaluate.add_argument("run_id", metavar="RUN_ID", help="a run id (a unique prefix is enough)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = sub.add_parser("predict", parents=[common], help="classify images with a run's model")
    predict.add_argument("run_id", metavar="RUN_ID")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=cmd_predict)

    _add_extra_commands(sub, common)
    return parser


def _add_extra_commands(sub, common) -> None:
    """Subcommands that live in their own modules (data, bench) register here when present."""
    for module_name in ("core.data_cli", "core.bench"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue
        module.register(sub, common)


# ----------------------------------------------------------------------------- helpers


def _store(args):
    from core.paths import models_dir
    from core.runs import RunStore

    return RunStore(models_dir(args.models_dir))


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def config_from_args(args: argparse.Namespace, store=None) -> TrainConfig:
    """A TrainConfig from --config (if any), overridden by the flags that were given."""
    base: dict[str, Any] = {}
    if args.config:
        data = json.loads(Path(args.config).read_text())
        base = data.get("config", data) if isinstance(data, dict) else {}
    config = TrainConfig.from_dict(base) if base else TrainConfig()
    changes: dict[str, Any] = {}
    for name in (
        "image_size",
        "epochs",
        "fine_tune_epochs",
        "unfreeze_stages",
        "batch_size",
        "learning_rate",
        "fine_tune_learning_rate",
        "dropout",
        "label_smoothing",
        "early_stopping_patience",
        "class_weighting",
        "augmented_views",
        "val_fraction",
        "test_fraction",
        "seed",
    ):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if args.head is not None:
        changes["head"] = tuple(int(u) for u in args.head.replace(" ", "").split(",") if u)
    if args.weights is not None:
        changes["weights"] = resolve_weights_arg(args.weights, store)
    if args.augment is not None:
        changes["augment"] = parse_augment(args.augment)
    if args.no_feature_cache:
        changes["feature_cache"] = False
    return config.replace(**changes) if changes else config


def resolve_weights_arg(value: str, store=None) -> str:
    """imagenet / none stay; a run id becomes "run:<id>"; a path becomes absolute."""
    if value.lower() in ("imagenet", "none"):
        return value.lower()
    if value.startswith("run:"):
        return value
    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    if store is not None:
        try:
            return f"run:{store.find(value).run_id}"
        except KeyError:
            pass
    raise ConfigError(
        f"weights must be 'imagenet', 'none', a weights file, a run folder or a run id. Received: weights={value!r}"
    )


def parse_augment(value: str) -> AugmentConfig:
    if value in AUGMENT_PRESETS:
        return AUGMENT_PRESETS[value]
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(
            f"--augment must be a preset ({', '.join(AUGMENT_PRESETS)}) or a JSON object. Received: {value!r}"
        ) from None
    return AugmentConfig.from_dict(data)


# ----------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from core import jobs
    from core.datasets import resolve_dataset_path
    from core.paths import data_dir

    store = _store(args)
    data_root = data_dir(args.data_dir)
    if args.launched_run:
        submission = jobs.submission_for_launched(store, args.launched_run)
    else:
        if not args.dataset:
            print("error: train needs DATA_DIR (a folder of class folders)", file=sys.stderr)
            return EXIT_USAGE
        config = config_from_args(args, store)
        dataset = resolve_dataset_path(args.dataset, data_root)
        submission = jobs.submit(store, dataset, config, force=args.force)

    run_id = submission.run_id
    if submission.outcome == jobs.CACHED:
        log.info(
            "run %s already finished with this config and data: cached (use --force to train again)",
            run_id,
        )
        return _train_result(args, store, run_id, cached=True)
    if submission.outcome == jobs.ACTIVE:
        log.info(
            "run %s is already %s (pid %s); not starting it twice",
            run_id,
            submission.run.state,
            submission.run.status.pid,
        )
        return _train_result(args, store, run_id, cached=False)

    log.info(
        "run %s: %d images in %d classes from %s",
        run_id,
        len(submission.index.entries),
        len(submission.index.classes),
        submission.index.root,
    )
    jobs.install_stop_on_sigterm(store, run_id)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras and downloads print to stdout; keep it for results
            jobs.execute(store, submission, data_root, console=True, ingest_workers=args.workers)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        print(f"error: run {run_id} failed: {type(e).__name__}: {e}", file=sys.stderr)
        _train_result(args, store, run_id, cached=False)
        return EXIT_FAILED
    return _train_result(args, store, run_id, cached=False)


def _train_result(args, store, run_id: str, cached: bool) -> int:
    run = store.get(run_id)
    status = run.status
    result = {
        "run_id": run_id,
        "cached": cached,
        "state": run.state.value,
        "accuracy": status.accuracy,
        "macro_f1": status.macro_f1,
        "epochs_done": status.epochs_done,
        "best_epoch": status.best_epoch,
        "device": status.device,
        "run_dir": str(run.directory),
    }
    if status.error:
        result["error"] = status.error
    if args.json:
        _emit_json(result)
    else:
        if run.state in (RunState.DONE, RunState.STOPPED) and status.accuracy is not None:
            note = " (cached)" if cached else ""
            print(f"test accuracy {status.accuracy:.4f}, state {run.state}{note}", file=sys.stderr)
        print(run_id)
    return EXIT_FAILED if run.state is RunState.FAILED else EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    store = _store(args)
    runs = [store.refresh(run) for run in store.list()]
    rows = [run_row(run) for run in runs]
    if args.json:
        _emit_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no runs in {store.root}", file=sys.stderr)
        return EXIT_OK
    headers = [
        "run_id",
        "state",
        "dataset",
        "classes",
        "size",
        "weights",
        "epochs",
        "accuracy",
        "created",
    ]
    table = [[_cell(row[h]) for h in headers] for row in rows]
    print(_format_table(headers, table))
    return EXIT_OK


def run_row(run) -> dict[str, Any]:
    import datetime

    config = run.train_config
    status = run.status
    return {
        "run_id": run.run_id,
        "state": run.state.value,
        "dataset": run.dataset_name,
        "classes": len(run.classes),
        "size": config.image_size,
        "weights": config.weights,
        "epochs": f"{status.epochs_done or 0}/{config.total_epochs}",
        "accuracy": status.accuracy,
        "created": datetime.datetime.fromtimestamp(run.created).strftime("%Y-%m-%d %H:%M"),
        "device": status.device,
        "error": status.error,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.evaluation import Evaluation

    store = _store(args)
    run = store.refresh(store.find(args.run_id))
    evaluation = Evaluation.load(run.directory)
    summary = evaluation.summary()
    if args.json:
        _emit_json({"run_id": run.run_id, **summary})
        return EXIT_OK
    print(f"run {run.run_id}  ({run.dataset_name}, {len(run.classes)} classes, state {run.state})")
    print(f"accuracy      {summary['accuracy']:.4f}  on {summary['test_images']} test images")
    if "top5_accuracy" in summary:
        print(f"top-5         {summary['top5_accuracy']:.4f}")
    for average in ("macro", "weighted"):
        m = summary[average]
        print(f"{average:<13} precision {m['precision']:.4f}  recall {m['recall']:.4f}  f1 {m['f1']:.4f}")
    print()
    table = evaluation.per_class()
    rows = [
        [r["class"], f"{r.precision:.4f}", f"{r.recall:.4f}", f"{r.f1:.4f}", str(r.support)]
        for _, r in table.iterrows()
    ]
    print(_format_table(["class", "precision", "recall", "f1", "support"], rows))
    print()
    matrix = evaluation.confusion_matrix()
    if len(run.classes) <= 20:
        print("confusion matrix (rows: true, columns: predicted)")
        names = [c[:10] for c in evaluation.classes]
        print(
            _format_table(
                ["true \\ pred", *names],
                [[n, *map(str, row)] for n, row in zip(names, matrix, strict=True)],
            )
        )
    confused = evaluation.most_confused().head(10)
    if len(confused):
        print()
        print("most confused pairs")
        print(
            _format_table(
                ["true", "predicted", "count"],
                [[r.true, r.predicted, str(r["count"])] for _, r in confused.iterrows()],
            )
        )
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from core.inference import Predictor

    store = _store(args)
    run = store.find(args.run_id)
    with contextlib.redirect_stdout(sys.stderr):
        predictor = Predictor(run)
        results = predictor.predict(args.images, top_k=args.top_k)
    if args.json:
        _emit_json({"run_id": run.run_id, "results": [r.to_dict() for r in results]})
    else:
        for result in results:
            if result.ok:
                tops = ", ".join(f"{label} {p:.3f}" for label, p in result.top)
                print(f"{result.source}: {tops}")
            else:
                print(f"{result.source}: error: {result.error}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED

"""`lr-find`: the learning-rate range test (core.train.lr_find) on a run's settings or a dataset's."""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_OK, emit_json, fail, format_table
from core.cli.sources import run_or_none
from core.data.corrections import resolve as resolve_corrections
from core.data.datasets import resolve_dataset_path, scan_dataset
from core.paths import cache_dir, data_dir
from core.runs.split import check_dataset
from core.settings.config import TrainConfig
from core.settings.options import BY_FIELD, add_train_flags, config_from_flags
from core.train.lr_find import HEAD, PHASES, STEPS, RangeTest, rate_field, rounded

TABLE_ROWS = 16  # points of the curve the text output lists


def register(sub, common: argparse.ArgumentParser) -> None:
    finder = sub.add_parser(
        "lr-find",
        parents=[common],
        help="find a learning rate: the range test (a rate growing exponentially, the loss it gives) and a suggestion",
    )
    finder.add_argument(
        "source",
        metavar="DATASET_OR_RUN",
        help="a run id, prefix or alias (its settings and split), or a dataset folder or name (the default "
        "settings and the label corrections kept for it); the flags below change the settings either way",
    )
    finder.add_argument(
        "--phase",
        choices=PHASES,
        default=HEAD,
        help=f"head: phase 1, the head on cached features ({STEPS[HEAD]} steps by default: seconds); fine-tune: "
        f"phase 2, the head trained first, then the top stages unfrozen, on images ({STEPS['fine-tune']} steps: "
        "slow on a CPU)",
    )
    finder.add_argument("--steps", type=int, metavar="N", help="optimizer steps, one rate each (at least 10)")
    finder.add_argument("--workers", type=int, help="image decoding processes (default: one per core)")
    finder.add_argument("--json", action="store_true", help="one JSON object: suggested_lr, method, reason, curve, ...")
    add_train_flags(finder.add_argument_group("settings", "as `core train` takes them"))
    add_runtime_option(finder)
    finder.set_defaults(handler=cmd_lr_find)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from core.train.lr_find import RangeTestFailed, find_learning_rate  # heavy: keras

    store = store_of(args)
    data_root = data_dir(args.data_dir)
    run = run_or_none(store, args.source, aliases=True)  # else a dataset
    if run is not None:
        index = check_dataset(run)
        config = config_from_flags(args, run.train_config, store)
        corrections = run.corrections
    else:
        dataset = resolve_dataset_path(args.source, data_root)
        index = scan_dataset(dataset)
        config = config_from_flags(args, TrainConfig(), store)
        corrections = resolve_corrections("kept", data_root, dataset, store)
    with contextlib.redirect_stdout(sys.stderr):  # Keras prints to stdout; keep it for the result
        try:
            result = find_learning_rate(
                index,
                config,
                cache_dir(data_root),
                phase=args.phase,
                steps=args.steps,
                corrections=corrections,
                models_dir=store.root,
                console=True,
                workers=args.workers,
            )
        except RangeTestFailed as e:
            return fail(str(e))
    if args.json:
        emit_json({**result.to_dict(), "run_id": run.run_id if run else None})
        return EXIT_OK
    print_result(result, config)
    return EXIT_OK


def print_result(result: RangeTest, config: TrainConfig) -> None:
    """The curve as a short table (the suggestion's row marked), the suggestion, why, and the flag to use it."""
    lrs = np.array([lr for lr, _ in result.curve])
    chosen = int(np.argmin(np.abs(np.log(lrs) - np.log(result.suggested_lr))))
    rows = sorted({*np.linspace(0, len(lrs) - 1, TABLE_ROWS).round().astype(int).tolist(), chosen})
    table = [
        [
            f"{lrs[i]:.1e}",
            f"{result.curve[i][1]:.4f}",
            f"{result.raw_losses[i]:.4f}",
            "<- suggested" if i == chosen else "",
        ]
        for i in rows
    ]
    print(
        f"range test, {result.phase} phase: {result.steps} of {result.planned_steps} steps in {result.seconds:.1f} s; "
        f"it ended at {result.stopped}"
    )
    print(format_table(["lr", "smoothed loss", "loss", ""], table))
    print()
    field = rate_field(result.phase)
    print(f"suggested learning rate: {rounded(result.suggested_lr):.1e} ({result.method})")
    print(f"why: {result.reason}")
    print(
        f"also: steepest fall at {result.steepest_lr:.1e}, the lowest loss's rate / 10 {result.min_lr_over_10:.1e}; "
        f"these settings train at {getattr(config, field):g}"
    )
    print(f"to use it: {BY_FIELD[field].flag} {rounded(result.suggested_lr):g}")

"""`label-next`: which unlabelled photos to label next, and (`--simulate`) whether that beats random on this data."""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_OK, emit_json, fail, format_table, stage_progress
from core.cli.sources import dataset_options, run_or_dataset
from core.data.datasets import split_indices
from core.data.unlabelled import Unlabelled
from core.paths import data_dir
from core.results.label_next import data as label_next_data
from core.results.label_next import tasks as label_next_tasks
from core.results.train_features import training_features
from core.runs.analysis import RunAnalysis


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "label-next",
        parents=[common],
        help="the unlabelled photos to label next (uncertain and varied); --simulate: does that beat random here?",
    )
    parser.add_argument("source", metavar="RUN_OR_DATASET", help="a run id (prefix), or a dataset folder or name")
    parser.add_argument("--batch", type=int, default=10, help="photos per batch (default 10)")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="hide the labels of the labelled photos, label them again batch by batch with Flora's strategy and at "
        "random, and report the labels each needs to reach 95%% of the accuracy with every label",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="with --simulate: seeds per strategy (default 3, at least 3)"
    )
    dataset_options(parser, "its split's and a random start's seed")
    parser.add_argument("--json", action="store_true")
    add_runtime_option(parser)
    parser.set_defaults(handler=cmd_label_next)


def cmd_label_next(args: argparse.Namespace) -> int:
    if args.batch < 1:
        return fail(f"--batch must be at least 1. Received: {args.batch}")
    if args.simulate and args.seeds < 3:
        return fail(f"--seeds must be at least 3, so the saving has a spread. Received: {args.seeds}")
    data_root = data_dir(args.data_dir)
    named = run_or_dataset(args, store_of(args), data_root)
    run, dataset = named.run, named.dataset
    with contextlib.redirect_stdout(sys.stderr):
        if run is not None:
            if args.simulate:
                result = label_next_tasks.simulate_run(run, data_root, args.seeds, progress=stage_progress)
            else:
                train = training_features(run, data_root, stage_progress)
                unlabelled = Unlabelled.load(data_root, dataset)
                computed = label_next_data.UnlabelledFeatures.load(run.directory)
                if computed is None or computed.fingerprint != unlabelled.index().fingerprint:
                    computed = label_next_data.prepare_run(run, data_root, stage_progress)
                classes = RunAnalysis.load(run.directory).classes
                bench = label_next_data.workbench(
                    classes, train.features, train.labels, unlabelled, computed, labelled_paths=train.paths
                )
                source = f"run {run.run_id}"
        else:
            found = label_next_data.dataset_pool(named.photos, stage_progress)
            classes, source = found.classes, found.source
            if args.simulate:
                split = split_indices(found.labels, classes, seed=args.seed)
                pool, val = np.concatenate([split.train, split.test]), split.val
                result = label_next_data.simulate_features(
                    found.features[pool], found.labels[pool], found.features[val], found.labels[val], len(classes),
                    args.seeds, None, stage_progress,
                )  # fmt: skip
                result = {"source": f"{source}: train and test photos as the pool, validation to score", **result}
            else:
                unlabelled = Unlabelled.load(data_root, dataset)
                bench = label_next_data.workbench(
                    classes, found.features, found.labels, unlabelled, found.unlabelled, args.seed, found.paths
                )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.simulate:
        return print_simulation(result, args.json)
    picks = bench.next_batch(args.batch) if bench.pending_paths else []
    out = {
        "source": source,
        "dataset": str(dataset),
        "pending": len(bench.pending_paths),
        "labelled_since": bench.newly_labelled,
        "unreadable": bench.failures,
        "batch": [p.to_dict() for p in picks],
    }
    if args.json:
        emit_json(out)
        return EXIT_OK
    if not bench.pending_paths:
        print(
            f"no unlabelled photos waiting in {dataset}: put photos without a label in its unlabelled/ folder "
            "(or add them on the Dataset page), then run this again"
        )
        return EXIT_OK
    print(f"{len(bench.pending_paths)} unlabelled photos waiting; the {len(picks)} to label next ({source}):")
    rows = [
        [p.path, ", ".join(f"{c} {q:.0%}" for c, q in p.guesses), p.reason] for p in picks
    ]  # fmt: skip
    print(format_table(["photo", "the model's guesses", "why this one"], rows))
    for failure in bench.failures:
        print(f"could not read {failure['path']}: {failure['reason']}")
    return EXIT_OK


def print_simulation(result: dict, as_json: bool) -> int:
    if as_json:
        emit_json(result)
        return EXIT_OK
    print(
        f"target: {result['target_accuracy']:.1%} validation accuracy ({result['target_fraction']:.0%} of "
        f"{result['full_accuracy']:.1%}, the head with every one of {result['pool']} labels); {result['seeds']} seeds"
    )
    rows = []
    for name, figures in result["strategies"].items():
        spread = figures["spread"]
        rows.append(
            [
                name,
                "not reached" if figures["labels_to_target"] is None else f"{figures['labels_to_target']:.0f}",
                "-" if not spread else f"{spread[0]}-{spread[1]}",
                ", ".join(f"{c}:{a:.0%}" for c, a in figures["curve"][:8]),
            ]
        )
    print(format_table(["strategy", "labels to target", "over seeds", "curve (labels: accuracy)"], rows))
    print(result["verdict"])
    return EXIT_OK

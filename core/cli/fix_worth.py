"""`fix-worth`: what fixing labels would change on a run's validation photos, estimated in seconds before the long
run (core.results.labels.fix_worth), with its 95% interval and what it cannot see."""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_OK, emit_json, fail, format_table, stage_progress
from core.cli.sources import analysed
from core.data.corrections import summary
from core.paths import data_dir
from core.results import tasks as run_tasks
from core.results.labels import fix_worth
from core.results.labels import issues as label_issues
from core.results.labels.fix_worth_report import caveats, change_words, from_to, headline, how, touched_words, verdict
from core.runs.files import run_files
from core.settings.options import train_command


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "fix-worth",
        parents=[common],
        help="estimate what fixing labels would change (validation accuracy, macro F1), in seconds, before a run",
    )
    parser.add_argument("run_id", metavar="RUN", help="a run id or its first characters")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--marked",
        action="store_true",
        help="the label corrections kept for the run's dataset (relabel, exclude), as `train --corrections kept` "
        "applies them (the default)",
    )
    which.add_argument(
        "--suspects",
        action="store_true",
        help="every suspected label error among the training photos, relabelled to its suggestion or as marked "
        "(Fine ones left out; found first if the run has none yet)",
    )
    which.add_argument("--top", type=int, metavar="N", help="the N most suspicious of those")
    which.add_argument(
        "--corrections",
        metavar="VALUE",
        help="a set named as `train --corrections` takes it: run:<id> (the ones that run applied) or a JSON file",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=fix_worth.SEEDS,
        metavar="K",
        help=f"paired head fits on resamples of the training photos (default {fix_worth.SEEDS})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object: the estimate, its words and caveats")
    add_runtime_option(parser)
    parser.set_defaults(handler=cmd_fix_worth)


def choice_of(args: argparse.Namespace) -> fix_worth.Choice:
    if args.suspects:
        return fix_worth.Choice(fix_worth.SUSPECTS)
    if args.top is not None:
        return fix_worth.Choice(fix_worth.TOP, top=args.top)
    if args.corrections:
        return fix_worth.Choice(fix_worth.GIVEN, given=args.corrections)
    return fix_worth.Choice(fix_worth.MARKED)


def cmd_fix_worth(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        return fail(f"--seeds must be at least 1. Received: {args.seeds}")
    store = store_of(args)
    data_root = data_dir(args.data_dir)
    run = analysed(store, args.run_id)
    choice = choice_of(args)
    with contextlib.redirect_stdout(sys.stderr):  # Keras prints to stdout; keep it for the result
        if choice.kind in (fix_worth.SUSPECTS, fix_worth.TOP) and label_issues.load(run.directory) is None:
            print(f"finding run {run.run_id}'s suspected label errors first", file=sys.stderr)
            run_tasks.compute_label_issues(run, data_root, stage_progress)
        try:
            corrections = fix_worth.chosen_corrections(run, data_root, choice, store=store)
            estimate = fix_worth.estimate_run(
                run, data_root, corrections, choice, seeds=args.seeds, progress=stage_progress
            )
        except fix_worth.FixWorthError as e:
            return fail(str(e))
    notes = caveats(estimate, run)
    if args.json:
        emit_json({**estimate.to_dict(), "headline": headline(estimate), "how": how(estimate), "caveats": notes})
        return EXIT_OK
    print(f"run {run.run_id}: {estimate.words}, {summary(corrections)}; they change {touched_words(estimate)}")
    for scoring, title in ((fix_worth.AS_LABELLED, "as labelled"), (fix_worth.CORRECTED, "corrected labels")):
        figures = estimate.results.get(scoring)
        if figures is None:
            continue
        rows = [
            [
                name,
                " -> ".join(from_to(change)),
                change_words(change),
                verdict(change).split(":")[0],
            ]
            for name, change in (("accuracy", figures["accuracy"]), ("macro F1", figures["macro_f1"]))
        ]
        print(f"\nvalidation, {title}:")
        print(format_table(["", "without -> with the fix", "change", "reading"], rows))
    print(f"\n{how(estimate)}")
    print("what it cannot see:")
    for note in notes:
        print(f"  - {note}")
    print(
        f"stored with the run ({run_files(run).fix_worth.name}): once a run applies exactly these corrections, the "
        "Compare page shows this estimate beside its result"
    )
    if choice.kind == fix_worth.MARKED:
        command = train_command(run.dataset_path, run.train_config, corrections="kept")
        print(f"train with them (this run's settings): {command}")
    return EXIT_OK

"""`robustness`: a run's accuracy under the 15 ImageNet-C corruptions at 5 severities, measured once and kept."""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_OK, emit_json, fail, format_table, stage_progress
from core.cli.sources import analysed
from core.paths import data_dir
from core.results.evaluation import robustness


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "robustness",
        parents=[common],
        help="accuracy under the 15 ImageNet-C corruptions at 5 severities (measured once, then read back)",
    )
    parser.add_argument("run_id", metavar="RUN")
    parser.add_argument(
        "--photos",
        type=int,
        default=robustness.MAX_PHOTOS,
        help=f"test photos to measure on, a stratified sample of more (default {robustness.MAX_PHOTOS}); each costs "
        "76 forward passes",
    )
    parser.add_argument("--force", action="store_true", help="measure again even if a report is stored")
    parser.add_argument(
        "--against",
        metavar="RUN",
        help="also the corruption errors divided by this run's (measured on the same photos)",
    )
    parser.add_argument("--json", action="store_true")
    add_runtime_option(parser)
    parser.set_defaults(handler=cmd_robustness)


def cmd_robustness(args: argparse.Namespace) -> int:
    store = store_of(args)
    run = analysed(store, args.run_id)
    if args.photos < 1:
        return fail(f"--photos must be at least 1. Received: {args.photos}")
    report = None if args.force else robustness.load(run.directory)
    if report is not None and report.photos != min(args.photos, report.test_photos):
        report = None  # another sample size was asked for
    if report is None:
        cost = robustness.estimate(run, store.list(), args.photos, data_dir(args.data_dir))
        print(f"measuring: {cost.text}", file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):
            report = robustness.measure(run, data_dir(args.data_dir), stage_progress, limit=args.photos)
    baseline = None
    if args.against:
        other = analysed(store, args.against)
        baseline = robustness.load(other.directory)
        if baseline is None:
            return fail(f"run {other.run_id} has no robustness report: run `python -m core robustness {other.run_id}`")
    try:
        relative = report.against(baseline) if baseline is not None else None
    except robustness.NotComparable as e:
        return fail(str(e))
    if args.json:
        emit_json({**report.summary(), **({"against": relative} if relative else {})})
        return EXIT_OK
    print(f"run {run.run_id}: {report.words()}")
    ratio = (relative or {}).get("ce", {})
    rows = [
        [
            r["corruption"].replace("_", " "),
            r["family"],
            *(f"{r[f'severity {s}']:.3f}" for s in robustness.SEVERITIES),
            f"{r['drop']:+.3f}",
            f"{r['CE']:.3f}",
            f"{r['relative CE']:.3f}",
            "-" if ratio.get(r["corruption"]) is None else f"{ratio[r['corruption']]:.2f}",
        ]
        for r in report.rows()
    ]
    headers = ["corruption", "family", "1", "2", "3", "4", "5", "drop", "CE", "added", "CE / baseline"]
    print(format_table(headers, rows))
    print(
        f"clean accuracy {report.clean_accuracy:.3f}; mCE {report.mce:.3f}, error added {report.relative_mce:.3f}"
        + (f"; mCE against {relative['baseline']}: {relative['mce']:.2f}" if relative and relative["mce"] else "")
    )
    print(f"measured in {report.seconds:.0f} s on {report.device}; note: {'; '.join(report.notes)}")
    return EXIT_OK

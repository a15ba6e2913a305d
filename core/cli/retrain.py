"""`retrain` and `feedback-compare`: train a run's settings again on its dataset plus the feedback photos, then
set old and new side by side on the same test photos (and the feedback photos)."""

from __future__ import annotations

import argparse
import contextlib
import sys

from core import run_job
from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_FAILED, EXIT_OK, emit_json, format_table
from core.cli.runs import os_user
from core.paths import data_dir
from core.retrain import RetrainError, old_vs_new_rows, promotion_advice, retrain_with_feedback, stored_comparison
from core.serving.aliases import resolve
from core.train import jobs


def register(sub, common: argparse.ArgumentParser) -> None:
    retrain = sub.add_parser("retrain", parents=[common], help="retrain a run on its dataset + feedback photos")
    retrain.add_argument("run_id", metavar="RUN", help="a run id, a unique prefix or an alias")
    retrain.add_argument("--with-feedback", action="store_true", required=True, help="add the corrected photos")
    retrain.add_argument("--background", action="store_true", help="start it detached and return at once")
    retrain.add_argument("--json", action="store_true")
    add_runtime_option(retrain)
    retrain.set_defaults(handler=cmd_retrain)

    compare = sub.add_parser(
        "feedback-compare",
        parents=[common],
        help="a run vs its retrained successor on the same test photos and on the feedback photos",
    )
    compare.add_argument("old", metavar="OLD")
    compare.add_argument("new", metavar="NEW")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=cmd_compare)


def cmd_retrain(args: argparse.Namespace) -> int:

    store = store_of(args)
    data_root = data_dir(args.data_dir)
    old = resolve(store, args.run_id).run

    submission = retrain_with_feedback(store, old, data_root, background=args.background, owner=os_user())
    print(f"run {submission.run_id} ({submission.outcome}) on {submission.index.root}", file=sys.stderr)
    if submission.outcome == jobs.NEW and not args.background:
        with contextlib.redirect_stdout(sys.stderr):
            run_job.execute(store, submission, data_root, console=True)
    new = store.get(submission.run_id)
    if args.background or not new.evaluated:
        emit_json({"run_id": new.run_id, "state": new.state.value}) if args.json else print(new.run_id)
        return EXIT_OK if new.state.value != "failed" else EXIT_FAILED
    return _print_comparison(old, new, data_root, args.json)


def cmd_compare(args: argparse.Namespace) -> int:

    store = store_of(args)
    old, new = resolve(store, args.old).run, resolve(store, args.new).run
    return _print_comparison(old, new, data_dir(args.data_dir), args.json)


def _print_comparison(old, new, data_root, as_json: bool) -> int:

    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = stored_comparison(old, new, data_root)
    except RetrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        emit_json(result)
        return EXIT_OK
    rows = [[r["metric"], f"{r['old']:.4f}", f"{r['new']:.4f}", f"{r['change']:+.4f}"] for r in old_vs_new_rows(result)]
    print(f"old {old.run_id} vs new {new.run_id} on the same {result['test_images']} test photos")
    print(format_table(["metric", "old", "new", "change"], rows))
    print(f"is the difference real? {result['pairs'][0]['verdict']} (McNemar's exact test)")
    for reason in promotion_advice(result):
        print(f"think twice before promoting: {reason}")
    print(f"promote with: python -m core alias production {new.run_id}")
    return EXIT_OK

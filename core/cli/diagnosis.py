"""`analyse`, `calibrate`, `label-issues`, `compare`: why a run got things wrong, from its stored arrays."""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.cli import add_runtime_option, store_of
from core.cli.compare_labels import compare_labels
from core.cli.output import EXIT_FAILED, EXIT_OK, emit_json, fail, format_table, stage_progress
from core.cli.results import not_evaluated_reason
from core.cli.selective import print_selective
from core.cli.sources import analysed, dataset_options, run_or_dataset
from core.data.corrections import Corrections
from core.paths import data_dir
from core.results import tasks as run_tasks
from core.results.evaluation.compare import NotComparable, compare, load_result
from core.results.evaluation.multilabel_compare import check_kinds
from core.results.labels.issues import export_csv, export_rows
from core.results.labels.issues import load as load_issues
from core.results.labels.verdict import probability_text, verdict
from core.results.probabilities import conformal, selective
from core.results.probabilities.calibration import calibrate_run
from core.results.probabilities.calibration_words import bound_words
from core.results.probabilities.promise import promise_words, shared_words


def register(sub, common: argparse.ArgumentParser) -> None:
    analyse = sub.add_parser(
        "analyse",
        parents=[common],
        help="store a run's validation/test logits and features (once, for runs trained before they were kept)",
    )
    analyse.add_argument("run_id", metavar="RUN")
    analyse.add_argument("--force", action="store_true", help="compute them again even if they are stored")
    analyse.add_argument("--json", action="store_true")
    add_runtime_option(analyse)
    analyse.set_defaults(handler=cmd_analyse)

    calibrate = sub.add_parser(
        "calibrate", parents=[common], help="fit a run's temperature on validation; ECE and NLL before/after on test"
    )
    calibrate.add_argument("run_id", metavar="RUN")
    calibrate.add_argument("--refit", action="store_true", help="fit again even if a temperature is stored")
    calibrate.add_argument(
        "--conformal",
        metavar="LEVEL",
        type=float,
        help="also fit prediction sets that hold the right class this share of the time: 0.9 (or its alpha, 0.1); "
        "fitted on half the test split, reported on the other half",
    )
    calibrate.add_argument(
        "--method",
        choices=conformal.METHODS,
        default=conformal.DEFAULT_METHOD,
        help="with --conformal: raps (regularised adaptive sets, the default) or aps",
    )
    calibrate.add_argument(
        "--thresholds",
        choices=("auto", "per-class", "overall"),
        default="auto",
        help="with --conformal: per-class (each class covered at the level; larger sets for hard classes), overall "
        "(covered on average over the classes; smaller sets), auto (per class when most classes have enough photos)",
    )
    calibrate.add_argument(
        "--max-error",
        metavar="LEVEL",
        type=float,
        help="also answer only when sure: the confidence threshold that keeps wrong answers at or below this share of "
        "the photos answered (0.05, or 5), promised with probability 90%% (Learn then Test on half the test split, "
        "recounted on the other half)",
    )
    calibrate.add_argument("--json", action="store_true")
    add_runtime_option(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)

    issues = sub.add_parser(
        "label-issues",
        parents=[common],
        help="photos whose label is probably wrong (a run's, or a dataset's through a ResNet-50)",
    )
    issues.add_argument("source", metavar="DATASET_OR_RUN", help="a run id (prefix), or a dataset folder or name")
    dataset_options(issues)
    issues.add_argument("--limit", type=int, default=0, help="print at most this many (0: all)")
    issues.add_argument("--all", action="store_true", help="print the suspects behind what the self-test supports too")
    output = issues.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="one object: the counts, what the self-test supports and why, the issues"
    )
    output.add_argument(
        "--csv",
        action="store_true",
        help="the whole list as CSV (rank, path, labels, odds, score, supported yes/no, your marks)",
    )
    add_runtime_option(issues)
    issues.set_defaults(handler=cmd_label_issues)

    compare = sub.add_parser(
        "compare",
        parents=[common],
        help="compare 2-5 runs on the same test photos (McNemar's exact test; multi-label runs: AP per label, the "
        "mAP difference's paired interval and permutation test)",
    )
    compare.add_argument("run_ids", nargs="+", metavar="RUN")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=cmd_compare)


def cmd_analyse(args: argparse.Namespace) -> int:

    store = store_of(args)
    run = store.refresh(store.find(args.run_id))
    if not run.has_model:
        return fail(not_evaluated_reason(run))
    if run.has_analysis and not args.force:
        message = f"run {run.run_id} already has its analysis arrays (--force to compute them again)"
        if args.json:
            emit_json({"run_id": run.run_id, "computed": False})
        else:
            print(message)
        return EXIT_OK
    if run.multilabel:  # its arrays carry label rows that the single-label computation below would leave out
        return fail(f"run {run.run_id} is multi-label: its analysis arrays are written as it trains, not computed here")
    with contextlib.redirect_stdout(sys.stderr):
        analysis = run_tasks.compute_analysis(run, data_dir(args.data_dir), stage_progress)
    result = {
        "run_id": run.run_id,
        "computed": True,
        "val_images": len(analysis.val.labels),
        "test_images": len(analysis.test.labels),
        "split_hash": analysis.split_hash,
    }
    if args.json:
        emit_json(result)
    else:
        print(
            f"\nrun {run.run_id}: stored logits and features of {result['val_images']} validation and "
            f"{result['test_images']} test images"
        )
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:

    run = analysed(store_of(args), args.run_id)
    calibration = calibrate_run(run.directory, refit=args.refit)
    summary = {"run_id": run.run_id, **calibration.summary()}
    sets = None
    if args.conformal is not None:
        try:
            by_class = {"auto": None, "per-class": True, "overall": False}[args.thresholds]
            sets = conformal.fit_run(run.directory, conformal.level_of(args.conformal), args.method, by_class)
        except conformal.ConformalError as e:
            return fail(f"run {run.run_id}: {e}")
    held_back = None
    if args.max_error is not None:
        try:
            held_back = selective.fit_run(run.directory, selective.check_max_error(args.max_error))
        except selective.SelectiveError as e:
            return fail(f"run {run.run_id}: {e}")
    if args.json:
        if sets is not None:
            summary["conformal"] = {**sets.summary(), "photos": sets.photos}
        if held_back is not None:
            summary["selective"] = {**held_back.summary(), "photos": held_back.photos}
        emit_json(summary)
        return EXIT_OK
    before, after = calibration.before, calibration.after
    print(
        f"run {run.run_id}: temperature {calibration.temperature:.3f} (fitted on {calibration.val_images} "
        f"validation images; test split of {before.images})"
    )
    rows = [
        ["ECE", f"{before.ece:.4f}", f"{after.ece:.4f}"],
        [
            "ECE 95% interval",
            f"{before.ece_low:.3f}-{before.ece_high:.3f}",
            f"{after.ece_low:.3f}-{after.ece_high:.3f}",
        ],
        ["MCE", f"{before.mce:.4f}", f"{after.mce:.4f}"],
        ["NLL", f"{before.nll:.4f}", f"{after.nll:.4f}"],
        ["Brier", f"{before.brier:.4f}", f"{after.brier:.4f}"],
        ["accuracy", f"{before.accuracy:.4f}", f"{after.accuracy:.4f}"],
    ]
    print(format_table(["", "before", "after"], rows))
    if calibration.few_validation_images:
        print(f"note: {calibration.val_per_class:.0f} validation images per class: the temperature itself is uncertain")
    bound = bound_words(calibration)
    if bound:
        print(f"note: {bound}")
    if sets is not None:
        print_sets(sets)
    if held_back is not None:
        print_selective(held_back)
    return EXIT_OK


def print_sets(sets: conformal.ConformalSets) -> None:
    """The held-out half's coverage and set sizes, by class, and how far another halving would move them."""
    held, spread = sets.held_out, sets.spread
    probabilities = "calibrated probabilities" + (f" averaged over {sets.views} views" if sets.views > 1 else "")
    where = "a threshold per class" if sets.by_class else "one threshold for all classes"
    few = sets.few_photos()
    if few:
        where += f" ({', '.join(few)}: too few photos for their own, the overall one; {shared_words(sets)})"
    print(
        f"\nprediction sets at {sets.level:.0%} ({sets.method.upper()} on the {probabilities}; {sets.how})\n"
        f"{where}; fitted on {len(sets.calibration_scores)} test photos, counted on the other {held.photos}:"
    )
    print(
        f"coverage {held.coverage:.3f} (target {sets.level:.2f}), mean set size {held.mean_size:.2f} of "
        f"{len(sets.classes)} classes, one class {held.singletons:.0%}, every class {held.full:.0%}"
    )
    rows = [
        [
            c.name,
            str(c.photos),
            "-" if c.coverage is None else f"{c.coverage:.3f}",
            "-" if c.mean_size is None else f"{c.mean_size:.2f}",
            "-"
            if spread is None or c.name not in spread.class_coverage_low
            else f"{spread.class_coverage_mean.get(c.name, float('nan')):.3f} "
            f"({spread.class_coverage_low[c.name]:.2f}-{spread.class_coverage_high[c.name]:.2f})",
        ]
        for c in held.by_class
    ]
    print(format_table(["class", "photos", "coverage", "mean size", "over halvings: mean (95%)"], rows))
    under = sets.under_covered()
    if under:
        print(
            f"under-covered (their average over the halvings is more than {conformal.UNDER_MARGIN * 100:.0f} points "
            f"below {sets.level:.0%}): {', '.join(under)}"
        )
    sizes = sorted(held.by_size.items(), key=lambda item: int(item[0]))
    print(
        "by set size, right of held-out sets: "
        + ", ".join(f"{conformal.size_words(int(k))} {right} of {photos}" for k, (right, photos) in sizes)
        + " (not each size of set)"
    )
    print(f"what the promise covers: {promise_words(sets.level, sets.by_class, few)}")
    for size, right, photos in sets.short_sizes():
        print(
            f"  {conformal.size_words(size)} sets were right {right} of {photos} times ({right / photos:.0%}), less "
            f"often than {sets.level:.0%}: there a set is the model's best guess, not a sure answer"
        )
    if spread is not None:
        print(
            f"over {spread.splits} random halvings: coverage {spread.coverage_mean:.3f} +/- {spread.coverage_sd:.3f} "
            f"(95% of halvings {spread.coverage_low:.3f}-{spread.coverage_high:.3f}), mean size {spread.size_mean:.2f}"
        )
    print("stored with the run: Predict, the model server and batch predictions give these sets")


def cmd_label_issues(args: argparse.Namespace) -> int:

    data_root = data_dir(args.data_dir)
    source = run_or_dataset(args, store_of(args), data_root)
    run = source.run
    with contextlib.redirect_stdout(sys.stderr):
        if run is not None:
            review = load_issues(run.directory) or run_tasks.compute_label_issues(run, data_root, stage_progress)
        else:
            review = run_tasks.dataset_label_issues(source.photos, stage_progress)
    marks = Corrections.load(data_root, source.dataset)
    if args.csv:
        issues = review.issues[: args.limit] if args.limit else review.issues
        sys.stdout.write(export_csv(export_rows(issues, marks, review.supported)))
        return EXIT_OK
    said = verdict(review, random_start=run is not None and run.train_config.weights == "none")
    if args.json:
        emit_json({**review.summary(marks.action, args.limit), "verdict": said.headline})
        return EXIT_OK
    shown = review.issues if args.all else review.first
    issues = shown[: args.limit] if args.limit else shown
    rows = [{**issue.to_dict(), "marked": marks.action(issue.path)} for issue in issues]
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(said.headline)
    print("\n".join(f"  - {line}" for line in said.figures))
    if rows:
        first = len(review.issues) if review.supported is None else review.supported
        print(
            format_table(
                ["#", "path", "given", "suggested", "p(suggested)", "p(given)", "split", "marked"],
                [
                    [
                        f"{i}" if i <= first else f"{i} (behind)",
                        r["path"],
                        r["given"],
                        r["suggested"],
                        probability_text(r["suggested_probability"]),
                        probability_text(r["score"]),
                        r["split"],
                        r["marked"] or "",
                    ]
                    for i, r in enumerate(rows, start=1)
                ],
            )
        )
    if review.behind and not args.all:
        print(f"{len(review.behind)} more suspect(s) behind these, weaker evidence: --all prints them, --csv all")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:

    store = store_of(args)
    runs = [store.refresh(store.find(run_id)) for run_id in args.run_ids]
    try:
        check_kinds(runs)
    except NotComparable as e:
        return fail(f"not comparable: {e}")
    if runs and runs[0].multilabel:
        missing = next((run for run in runs if not run.has_model), None)
        return fail(not_evaluated_reason(missing)) if missing else compare_labels(args, runs)
    results = [load_result(analysed(store, run_id)) for run_id in args.run_ids]
    try:
        out = compare(results)
    except NotComparable as e:
        return fail(f"not comparable: {e}")
    if args.json:
        emit_json(out)
        return EXIT_OK
    if out["split_differs"]:
        print(f"{len(results)} runs split differently, paired on the {out['test_images']} test photos they share")
        print(out["split_differs"])
    else:
        print(f"{len(results)} runs on the same {out['test_images']} test photos")
    if out["same_split"]:
        print(out["same_split"])
    if out["difference"]:
        print(out["difference"])
    rows = [
        [
            run_id,
            f"{m['accuracy']:.4f}",
            f"{m['macro_f1']:.4f}",
            f"{m['nll_before']:.3f} -> {m['nll_after']:.3f}",
            f"{m['ece_before']:.3f} -> {m['ece_after']:.3f}",
        ]
        for run_id, m in out["runs"].items()
    ]
    print(format_table(["run", "accuracy", "macro f1", "nll (calibrated)", "ece (calibrated)"], rows))
    for pair in out["pairs"]:
        print(f"\n{pair['b']} vs {pair['a']}: {pair['verdict']}")
        deltas = sorted(pair["per_class_f1_delta"].items(), key=lambda kv: kv[1])
        shown = deltas[:5] + [d for d in deltas[-5:] if d not in deltas[:5]]
        print(format_table(["class", "f1 change"], [[name, f"{delta:+.3f}"] for name, delta in shown]))
    return EXIT_OK if out else EXIT_FAILED

"""`data-issues`: what else is wrong with the data (outliers, overlapping classes, underperforming groups, label
health, duplicates, leaks and imbalance), for a run or a dataset without one."""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_OK, emit_json, fail, format_table, stage_progress
from core.cli.sources import dataset_options, run_or_dataset
from core.paths import data_dir

EXAMPLES = 3  # files shown per finding in the text form


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "data-issues",
        parents=[common],
        help="what else is wrong with the data: outliers, overlapping classes, weak groups, label health, duplicates",
    )
    parser.add_argument("source", metavar="RUN_OR_DATASET", help="a run id (prefix), or a dataset folder or name")
    parser.add_argument("--again", action="store_true", help="for a run: look again even if its result is stored")
    parser.add_argument("--limit", type=int, default=10, help="photos and pairs printed per issue (default 10)")
    dataset_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object: every issue type, every photo listed")
    add_runtime_option(parser)
    parser.set_defaults(handler=cmd_data_issues)


def cmd_data_issues(args: argparse.Namespace) -> int:
    from core.results.data_issues import report as data_issues  # heavy: scipy, pandas (only for this command)

    if args.limit < 0:
        return fail(f"--limit must be 0 or more. Received: {args.limit}")
    data_root = data_dir(args.data_dir)
    source = run_or_dataset(args, store_of(args), data_root)
    run = source.run
    with contextlib.redirect_stdout(sys.stderr):
        if run is not None:
            result = None if args.again else data_issues.load(run.directory)
            result = result or data_issues.for_run_saved(run, data_root, stage_progress)
            result.random_start = (
                result.random_start or run.train_config.weights == "none"
            )  # one stored before it kept that
        else:
            result = data_issues.find(data_issues.for_dataset(source.photos, stage_progress), progress=stage_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        emit_json(result.to_dict())
        return EXIT_OK
    print(describe(result, args.limit))
    return EXIT_OK


def describe(result, limit: int = 10) -> str:
    """The result as a readable list: one block per issue type, its explanation, then its photos or pairs."""
    from core.results.data_issues.report import score_text, splits_text  # heavy: scipy, pandas

    source = result.source
    what = f"run {source['run_id']}" if "run_id" in source else f"dataset {source.get('dataset', '')}"
    splits = splits_text(result.by_split)
    lines = [
        f"Data issues of {what}: {result.photos} photos in {result.classes} classes ({splits})",
        f"  probabilities: {result.how}",
    ]
    if result.health_note:
        lines.append(f"  note: {result.health_note}")
    for number, line in enumerate(result.summary(), start=1):
        lines += [
            "",
            f"{number}. {line['kind'].replace('_', ' ')} (score {score_text(line['score'])}): {line['title']}",
        ]
        lines.append(f"   {line['explanation']}")
        lines += ["   " + row for row in _details(result, line["kind"], limit)]
    return "\n".join(lines)


def _details(result, kind: str, limit: int) -> list[str]:
    from core.results.data_issues.report import overlap_advice  # heavy: scipy, pandas
    from core.results.labels.verdict import probability_text  # heavy: numpy, with the label review

    if kind == "label_health":
        rows = [
            [c["class"], f"{c['score']:.2f}", str(c["photos"]), str(c["wrong_labels"])]
            for c in result.label_health["classes"][:limit]
        ]
        return format_table(["class", "score", "photos", "probably wrong"], rows).split("\n") if rows else []
    if kind == "outliers":
        rows = [[f"{o['score']:.2f}", o["path"], o["class"], o["split"]] for o in result.outliers[:limit]]
        return format_table(["score", "photo", "class", "split"], rows).split("\n") if rows else []
    if kind == "overlapping_classes":
        out = []
        for pair in result.overlapping_classes[:limit]:
            a, b = pair["classes"]
            apart = "" if pair["separability"] is None else f"; told apart {pair['separability']:.0%} of the time"
            out.append(f"{a} / {b}: score {pair['score']:.4f} (~{pair['photos']} photos between them{apart})")
            out.append("    " + overlap_advice(pair, result.classes, random_start=result.random_start))
            out += [
                f"    {e['path']} (labelled {e['label']}; of the two, the model gives {e['looks_like']} "
                f"{probability_text(e['share'])})"
                for e in pair["examples"][:EXAMPLES]
            ]
        return out
    if kind == "underperforming_groups":
        out = []
        for group in result.underperforming_groups[:limit]:
            classes = ", ".join(f"{name} {n}" for name, n in group["classes"].items())
            out.append(
                f"group of {group['photos']} photos ({classes}): {group['accuracy']:.0%} right against "
                f"{group['rest_accuracy']:.0%} elsewhere (score {group['score']:.2f}, p = {group['p_value']:.2g})"
            )
            out += [f"    {e['path']} ({e['label']}, taken for {e['predicted']})" for e in group["examples"][:EXAMPLES]]
        return out
    out = []
    for finding in getattr(result, kind):
        out.append(f"[{finding['severity']}] {finding['title']}")
        groups = finding["groups"][:EXAMPLES] if finding["groups"] else [[f] for f in finding["files"][:EXAMPLES]]
        out += ["    " + ", ".join(group) for group in groups]
    return out

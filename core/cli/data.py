"""`python -m core data ...`: get, import, check and list datasets.

    data get {tf_flowers,oxford102,demo} [--url URL] [--force] [--json]
    data import oxford102 SRC [--name NAME] [--force] [--json]
    data import zip FILE NAME [--force] [--json]
    data import csv LABELS.csv IMAGES_DIR NAME [--multi-label | --single-label] [--delimiter D] [--label-columns ...]
    data check DIR [--image-size N] [--no-cache] [--json]
    data list [--json]

Results go to stdout (one JSON object with --json); progress bars (on a terminal) and log lines
go to stderr. Exit status 0 on success, 1 with one `error: ...` line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import sys

from core.cli.output import EXIT_OK, EXIT_USAGE, emit_json, fail, format_table
from core.data.datasets import SPLIT_NAMES, list_datasets, resolve_dataset_path
from core.health import check_dataset
from core.importers import BYTE_STAGES, get_dataset, import_oxford102, import_zip
from core.importers.csv_labels import import_csv
from core.paths import cache_dir, data_dir

_EXAMPLES = 3  # files shown per finding in the text report


def register(sub, common: argparse.ArgumentParser) -> None:
    """Add the `data` command and its actions to the CLI's subparsers."""
    data = sub.add_parser("data", help="get, import, check and list datasets")
    actions = data.add_subparsers(metavar="ACTION")
    data.set_defaults(handler=lambda args: _usage(data))

    get = actions.add_parser("get", parents=[common], help="download tf_flowers or oxford102, or draw the demo set")
    get.add_argument("key", choices=["tf_flowers", "oxford102", "demo"], metavar="{tf_flowers,oxford102,demo}")
    get.add_argument("--url", help="download from here instead (oxford102: the folder holding its three files)")
    get.add_argument("--force", action="store_true", help="fetch again and replace the dataset if present")
    get.add_argument("--json", action="store_true")
    get.set_defaults(handler=cmd_get)

    imports = actions.add_parser("import", help="import Oxford 102 files, a zip of class folders, or a labelled table")
    kinds = imports.add_subparsers(metavar="KIND")
    imports.set_defaults(handler=lambda args: _usage(imports))
    oxford = kinds.add_parser(
        "oxford102", parents=[common], help="from a folder with jpg/ (or 102flowers.tgz), imagelabels.mat, setid.mat"
    )
    oxford.add_argument("source", metavar="SRC")
    oxford.add_argument("--name", default="oxford102", help="dataset name under the data folder")
    oxford.add_argument("--force", action="store_true", help="replace a dataset of that name")
    oxford.add_argument("--json", action="store_true")
    oxford.set_defaults(handler=cmd_import_oxford)
    zipped = kinds.add_parser("zip", parents=[common], help="a zip of class folders (with or without a top folder)")
    zipped.add_argument("file", metavar="FILE")
    zipped.add_argument("name", metavar="NAME", help="dataset name under the data folder")
    zipped.add_argument("--force", action="store_true", help="replace a dataset of that name")
    zipped.add_argument("--json", action="store_true")
    zipped.set_defaults(handler=cmd_import_zip)
    table = kinds.add_parser(
        "csv",
        parents=[common],
        help="a folder of images and a CSV (or Parquet) of image, label[, split]: linked, not copied",
    )
    table.add_argument("labels", metavar="LABELS.csv")
    table.add_argument("images", metavar="IMAGES_DIR")
    table.add_argument("name", metavar="NAME", help="dataset name under the data folder")
    table.add_argument("--path-column", help="the column of image paths or ids (default: path, image, id, ...)")
    table.add_argument("--label-column", help="the column of labels (default: label, class, breed, ...)")
    table.add_argument("--split-column", help="a column of train/val/test (default: split, set, ... when present)")
    table.add_argument(
        "--skip-missing", action="store_true", help="import the rows whose image is there; list the rest"
    )
    task = table.add_mutually_exclusive_group()
    task.add_argument(
        "--multi-label",
        dest="multi_label",
        action="store_const",
        const=True,
        help="photos with any number of labels: one column of label lists, or one 0/1 column per label "
        "(default: detected and said)",
    )
    task.add_argument(
        "--single-label", dest="multi_label", action="store_const", const=False, help="one label a photo, as is"
    )
    table.add_argument(
        "--delimiter", help="between the labels of a cell of label lists: ' ', '|', ',' or ';' (default: detected)"
    )
    table.add_argument("--label-columns", help="the 0/1 columns, one per label, comma-separated (default: detected)")
    table.add_argument("--no-label", metavar="VALUE", help="a value meaning no label in a list (e.g. 'No Finding')")
    table.add_argument("--force", action="store_true", help="replace a dataset of that name")
    table.add_argument("--json", action="store_true")
    table.set_defaults(handler=cmd_import_csv)

    check = actions.add_parser("check", parents=[common], help="health check: unreadable files, duplicates, leaks...")
    check.add_argument("dataset", metavar="DIR", help="a dataset folder, or a dataset name under the data folder")
    check.add_argument("--image-size", type=int, default=None, help="training size the size checks refer to")
    check.add_argument("--no-cache", action="store_true", help="recompute instead of using data/.cache")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_check)

    listing = actions.add_parser("list", parents=[common], help="datasets in the data folder")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)


# ----------------------------------------------------------------------------- commands


def cmd_get(args: argparse.Namespace) -> int:

    return _run_import(
        args, lambda root, progress: get_dataset(args.key, root, progress, url=args.url, force=args.force)
    )


def cmd_import_oxford(args: argparse.Namespace) -> int:

    return _run_import(
        args, lambda root, progress: import_oxford102(args.source, root, args.name, progress, overwrite=args.force)
    )


def cmd_import_zip(args: argparse.Namespace) -> int:

    return _run_import(
        args, lambda root, progress: import_zip(args.file, args.name, root, progress, overwrite=args.force)
    )


def cmd_import_csv(args: argparse.Namespace) -> int:

    return _run_import(
        args,
        lambda root, progress: import_csv(
            args.labels,
            args.images,
            args.name,
            root,
            args.path_column,
            args.label_column,
            args.split_column,
            args.skip_missing,
            args.force,
            multi_label=args.multi_label,
            delimiter=args.delimiter,
            label_columns=[c.strip() for c in args.label_columns.split(",") if c.strip()]
            if args.label_columns
            else None,
            no_label=args.no_label,
        ),
    )


def _run_import(args: argparse.Namespace, action) -> int:

    root = data_dir(args.data_dir)
    bar = ConsoleStageBar()
    try:
        result = action(root, bar)
    except OSError as e:
        return fail(f"{e.strerror or e}{f': {e.filename}' if getattr(e, 'filename', None) else ''}")
    finally:
        bar.close()
    if args.json:
        emit_json(result.to_dict())
        return EXIT_OK
    state = "already present" if result.already_present else "imported"
    split = ""
    if result.split:
        split = f", own split {result.split['train']}/{result.split['val']}/{result.split['test']}"
    kinds = "labels (multi-label)" if result.task == "multilabel" else "classes"
    print(f"{result.name}: {state}, {result.classes} {kinds}, {result.images} images{split}")
    print(f"  at {result.path}")
    for note in result.notes:
        print(f"  note: {note}")
    if result.skipped:
        print(f"  skipped {len(result.skipped)} entries:")
        for item in result.skipped[:10]:
            print(f"    {item['path']}: {item['reason']}")
        if len(result.skipped) > 10:
            print(f"    ... and {len(result.skipped) - 10} more (--json lists them all)")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:

    path = resolve_dataset_path(args.dataset, _data_root(args))
    bar = ConsoleStageBar()
    try:
        report = check_dataset(
            path,
            progress=bar,
            cache_root=None if args.no_cache else cache_dir(args.data_dir),
            image_size=args.image_size,
        )
    except OSError as e:
        return fail(f"{e.strerror or e}")
    finally:
        bar.close()
    if args.json:
        emit_json(report.to_dict())
        return EXIT_OK
    print(format_report(report))
    return EXIT_OK


def format_report(report) -> str:
    """The text form of a HealthReport: a summary line, then each finding with a few of its files."""
    stats = report.stats
    split = stats["split"]
    if split["source"] == "dataset":
        how = "its own split"
    else:
        how = f"no split of its own (checked under training's seeded split: seed {split['seed']})"
    lines = [
        f"{report.dataset}: {report.images} images in {report.classes} classes, {stats['readable']} readable; {how}",
        f"  at {report.root}",
    ]
    if not report.findings:
        lines.append("no problems found")
    for finding in report.findings:
        lines.append(f"[{finding.severity}] {finding.kind}: {finding.title}")
        examples = finding.groups[:_EXAMPLES] if finding.groups else [[f] for f in finding.files[:_EXAMPLES]]
        for group in examples:
            shown = [f + (f" ({finding.captions[f]})" if f in finding.captions else "") for f in group]
            lines.append("    " + "  =  ".join(shown))
        more = (len(finding.groups) if finding.groups else len(finding.files)) - len(examples)
        if more > 0:
            lines.append(f"    ... and {more} more {'groups' if finding.groups else 'files'}")
    counts = report.counts()
    words = {"error": "error", "warning": "warning", "info": "note"}
    tally = ", ".join(_plural(counts[severity], word) for severity, word in words.items())
    cached = " (cached)" if stats.get("cached") else ""
    lines.append(f"{tally} in {stats['seconds']:.1f} s{cached}; --json lists every file")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:

    root = _data_root(args)
    rows = []
    for index in list_datasets(root):
        rows.append(
            {
                "name": index.root.name,
                "title": index.meta.get("title") or index.name,
                "classes": len(index.classes),
                "images": len(index.entries),
                "split": SPLIT_NAMES["dataset" if index.has_split else "random"],  # as the Dataset page says it
                "source": index.meta.get("source") or "folder",
                "synthetic": bool(index.meta.get("synthetic", False)),
                "path": str(index.root),
                "task": index.task,
            }
        )
    if args.json:
        emit_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no datasets in {root} (python -m core data get demo makes one offline)", file=sys.stderr)
        return EXIT_OK
    for row in rows:
        row["classes"] = f"{row['classes']} labels" if row["task"] == "multilabel" else row["classes"]
    headers = ["name", "classes", "images", "split", "source", "title"]
    table = [[str(r[h]) + (" (synthetic)" if h == "source" and r["synthetic"] else "") for h in headers] for r in rows]
    print(format_table(headers, table))
    return EXIT_OK


# ----------------------------------------------------------------------------- helpers


class ConsoleStageBar:
    """A progress callback for the terminal: a tqdm bar per stage on a TTY, one log line per stage otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.stage: str | None = None
        self.bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            if self.tty:
                from tqdm import tqdm

                in_bytes = stage in BYTE_STAGES
                self.bar = tqdm(
                    total=total or None,
                    desc=stage,
                    unit="B" if in_bytes else " files",
                    unit_scale=in_bytes,
                    unit_divisor=1024 if in_bytes else 1000,
                    file=self.stream,
                    leave=False,
                )
            else:
                print(f"flora: {stage}...", file=self.stream, flush=True)
        if self.bar is not None:
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _data_root(args: argparse.Namespace):

    return data_dir(args.data_dir)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE

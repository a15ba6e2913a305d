"""`card`: a run's model card (Hugging Face's layout) written from what the run stored."""

from __future__ import annotations

import argparse
import sys

from core.cli import store_of
from core.cli.output import EXIT_OK, emit_json, fail
from core.cli.results import not_evaluated_reason
from core.results import model_card


def register(sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "card",
        parents=[common],
        help="write a run's model card (YAML metadata with model-index, then its sections) into the run folder",
    )
    parser.add_argument("run_id", metavar="RUN")
    parser.add_argument("--out", metavar="FILE", help="write it here instead of the run folder's model_card.md")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--print", action="store_true", help="print the card to stdout as well")
    output.add_argument("--json", action="store_true", help="print its path and YAML metadata as JSON")
    parser.set_defaults(handler=cmd_card)


def cmd_card(args: argparse.Namespace) -> int:
    store = store_of(args)
    run = store.refresh(store.find(args.run_id), persist=False)
    if not run.has_evaluation:
        return fail(not_evaluated_reason(run))
    path = model_card.write(run, args.out)
    text = path.read_text(encoding="utf-8")
    if args.json:
        emit_json({"run_id": run.run_id, "path": str(path), "metadata": model_card.read_metadata(text)})
    elif args.print:
        sys.stdout.write(text)
    else:
        print(path)
    return EXIT_OK

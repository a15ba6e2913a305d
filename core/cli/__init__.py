"""`python -m core ...`: the same engine the pages use, from a terminal.

Results go to stdout (the last line of `train` is the run id, or one JSON object with --json);
progress bars and logs go to stderr, so scripts can read stdout alone. Each group of commands
lives in its own module and registers its subcommands; `COMMAND_MODULES` lists them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from core.cli.output import EXIT_FAILED, EXIT_USAGE
from core.paths import models_dir
from core.runs.store import RunStore
from core.runtimes.choice import CHOICES as RUNTIME_CHOICES
from core.runtimes.choice import RUNTIME_ENV
from core.settings.config import ConfigError

log = logging.getLogger("flora")
# Modules with a `register(subparsers, common)`, in the order their commands are listed.
COMMAND_MODULES = (
    "core.cli.runs",
    "core.cli.lr_find",
    "core.cli.results",
    "core.cli.diagnosis",
    "core.cli.label_next",
    "core.cli.fix_worth",
    "core.cli.data_issues",
    "core.cli.explain",
    "core.cli.sweep",
    "core.cli.serving",
    "core.cli.export",
    "core.cli.retrain",
    "core.cli.data",
    "core.cli.sharing",
    "core.cli.device",
    "core.bench",
)


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
    if getattr(args, "runtime", None):
        os.environ[RUNTIME_ENV] = args.runtime  # this process and every job it starts
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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    """`--runtime`, on the commands that run a frozen forward pass (core.runtimes)."""
    parser.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        help="where the frozen network's forward pass runs: auto (default, or $FLORA_RUNTIME: the fastest one "
        "measured on this machine that gives Keras's answers), keras, onnxruntime or openvino; training's "
        "gradient steps stay in Keras",
    )


def store_of(args: argparse.Namespace):
    """The run store the command's --models-dir (or the environment) names."""

    return RunStore(models_dir(args.models_dir))

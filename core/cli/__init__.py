"""`python -m core ...`: the same engine the pages use, from a terminal.

Results go to stdout (the last line of `train` is the run id, or one JSON object with --json);
progress bars and logs go to stderr, so scripts can read stdout alone. Each group of commands
lives in its own module and registers its subcommands; `COMMAND_MODULES` lists them.

Errors: a `FloraError` (core.errors) or a stop is one line on stderr, `error: <what happened>`, and its kind's exit
code (1; `Busy`: 75, try again later). Anything else is a bug: its traceback on stderr, and exit code 70.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from core.cli.output import BUG_NOTE, EXIT_USAGE
from core.device import quiet_tensorflow_where_no_gpu
from core.errors import EXIT_BUG, Cancelled, FloraError
from core.paths import models_dir
from core.runs.store import RunStore
from core.runtimes.names import CHOICES as RUNTIME_CHOICES
from core.runtimes.names import RUNTIME_ENV

log = logging.getLogger("flora")
# Modules with a `register(subparsers, common)`, in the order their commands are listed, and the commands each
# registers (tests/test_cli.py checks the two agree). A command run by name imports only its own module: `core
# alias production B` starts in a fraction of the time that importing every command's engine takes (issue 44: the
# first switch is timed from the command's start); help, no command or an unknown one build the whole parser.
COMMAND_MODULES = {
    "core.cli.runs": ("train", "runs"),
    "core.cli.lr_find": ("lr-find",),
    "core.cli.results": ("evaluate", "predict"),
    "core.cli.diagnosis": ("analyse", "calibrate", "label-issues", "compare"),
    "core.cli.robustness": ("robustness",),
    "core.cli.card": ("card",),
    "core.cli.label_next": ("label-next",),
    "core.cli.fix_worth": ("fix-worth",),
    "core.cli.data_issues": ("data-issues",),
    "core.cli.explain": ("explain",),
    "core.cli.sweep": ("sweep", "sweeps"),
    "core.cli.serving": ("serve", "alias", "log"),
    "core.cli.export": ("export",),
    "core.cli.retrain": ("retrain", "feedback-compare"),
    "core.cli.data": ("data",),
    "core.cli.sharing": ("share-check", "people"),
    "core.cli.device": ("device",),
    "core.bench": ("bench",),
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    quiet_tensorflow_where_no_gpu()  # no "failed call to cuInit: CUDA error" from a machine without a GPU
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command=argv[0] if argv else None)
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
    except (FloraError, Cancelled) as e:  # what a person can act on, or a stop they asked for: one line
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception:  # a bug, not something the user did: never a one-line message that hides where it is
        traceback.print_exc()
        print(BUG_NOTE, file=sys.stderr)
        return EXIT_BUG


def module_of(command: str | None) -> str | None:
    """The module that registers `command` (None: not a command name)."""
    return next((module for module, commands in COMMAND_MODULES.items() if command in commands), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: with `command` one of the commands, only its module's commands (and only it imported)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", help="the run store (default: $FLORA_MODELS_DIR or models/)")
    common.add_argument("--data-dir", help="datasets and caches (default: $FLORA_DATA_DIR or data/)")
    parser = argparse.ArgumentParser(prog="python -m core", description="Flora: transfer learning on image datasets.")
    sub = parser.add_subparsers(metavar="COMMAND")
    only = module_of(command)
    for name in [only] if only else COMMAND_MODULES:
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

"""`device`: which device trains, as the framework sees it after Flora's imports; why not, where a driver is; and
which runtime runs the frozen forward pass at each size measured here."""

from __future__ import annotations

import argparse
import json
import sys

from core.cli.output import EXIT_FAILED, EXIT_OK
from core.device_check import check
from core.gpu_build import choose
from core.runtimes.choice import stored_choices


def register(sub, common: argparse.ArgumentParser) -> None:
    device = sub.add_parser(
        "device",
        help="does the framework see the GPU? 'NVIDIA H100, TensorFlow sees it' or why not, and the fix",
        description="Imports what a Flora training process imports, then asks the Keras backend's framework "
        "(KERAS_BACKEND, or FLORA_BACKEND) which devices it sees, and compares with the NVIDIA driver "
        "(nvidia-smi). Exit status 1 when a driver is there and the framework does not see its GPU.",
    )
    device.add_argument("--json", action="store_true", help="the check as JSON")
    device.set_defaults(handler=cmd_device)


def cmd_device(args: argparse.Namespace) -> int:

    result = check()
    choices = stored_choices()
    if args.json:
        build = choose(driver=None if result.driver is None else True).reason
        print(json.dumps({**result.to_dict(), "build": build, "runtimes": [c.to_dict() for c in choices]}))
        return EXIT_OK if result.ok else EXIT_FAILED
    print(result.sentence)
    info = result.info
    print(f"  Keras backend: {info.backend}; device: {info.label}", file=sys.stderr)
    if info.memory_gb:
        print(f"  memory: {info.memory_gb} GiB per GPU", file=sys.stderr)
    if result.driver:
        print(f"  driver: {result.driver}", file=sys.stderr)
    if result.fix:
        print(f"  fix: {result.fix}", file=sys.stderr)
    for decision in choices:  # measured by earlier runs here (core.runtimes.choice)
        print(f"  {decision.backbone} at {decision.image_size} px: {decision.text}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED

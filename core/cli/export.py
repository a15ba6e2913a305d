"""`export`: a run as Keras, SavedModel, ONNX, TFLite or a web page, verified against the Keras model."""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.cli import store_of
from core.cli.output import EXIT_FAILED, EXIT_OK, emit_json
from core.export import FORMATS, LAYOUTS, QUANTIZE, ExportError
from core.export.run import export_in_subprocess, export_run
from core.serving.aliases import resolve


def register(sub, common: argparse.ArgumentParser) -> None:

    export = sub.add_parser(
        "export",
        parents=[common],
        help="export a run (keras, savedmodel, onnx, tflite, or web: a page that classifies offline), verified",
        description="Write the run's model in another format, load it back in its own runtime and compare it "
        "with the Keras model on the run's test photos; the figures go to export.json. Fails when they disagree "
        "beyond tolerance (fp32 1e-4, fp16 1e-2, int8 top-1 agreement 99%). web: the ONNX export inside a page that "
        "classifies photos in the browser (ONNX Runtime Web from the npm registry, in vendor/), and a zip beside it.",
    )
    export.add_argument("run_id", metavar="RUN", help="a run id, a unique prefix or an alias")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--quantize", choices=QUANTIZE, help="tflite only")
    export.add_argument(
        "--layout",
        choices=LAYOUTS,
        help="tfserving: <name>/1/saved_model.pb (savedmodel); triton: model_repository/<name>/... (onnx)",
    )
    export.add_argument("--name", help="model name in the layouts (default flora-<run id>)")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--json", action="store_true")
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import os

    store = store_of(args)
    run = resolve(store, args.run_id).run
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    try:
        if backend != "tensorflow":  # the JAX-to-ONNX route fails in onnxruntime: export through TensorFlow
            record = export_in_subprocess(store.root, run.run_id, args.format, args.out, args.quantize, args.layout)
        else:
            with contextlib.redirect_stdout(sys.stderr):
                record = export_run(run, args.format, args.out, args.quantize, args.layout, args.name)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        emit_json(record)
        return EXIT_OK
    figures = record["verification"]
    print(
        f"{record['format']}{' ' + record['quantize'] if record['quantize'] else ''}: {', '.join(record['files'])}\n"
        f"verified with {figures['runtime']} on {figures['source']}: max |diff| {figures['max_abs_diff']:.2e}, "
        f"top-1 agreement {figures['top1_agreement']:.1%}, repeatable {figures['repeatable']}"
    )
    if "bytes_signature" in record:
        b = record["bytes_signature"]
        print(
            f"bytes signature (TensorFlow decodes): top-1 agreement {b['top1_agreement']:.1%}, "
            f"max |diff| {b['max_abs_diff']:.2e}"
        )
    return EXIT_OK

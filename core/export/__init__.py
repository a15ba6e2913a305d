"""Exports of a run, each verified in its own runtime against the Keras model.

`python -m core export RUN --format keras|savedmodel|onnx|tflite|web [--quantize float16|int8]
[--layout tfserving|triton] --out DIR` writes the model and an `export.json` beside it with the
agreement figures (max absolute difference of the probabilities, top-1 agreement on fixed test
photos). An export that disagrees beyond tolerance fails loudly. `web` is the ONNX export (with the pooled
features) inside a page that classifies in the browser (core.export.web), and a zip of that folder beside it.

Every export starts from the run's float32 inference graph without augmentation
(`core.network.graph`) and is made with the TensorFlow backend; on another backend (JAX) the CLI
runs the export in a TensorFlow subprocess (`export_in_subprocess`).
"""

from __future__ import annotations

from core.errors import Unavailable

FORMATS = ("keras", "savedmodel", "onnx", "tflite", "web")
QUANTIZE = ("float16", "int8")
LAYOUTS = ("tfserving", "triton")
EXPORT_JSON = "export.json"
# max |p_export - p_keras| allowed, and the least top-1 agreement, by precision
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": None}
MIN_AGREEMENT = {"float32": 1.0, "float16": 0.99, "int8": 0.99}
# who wrote an ONNX file (export.json's `converter`): Flora's own (core.runtimes.onnx_graph) or tf2onnx
FLORA_CONVERTER, TF2ONNX_CONVERTER = "flora", "tf2onnx"
ONNX_CONVERTERS = {FLORA_CONVERTER: "Flora's own ONNX converter", TF2ONNX_CONVERTER: "tf2onnx"}


class ExportError(Unavailable):
    """An export could not be made or did not agree with the Keras model; the message says why."""


def check_request(fmt: str, quantize: str | None, layout: str | None) -> None:
    """Refuse combinations that cannot be made, before any work.

    Raises:
        ExportError: a bad format, quantization or layout, or one the format does not support.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}. Received: {fmt!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ExportError(f"quantize must be one of {', '.join(QUANTIZE)}. Received: {quantize!r}")
    if quantize is not None and fmt != "tflite":
        raise ExportError(f"--quantize applies to tflite exports only (received format {fmt})")
    if layout is not None and layout not in LAYOUTS:
        raise ExportError(f"layout must be one of {', '.join(LAYOUTS)}. Received: {layout!r}")
    if layout == "tfserving" and fmt != "savedmodel":
        raise ExportError("--layout tfserving needs --format savedmodel")
    if layout == "triton" and fmt != "onnx":
        raise ExportError("--layout triton needs --format onnx (Triton's ONNX Runtime backend)")

"""Load each export back in its own runtime and compare it with the Keras model on fixed photos.

Runtimes: Keras (keras), TensorFlow's SavedModel loader (savedmodel), onnxruntime (onnx), the LiteRT
interpreter `ai-edge-litert` (tflite). Figures: the largest absolute difference of the
probabilities, the share of photos whose top-1 class agrees, and whether the same input twice gives
the same output (augmentation layers left on would not).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]  # pixels (N, S, S, 3) float32 -> probabilities (N, C)


def keras_runner(path: Path) -> tuple[Runner, str]:
    import keras

    model = keras.saving.load_model(path, compile=False)
    return (
        lambda x: np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(x)[0]))
    ), f"keras {keras.__version__}"


def savedmodel_runners(
    path: Path, pixels_signature: str, bytes_signature: str
) -> tuple[Runner, str, Callable[[list[bytes]], dict[str, np.ndarray]]]:
    """The SavedModel loaded once (a ResNet-50's load is seconds): a runner of its pixel signature, the runtime's
    name, and a runner of its bytes signature (encoded files in, every output out)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    on_pixels, on_bytes = loaded.signatures[pixels_signature], loaded.signatures[bytes_signature]

    def run(x):
        return on_pixels(tf.constant(x))["probabilities"].numpy()

    def run_bytes(files: list[bytes]) -> dict[str, np.ndarray]:
        out = on_bytes(image_bytes=tf.constant(files))
        return {name: value.numpy() for name, value in out.items()}

    return run, f"tensorflow {tf.__version__} (saved_model.load)", run_bytes


def onnx_runner(path: Path) -> tuple[Runner, str]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x):
        return session.run(["probabilities"], {input_name: x})[0]

    return run, f"onnxruntime {ort.__version__}"


def tflite_runner(path: Path) -> tuple[Runner, str]:
    from ai_edge_litert import interpreter as litert

    interpreter = litert.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    input_name = next(iter(runner.get_input_details()))

    def run(x):
        # one photo per call: the interpreter's input shape is fixed once allocated
        return np.concatenate([runner(**{input_name: x[i : i + 1]})["probabilities"] for i in range(len(x))])

    version = getattr(litert, "__version__", None) or _package_version("ai-edge-litert")
    return run, f"ai-edge-litert {version}"


def _package_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def compare(
    reference: np.ndarray, runner: Runner, pixels: np.ndarray, batch: int = 16, thresholds: np.ndarray | None = None
) -> dict[str, Any]:
    """Agreement of `runner` with the reference probabilities on `pixels`, and its repeatability; with a multi-label
    run's `thresholds` (one per label), also the share of photos given the very same label list."""
    outputs = np.concatenate([runner(pixels[i : i + batch].astype(np.float32)) for i in range(0, len(pixels), batch)])
    again = runner(pixels[:batch].astype(np.float32))
    figures = {
        "images": len(pixels),
        "max_abs_diff": float(np.max(np.abs(outputs - reference))),
        "top1_agreement": float(np.mean(outputs.argmax(axis=1) == reference.argmax(axis=1))),
        "repeatable": bool(np.array_equal(again, outputs[: len(again)])),
    }
    if thresholds is not None:
        same = ((outputs >= thresholds) == (reference >= thresholds)).all(axis=1)
        figures["label_list_agreement"] = float(np.mean(same))
    return figures

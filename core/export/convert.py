"""Writers, one per format, from a run's float32 inference graph (TensorFlow backend).

- keras: the inference graph as a .keras file (no augmentation, float32; outputs probabilities, logits).
- savedmodel: `serving_default` takes encoded image files (`image_bytes`, DT_STRING: TF Serving
  clients send {"b64": ...}) and decodes and resizes inside; `predict_pixels` takes float pixels. A multi-label
  run's answers `labels` (each label at or above its threshold, the thresholds inside the graph) and `thresholds`.
- onnx: input `image` [N, S, S, 3] float32, outputs `probabilities`, `logits`: written from the layers and weights by
  Flora's own converter (core.runtimes.onnx_graph) where it knows every layer and its graph gives Keras's answers,
  else tf2onnx from the pixel function.
- tflite: the pixel function through TensorFlow Lite's converter; float32, float16 weights, or int8
  (full integer, calibrated on the run's own photos, float input and output).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from core.errors import InvalidInput
from core.export import FLORA_CONVERTER, TF2ONNX_CONVERTER
from core.runtimes import onnx_graph

log = logging.getLogger("flora")

PIXELS_SIGNATURE = "predict_pixels"
BYTES_SIGNATURE = "serving_default"
OPSET = onnx_graph.OPSET  # both ONNX converters write this opset
ONNX_OUTPUTS = ("probabilities", "logits", "features")  # an ONNX graph's outputs, in the pixel model's order
_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def pixel_model(model: keras.Model, with_features: bool = False) -> keras.Model:
    """The inference graph cut to (probabilities, logits), the outputs every export carries, and with
    `with_features` the pooled features (the web page's out-of-distribution distance needs them)."""
    return keras.Model(model.input, model.outputs[: 3 if with_features else 2], name="flora_export")


def write_keras(model: keras.Model, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.keras"
    pixel_model(model).save(path)
    return [path]


def _decode_for_model(image_size: int, cache_size: int) -> Callable:
    import tensorflow as tf

    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        side = tf.minimum(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = image[top : top + side, left : left + side]
        square = tf.image.resize(square, (cache_size, cache_size), method="bicubic", antialias=True)
        offset = (cache_size - image_size) // 2
        cropped = square[offset : offset + image_size, offset : offset + image_size]
        return tf.clip_by_value(tf.round(cropped), 0.0, 255.0)

    return decode


def write_savedmodel(
    model: keras.Model, out: Path, classes: list[str], cache_size: int, thresholds: list[float] | None = None
) -> list[Path]:
    """A SavedModel with a bytes signature (default) and a pixel signature; returns the folder.

    A multi-label run's (`thresholds`, one per class: its tuned threshold per label) answers `labels` instead of
    `label`: a bool [N, labels], each label at or above its threshold, with `thresholds` [N, labels] beside it."""
    import tensorflow as tf

    size = int(model.input_shape[1])
    exported = pixel_model(model)
    labels = tf.constant(classes)
    cut = None if thresholds is None else tf.constant(np.asarray(thresholds, dtype=np.float32)[None])
    decode = _decode_for_model(size, cache_size)

    def on_pixels(image):
        probabilities, logits = exported(image, training=False)
        outputs = {"probabilities": probabilities, "logits": logits}
        if cut is not None:  # a sigmoid per label, each read against its own threshold
            outputs["labels"] = probabilities >= cut
            outputs["thresholds"] = tf.broadcast_to(cut, tf.shape(probabilities))
        return outputs

    def on_bytes(image_bytes):
        pixels = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32))
        outputs = on_pixels(pixels)
        if cut is None:
            outputs["label"] = tf.gather(labels, tf.argmax(outputs["probabilities"], axis=-1))
        return outputs

    pixels_spec = tf.TensorSpec((None, size, size, 3), tf.float32, name="image")
    bytes_spec = tf.TensorSpec((None,), tf.string, name="image_bytes")
    save_endpoints(exported, out, {BYTES_SIGNATURE: (on_bytes, bytes_spec), PIXELS_SIGNATURE: (on_pixels, pixels_spec)})
    return [out]


def save_endpoints(model: keras.Model, out: Path, endpoints: dict[str, tuple[Callable, Any]]) -> None:
    """A SavedModel at `out` whose signatures (and attributes of the same names) are `endpoints`, each a function
    of one input and its tf.TensorSpec, over `model`'s variables; the first endpoint is also `serving_default`.

    Each endpoint is traced once, to a concrete function, and handed to tf.saved_model.save as that. Keras's
    ExportArchive traced the model five times for the same two endpoints: each endpoint once to list its variables
    and again inside the save (TensorFlow's function cache key changes inside its save context, and the save traces
    again every tf.function it writes), and the tracked model's default signature while it walked the model for
    lookup tables (Flora's models have none). Writing a two-endpoint ResNet-50 SavedModel: 14.7-15.0 -> 6.5-6.7 CPU-s,
    its saved_model.pb 2.55 -> 1.87 MB (one copy of each graph), loading it 2.6 -> 1.7-2.0 CPU-s (docs/PERFORMANCE.md).
    """
    import tensorflow as tf

    signatures = {name: _traced(function, spec) for name, (function, spec) in endpoints.items()}
    signatures.setdefault("serving_default", next(iter(signatures.values())))  # the one TF Serving calls by default
    root = _holding(model, signatures.values())
    for name, function in signatures.items():
        setattr(root, name, function)
    out.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(root, str(out), signatures=signatures)


def _traced(function: Callable, spec: Any):
    """`function` traced once for `spec`: a TensorFlow concrete function."""
    import tensorflow as tf

    return tf.function(function, autograph=False).get_concrete_function(spec)


def _holding(model: keras.Model, functions: Iterable) -> Any:
    """A trackable holding what Keras's archive saved (the model's variables), and the TensorFlow variables the
    concrete `functions` read: where only the Keras variables around them were, TensorFlow Lite's converter kept the
    weights as variables it never filled (NaN answers), not constants."""
    import tensorflow as tf

    root = tf.__internal__.tracking.AutoTrackable()
    root.variables = list(model.variables)
    root.trainable_variables = list(model.trainable_variables)
    root.non_trainable_variables = list(model.non_trainable_variables)
    root.captured_variables = list({id(v): v for f in functions for v in f.variables}.values())
    return root


def _pixel_function(model: keras.Model, with_features: bool = False):
    import tensorflow as tf

    size = int(model.input_shape[1])
    exported = pixel_model(model, with_features)

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name="image")], autograph=False)
    def predict(image):
        return dict(zip(ONNX_OUTPUTS, exported(image, training=False), strict=False))

    return predict


def import_tf2onnx() -> types.ModuleType:
    """tf2onnx, without what its import does to this process's environment.

    Importing `tf2onnx.convert` sets TF_CPP_MIN_LOG_LEVEL=3 in os.environ for good. Every process started after it got
    that (TensorFlow's errors silenced in a training job's log), and no job launched after it matched the warm
    launcher's environment (core.processes.launcher keys on TF_* variables): each then started the plain way,
    ~4.5 CPU-s of imports more, from the first ONNX export on. The variable is put back as it was.
    """
    with _put_back(_TF_LOG_LEVEL):
        import tf2onnx.convert  # heavy: TensorFlow (the submodule that sets it; `tf2onnx` alone loads it later)
    return tf2onnx


def write_onnx(
    model: keras.Model,
    out: Path,
    with_features: bool = False,
    accept: Callable[[Path], bool] | None = None,
    converter: str | None = None,
) -> tuple[list[Path], str]:
    """(model.onnx, the converter that wrote it): input `image`, outputs `probabilities` and `logits` (and
    `features` with `with_features`).

    Flora's own converter (core.runtimes.onnx_graph) writes the graph from the layers and weights: about a second for
    ResNet-50 where tf2onnx takes ~20 CPU-s, an NCHW graph with each BatchNormalization folded into its convolution
    (what the runtime choice runs; ONNX Runtime runs it as fast as tf2onnx's NHWC one, docs/PERFORMANCE.md). Where it
    does not know a layer, or `accept` (the caller's check of the file against Keras) turns its graph down, tf2onnx
    converts the pixel function instead. `converter` ("flora" or "tf2onnx") asks for one of them only.
    """
    path = out / "model.onnx"
    out.mkdir(parents=True, exist_ok=True)
    if converter in (None, FLORA_CONVERTER):
        exported = pixel_model(model, with_features)
        try:
            written = onnx_graph.convert(exported, list(ONNX_OUTPUTS[: len(exported.outputs)])).SerializeToString()
        except Exception as why:  # a layer it does not write (Unsupported), or any failure of its own
            if converter == FLORA_CONVERTER:
                raise
            level = logging.INFO if isinstance(why, onnx_graph.Unsupported) else logging.WARNING
            log.log(level, "Flora's ONNX converter did not write this model (%s): converting with tf2onnx", why)
        else:
            path.write_bytes(written)
            if converter == FLORA_CONVERTER or accept is None or accept(path):
                return [path], FLORA_CONVERTER
            log.warning("Flora's ONNX graph did not give the Keras model's answers: converting with tf2onnx")
            path.unlink()
    _write_onnx_with_tf2onnx(model, path, with_features)
    return [path], TF2ONNX_CONVERTER


def _write_onnx_with_tf2onnx(model: keras.Model, path: Path, with_features: bool) -> None:
    """tf2onnx guards each of its graph optimizers by deep-copying the whole graph first, weights included, so that one
    that fails can be skipped: on ResNet-50 about two dozen copies of its 100 MB, and a 6.7 GB peak for a 32 px export
    (5.1 GB without them; docs/PERFORMANCE.md). It runs without the guard first (`TF2ONNX_CATCH_ERRORS`, tf2onnx's
    own switch) and, only if that fails, again with it, so a graph one optimizer cannot handle still converts as before.
    """
    tf2onnx = import_tf2onnx()
    function = _pixel_function(model, with_features)

    def convert() -> None:
        tf2onnx.convert.from_function(
            function, input_signature=function.input_signature, opset=OPSET, output_path=str(path)
        )

    try:
        with _tf2onnx_optimizers_unguarded():
            convert()
    except Exception as error:  # any optimizer's failure: convert again with tf2onnx's guard
        log.warning("tf2onnx without its optimizer guard failed (%s): converting again with it", error)
        convert()


_TF2ONNX_SWITCH = "TF2ONNX_CATCH_ERRORS"
_tf2onnx_switch_lock = threading.Lock()


@contextlib.contextmanager
def _tf2onnx_optimizers_unguarded() -> Iterator[None]:
    """tf2onnx reads its switch from the environment when it converts: set for this conversion only (one at a time
    in this process), then as it was."""
    with _tf2onnx_switch_lock, _put_back(_TF2ONNX_SWITCH):
        os.environ[_TF2ONNX_SWITCH] = "FALSE"
        yield


@contextlib.contextmanager
def _put_back(name: str) -> Iterator[None]:
    """The environment variable `name` as it was before the block (unset, if it was), whatever the block did."""
    before = os.environ.get(name)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def write_tflite(
    model: keras.Model,
    out: Path,
    quantize: str | None = None,
    representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
) -> list[Path]:
    import tensorflow as tf

    # Converted from the concrete function itself, with what holds its weights: the same answers as through a
    # SavedModel written and read back (Keras's way), without writing one (a ResNet-50 at 32 px: 15.2 -> 11.2 CPU-s).
    size = int(model.input_shape[1])
    exported = pixel_model(model)
    function = _traced(
        lambda image: dict(zip(("probabilities", "logits"), exported(image, training=False), strict=True)),
        tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),
    )
    holder = _holding(exported, [function])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], trackable_obj=holder)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None:
            raise InvalidInput("int8 quantization needs representative photos")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    flat = converter.convert()
    name = f"model{'_' + quantize if quantize else ''}.tflite"
    path = out / name
    out.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flat)
    return [path]

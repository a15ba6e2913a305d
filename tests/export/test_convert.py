"""The SavedModel, TFLite and ONNX writers: each endpoint traced once, the converter chosen, the files answer alike."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _counted_model():
    """A small classifier whose first layer counts its calls: each trace of the model calls it once."""
    import keras

    class Counted(keras.layers.Layer):
        calls = 0

        def call(self, x):
            Counted.calls += 1
            return x

    image = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(Counted()(image)))
    logits = keras.layers.Dense(3)(features)
    model = keras.Model(image, [keras.layers.Softmax()(logits), logits, features])
    return model, Counted


def test_the_saved_model_traces_each_endpoint_once_and_answers_like_keras(tmp_path):
    """Keras's ExportArchive traced a two-endpoint model five times (each endpoint again inside the save, and the
    model's default signature while it walked the model): on ResNet-50, 15 CPU-s a SavedModel against 6.5."""
    import keras
    import tensorflow as tf

    from core.export import convert

    model, counted = _counted_model()
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    want = keras.ops.convert_to_numpy(model(pixels)[0])
    counted.calls = 0
    convert.write_savedmodel(model, tmp_path / "sm", ["a", "b", "c"], 18)
    assert counted.calls == 2  # the pixel endpoint, and the bytes endpoint around it
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert sorted(loaded.signatures) == [convert.PIXELS_SIGNATURE, convert.BYTES_SIGNATURE]
    for answer in (
        loaded.signatures[convert.PIXELS_SIGNATURE](image=tf.constant(pixels))["probabilities"],
        loaded.predict_pixels(tf.constant(pixels))["probabilities"],  # the endpoints are attributes too
        keras.layers.TFSMLayer(str(tmp_path / "sm"), call_endpoint="predict_pixels")(pixels)["probabilities"],
    ):
        np.testing.assert_allclose(np.asarray(answer), want, atol=1e-6)


def test_the_tflite_file_is_converted_from_one_trace_with_its_weights_as_constants(tmp_path):
    """Converted from the one concrete function, no SavedModel written and read back (Keras's way traced it three
    times), with the variables it reads held for the converter: with only Keras's variables around them, TensorFlow
    Lite's converter kept the weights as variables it never filled (NaN answers)."""
    import keras
    from ai_edge_litert import interpreter as litert

    from core.export import convert

    model, counted = _counted_model()
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    want = keras.ops.convert_to_numpy(model(pixels)[0])
    counted.calls = 0
    path = convert.write_tflite(model, tmp_path)[0]
    assert counted.calls == 1
    interpreter = litert.Interpreter(model_path=str(path))
    assert not {"VAR_HANDLE", "READ_VARIABLE"} & {op["op_name"] for op in interpreter._get_ops_details()}
    runner = interpreter.get_signature_runner()
    got = np.concatenate([runner(image=pixels[i : i + 1])["probabilities"] for i in range(len(pixels))])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnx_comes_from_floras_converter_where_it_knows_the_graph_else_from_tf2onnx(tmp_path, monkeypatch, caplog):
    """Flora's own converter (core.runtimes.onnx_graph: about a second for ResNet-50, where tf2onnx took ~20 CPU-s)
    writes a graph whose every layer it knows; a layer it does not know, or a graph the caller's check against Keras
    turns down, goes to tf2onnx. Every file has the same input and outputs and answers like the Keras model."""
    import keras
    import onnxruntime

    from core.export import convert

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    logits = keras.layers.Dense(3)(features)
    known = keras.Model(image, [keras.layers.Activation("softmax")(logits), logits, features])
    unknown, _ = _counted_model()  # a layer of its own: not one Flora's converter writes
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    checked = []

    def turned_down(path):
        checked.append(path.is_file())
        return False

    cases = [(known, None, "flora"), (known, turned_down, "tf2onnx"), (unknown, None, "tf2onnx")]
    for i, (model, accept, expected) in enumerate(cases):
        (path,), converter = convert.write_onnx(model, tmp_path / str(i), with_features=True, accept=accept)
        assert (converter, path.name) == (expected, "model.onnx"), i
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [t.name for t in session.get_inputs()] == ["image"]
        got = session.run(["probabilities", "logits", "features"], {"image": pixels})
        for ours, want in zip(got, map(keras.ops.convert_to_numpy, model(pixels)), strict=True):
            # float32 sums in another order: within 1e-5 of the output's largest value (raw 0-255 pixels in)
            np.testing.assert_allclose(ours, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    assert checked == [True]  # the check saw Flora's file before it went to tf2onnx

    def broken(*args, **kwargs):
        raise RuntimeError("a bug of its own")

    monkeypatch.setattr(convert.onnx_graph, "convert", broken)  # any failure of Flora's converter: tf2onnx, said
    with caplog.at_level("WARNING", logger="flora"):
        assert convert.write_onnx(known, tmp_path / "broken")[1] == "tf2onnx"
    assert "a bug of its own" in caplog.text

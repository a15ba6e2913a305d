"""The ONNX writer: the graphs Flora runs (the feature extractor, the inference graph) give Keras's numbers in
ONNX Runtime, whatever the input size; BatchNormalization folds only where nothing else reads the convolution."""

from __future__ import annotations

import keras
import numpy as np
import onnxruntime as ort
import pytest

from core.network.graph import inference_model
from core.network.model import build_classifier
from core.runtimes.onnx_graph import Unsupported, convert
from core.train.features import build_extractor


def _randomise_batch_norms(model, rng) -> None:
    """Moving statistics and scales far from a fresh layer's, so a wrong fold cannot pass."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            _randomise_batch_norms(layer, rng)
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))


def _onnx_outputs(model, names, x):
    session = ort.InferenceSession(convert(model, names).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})


def _keras_outputs(model, x):
    out = model.predict_on_batch(x)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in (out if isinstance(out, list) else [out])]


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("size", [32, 37])  # 37: odd maps, TensorFlow's uneven "same" padding at every stride
def test_extractor_and_inference_graph_give_kerass_numbers(size):
    rng = np.random.default_rng(size)
    classifier = build_classifier(3, size, "none", head=(8,), seed=0)
    _randomise_batch_norms(classifier, rng)
    x = rng.uniform(0, 255, (5, size, size, 3)).astype("float32")
    for model, names in (
        (build_extractor(classifier), ["features"]),
        (inference_model(classifier), ["probabilities", "logits", "features"]),
    ):
        for name, got, want in zip(names, _onnx_outputs(model, names, x), _keras_outputs(model, x), strict=True):
            assert got.shape == want.shape, name
            # 1e-5 of the output's scale; logits and probabilities near 0 (a random head's) at least 1e-5 absolute:
            # under JAX on this AMD EPYC, logits of at most 0.08 differed by 9e-7 (float32 sums in another order),
            # while a wrong fold of the randomised batch norms moves them by tenths
            scale = np.abs(want).max() if name == "features" else max(np.abs(want).max(), 1.0)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale, err_msg=name)
            if name != "features":  # the same answer wherever the two likeliest classes are told apart
                top_two = np.sort(want, axis=1)[:, -2:]
                apart = top_two[:, 1] - top_two[:, 0] > 2e-5 * scale
                assert (got.argmax(1) == want.argmax(1))[apart].all(), name


@pytest.mark.backend_agnostic
def test_a_convolution_read_twice_keeps_its_batch_norm_apart():
    inputs = keras.Input((8, 8, 3), name="image")
    conv = keras.layers.Conv2D(4, 3, padding="same", name="c")(inputs)
    normed = keras.layers.BatchNormalization(name="bn")(conv)
    out = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([normed, conv]))  # the raw conv is read too
    model = keras.Model(inputs, out)
    _randomise_batch_norms(model, np.random.default_rng(1))
    x = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(_onnx_outputs(model, ["y"], x)[0], _keras_outputs(model, x)[0], rtol=1e-5, atol=1e-3)


@pytest.mark.backend_agnostic
def test_a_layer_it_does_not_write_is_named():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.LayerNormalization(name="odd_norm")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(Unsupported, match=r"odd_norm.*LayerNormalization"):
        convert(model, ["y"])

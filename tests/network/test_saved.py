"""A saved model read without its initializers' fills is the model Keras's own load gives."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state

from core.network.model import build_classifier, head_of, load_classifier
from core.network.saved import STATELESS_REFUSAL, _holds_inner_training_state, _values_first, load_keras_file
from core.runs.files import run_files
from core.settings.config import AugmentConfig
from core.train.training import save_model

SIZE = 32
AUGMENT = AugmentConfig(rotation=15, zoom=0.2, horizontal_flip=True, brightness=0.1, contrast=0.1)  # seeded layers


def _pending() -> list:
    return list(global_state.get_global_attribute("uninitialized_variables") or [])


def _values(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    """Each variable's path without Keras's running numbers (`seed_generator_12`), and its value, in order."""
    return [(re.sub(r"_\d+", "", v.path), keras.ops.convert_to_numpy(v.value)) for v in model.variables]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A classifier with random augmentation (seed-state variables) and dropout, trained a step so no weight is a
    fresh initializer's value, saved as Flora saves a run's model."""
    model = build_classifier(3, SIZE, "none", head=(8,), dropout=0.2, augment=AUGMENT, seed=4)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    pixels = np.random.default_rng(0).uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")
    model.fit(pixels, np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]], epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    save_model(model, path)
    return path, pixels


@pytest.mark.backend_agnostic
def test_the_model_keras_loads_and_the_quicker_load_are_the_same_model(saved, tmp_path):
    path, pixels = saved
    before = _pending()
    plain = keras.saving.load_model(path, compile=False)
    quick = load_classifier(path)
    assert _pending() == before  # nothing left waiting for a value
    assert quick.get_config() == plain.get_config()
    plain_values, quick_values = _values(plain), _values(quick)
    assert [name for name, _ in quick_values] == [name for name, _ in plain_values]
    assert any("seed" in name for name, _ in quick_values)  # the random layers' states are among them
    for (name, got), (_, want) in zip(quick_values, plain_values, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(quick.predict(pixels, verbose=0), plain.predict(pixels, verbose=0))
    # the random layers draw the same transforms and drop the same units: their seed states came out the same. Each
    # random block is called alone: the whole ResNet-50 called eagerly compiles each of its operations apart on JAX.
    features = np.random.default_rng(1).normal(size=(len(pixels), *plain.get_layer("head").input.shape[1:]))
    for block, inputs in (("augmentation", pixels), ("head", features.astype("float32"))):
        drawn = [keras.ops.convert_to_numpy(m.get_layer(block)(inputs, training=True)) for m in (quick, plain)]
        np.testing.assert_array_equal(*drawn, err_msg=block)
    # and the quicker load's model is a whole one: it trains, and saves a file Keras reads back
    quick.compile(optimizer="adam", loss="categorical_crossentropy")
    quick.fit(pixels, np.eye(3, dtype="float32")[[2, 1, 0, 2, 1, 0]], epochs=1, verbose=0)
    save_model(quick, tmp_path / "again.keras")
    again = keras.saving.load_model(tmp_path / "again.keras", compile=False)
    np.testing.assert_allclose(again.predict(pixels, verbose=0), quick.predict(pixels, verbose=0), atol=1e-6)


def test_a_damaged_file_fails_as_keras_fails_and_leaves_nothing_waiting(saved, tmp_path):
    path, _ = saved
    damaged = tmp_path / "model.keras"
    damaged.write_bytes(path.read_bytes()[:5000])  # a cut zip
    before = _pending()
    with pytest.raises(Exception) as plain:
        keras.saving.load_model(damaged, compile=False)
    with pytest.raises(type(plain.value)):
        load_keras_file(damaged)
    assert _pending() == before


@pytest.mark.backend_agnostic
def test_a_runs_model_is_saved_without_its_heads_training_state_and_read_the_quick_way(trained_run):
    path = run_files(trained_run["store"].run_dir(trained_run["run_id"])).model
    assert not _holds_inner_training_state(path)  # the head's own Adam left out as training saved it
    before = _pending()
    plain, quick = keras.saving.load_model(path, compile=False), load_classifier(path)
    assert _pending() == before and quick.get_config() == plain.get_config()
    for (name, got), (_, want) in zip(_values(quick), _values(plain), strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)
    pixels = np.random.default_rng(3).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(quick.predict(pixels, verbose=0), plain.predict(pixels, verbose=0))


def test_a_file_whose_head_was_saved_compiled_is_read_the_plain_way_and_saved_again_without(saved, tmp_path):
    """Runs saved before this change (and files from elsewhere) hold the inner model's compile state: Keras's own
    load reads them; Flora's save leaves that state out and keeps the head in memory as compiled as it was."""
    _, pixels = saved
    model = build_classifier(3, SIZE, "none", head=(8,), seed=1)
    head = head_of(model)
    head.compile(optimizer="adam", loss="categorical_crossentropy")  # as fit_head leaves a run's head
    head.fit(np.zeros((4, head.input_shape[-1]), "float32"), np.eye(3, dtype="float32")[[0, 1, 2, 0]], verbose=0)
    old_style = tmp_path / "old.keras"
    model.save(old_style)
    assert _holds_inner_training_state(old_style)
    before = _pending()
    loaded = load_keras_file(old_style)
    assert _pending() == before
    np.testing.assert_array_equal(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0))
    save_model(model, tmp_path / "new.keras")
    assert not _holds_inner_training_state(tmp_path / "new.keras")
    assert head.compiled and head.optimizer is not None and head.optimizer.iterations.numpy() == 1
    np.testing.assert_array_equal(
        load_keras_file(tmp_path / "new.keras").predict(pixels, verbose=0), model.predict(pixels, verbose=0)
    )


@keras.saving.register_keras_serializable(package="flora_tests")
class ValueMadeVariable(keras.layers.Layer):
    """A layer from elsewhere that makes its variable from a value, not an initializer."""

    def build(self, input_shape):
        self.scale = keras.Variable(np.full((input_shape[-1],), 2.0, "float32"), name="scale")

    def call(self, x):
        return x * self.scale


def test_a_model_whose_layer_makes_a_variable_from_a_value_is_read_the_plain_way(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, ValueMadeVariable()(inputs))
    model.layers[-1].scale.assign(np.array([1.0, 2.0, 3.0], "float32"))
    model.save(tmp_path / "elsewhere.keras")
    before = _pending()
    with pytest.raises(ValueError, match=STATELESS_REFUSAL):  # Keras refuses it inside the scope, in these words
        _values_first(lambda: keras.saving.load_model(tmp_path / "elsewhere.keras", compile=False))
    assert _pending() == before
    loaded = load_keras_file(tmp_path / "elsewhere.keras")
    assert _pending() == before
    np.testing.assert_array_equal(loaded.predict(np.ones((1, 3), "float32"), verbose=0), [[1.0, 2.0, 3.0]])


@pytest.mark.backend_agnostic
def test_a_backbone_built_from_a_weights_file_takes_its_values_without_filling_them_first(tmp_path, monkeypatch):
    """ImageNet's weights (or any weights file) go straight into the backbone: before, every kernel was first filled
    by its initializer, and on JAX each kernel shape's initializer was compiled first (a ResNet-50 from ImageNet's
    file 10.8-11.0 -> 0.4-0.5 CPU-s from a cold cache; TensorFlow 1.4-1.6 -> 0.9)."""
    from core.network.model import build_backbone

    source = build_backbone(SIZE, "none", backbone="tiny")
    source.set_weights([w + 0.5 for w in source.get_weights()])
    source.save_weights(tmp_path / "tiny.weights.h5")
    fills = []
    plain = keras.Variable._initialize_with_initializer
    monkeypatch.setattr(
        keras.Variable, "_initialize_with_initializer", lambda self, init: fills.append(self.path) or plain(self, init)
    )
    before = _pending()
    built = build_backbone(SIZE, str(tmp_path / "tiny.weights.h5"), backbone="tiny")
    assert fills == [] and _pending() == before
    for got, want in zip(built.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    build_backbone(SIZE, "none", backbone="tiny")  # a random start fills them, as ever: the count sees fills
    assert fills

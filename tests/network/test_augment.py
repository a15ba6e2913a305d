"""Augmentation layers and the preview made by exactly those layers."""

from __future__ import annotations

import numpy as np
import pytest

from core.network.augment import EXPLANATIONS, build_augmentation, preview
from core.settings.config import AUGMENT_PRESETS, AugmentConfig

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    array[:, :16] //= 3  # not symmetric, so flips show
    return array


def test_nothing_on_means_no_layers():
    assert build_augmentation(AugmentConfig()) is None
    out = preview(np.zeros((8, 8, 3), np.uint8), AugmentConfig(), n=2)
    assert out.shape == (2, 8, 8, 3) and not out.any()


@pytest.fixture
def ramps():
    """Red rises down the rows, green along the columns, blue is noise: each transform leaves its own trace."""
    rows, columns = np.mgrid[0:32, 0:32]
    blue = np.random.default_rng(1).integers(60, 190, (32, 32))
    return np.stack([40 + 5 * rows, 40 + 5 * columns, blue], axis=-1).astype(np.uint8)


# Each field's layer and its setting, as build_augmentation wires them (a transform on the wrong layer fails here).
WIRING = {
    "rotation": (30, "RandomRotation", {"factor": (-30 / 360, 30 / 360)}),
    "width_shift": (0.3, "RandomTranslation", {"width_factor": 0.3, "height_factor": 0.0}),
    "height_shift": (0.3, "RandomTranslation", {"width_factor": 0.0, "height_factor": 0.3}),
    "shear": (20, "RandomShear", {"x_factor": (-np.tan(np.radians(20)), np.tan(np.radians(20)))}),
    "zoom": (0.3, "RandomZoom", {"height_factor": (-0.3, 0.3)}),
    "horizontal_flip": (True, "RandomFlip", {"mode": "horizontal"}),
    "vertical_flip": (True, "RandomFlip", {"mode": "vertical"}),
    "brightness": (0.3, "RandomBrightness", {"factor": (-0.3, 0.3), "value_range": [0, 255]}),
    "contrast": (0.5, "RandomContrast", {"factor": (0, 0.5)}),
}


def _moved(versions: np.ndarray, original: np.ndarray, channel: int) -> bool:
    """True when some version's `channel` differs from the original's by more than rounding."""
    return any(np.abs(v[..., channel].astype(int) - original[..., channel]).max() > 1 for v in versions)


@pytest.mark.parametrize("field", list(WIRING))
def test_each_transform_is_its_own_layer_and_leaves_its_own_trace(ramps, field):
    value, layer_class, settings = WIRING[field]
    config = AugmentConfig(**{field: value})
    [layer] = build_augmentation(config, seed=1).layers
    assert type(layer).__name__ == layer_class
    for key, expected in settings.items():
        got = layer.get_config()[key]
        assert np.allclose(got, expected) if not isinstance(expected, str) else got == expected, (key, got)

    out = preview(ramps, config, n=8, seed=1)
    assert out.shape == (8, 32, 32, 3) and out.dtype == np.uint8
    assert any(not np.array_equal(version, ramps) for version in out), f"{field} left every version unchanged"
    red_moved, green_moved = _moved(out, ramps, 0), _moved(out, ramps, 1)
    if field == "horizontal_flip":
        assert all(np.array_equal(v, ramps) or np.array_equal(v, ramps[:, ::-1]) for v in out)
    elif field == "vertical_flip":
        assert all(np.array_equal(v, ramps) or np.array_equal(v, ramps[::-1]) for v in out)
    elif field == "width_shift":  # along the rows: the red ramp (constant along a row) stays, the green one slides
        assert green_moved and not red_moved
    elif field == "height_shift":
        assert red_moved and not green_moved
    elif field in ("rotation", "shear", "zoom"):
        assert red_moved and green_moved
    else:  # brightness and contrast change values in place: an affine map of each channel, no pixel moves
        for version in out:
            for channel in range(3):
                kept = (version[..., channel] > 0) & (version[..., channel] < 255)
                x, y = ramps[..., channel][kept].astype(float), version[..., channel][kept].astype(float)
                scale, offset = np.polyfit(x, y, 1)
                assert np.abs(scale * x + offset - y).max() <= 1.0  # rounding, and nothing else
                if field == "brightness":
                    assert scale == pytest.approx(1.0, abs=0.01)


def test_every_field_has_an_explanation():
    for field in WIRING:
        assert field in EXPLANATIONS


def test_preview_is_reproducible_with_a_seed(image):
    config = AUGMENT_PRESETS["strong"]
    first = preview(image, config, n=4, seed=3)
    np.testing.assert_array_equal(first, preview(image, config, n=4, seed=3))
    assert not np.array_equal(first, preview(image, config, n=4, seed=4))


def test_batch_preview_shape(image):
    out = preview(np.stack([image, image[::-1]]), AUGMENT_PRESETS["light"], n=3, seed=0)
    assert out.shape == (2, 3, 32, 32, 3)


def test_layers_are_inactive_outside_training(image):
    pipeline = build_augmentation(AUGMENT_PRESETS["strong"], seed=0)
    out = np.asarray(pipeline(image[None].astype("float32"), training=False))
    np.testing.assert_allclose(out[0], image.astype("float32"))


def test_preview_uses_the_same_layers_as_the_model():
    from core.network.model import build_classifier

    config = AUGMENT_PRESETS["standard"]
    model = build_classifier(2, 32, "none", head=(8,), augment=config, seed=5)
    in_model = model.get_layer("augmentation")
    standalone = build_augmentation(config, seed=5)
    assert [layer.get_config() for layer in in_model.layers] == [layer.get_config() for layer in standalone.layers]


def test_compiled_augmentation_keeps_each_layer_apart_on_a_cpu_and_gives_the_same_pixels():
    """`allow_jit` on JAX on a CPU passes each layer's images through a conditional (XLA would otherwise fuse each
    resampling into the next one's reads, 2.5-3.5x the work): the compiled pipeline gives the same pixels, bit for
    bit, as one compiled without it; asked twice, it wraps once. On TensorFlow it leaves the layers alone."""
    import keras

    from core.network.model import allow_jit
    from core.train.features import AlwaysAugment

    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")

    def compiled(kept_apart: bool):
        pipeline = build_augmentation(AUGMENT_PRESETS["strong"], seed=3)
        if kept_apart:
            allow_jit(pipeline)
            allow_jit(pipeline)
        else:
            for layer in pipeline.layers:
                layer.supports_jit = True  # compiled whole, as allow_jit lets it be, without the conditionals
        inputs = keras.Input((32, 32, 3))
        model = keras.Model(inputs, AlwaysAugment(pipeline)(inputs))
        return pipeline, np.asarray(model.predict_on_batch(images))

    pipeline, kept = compiled(True)
    _, fused = compiled(False)
    np.testing.assert_array_equal(kept, fused)
    assert not np.array_equal(kept, images)  # the transforms ran
    on_a_cpu = all(device.startswith("cpu") for device in keras.distribution.list_devices())
    wrapped = [type(layer.call).__name__ == "_KeptApart" for layer in pipeline.layers]
    assert wrapped == [keras.backend.backend() == "jax" and on_a_cpu] * len(pipeline.layers)
    assert not any(type(getattr(layer.call, "call", None)).__name__ == "_KeptApart" for layer in pipeline.layers)

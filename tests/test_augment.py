"""Augmentation layers and the preview made by exactly those layers."""

from __future__ import annotations

import numpy as np
import pytest

from core.augment import EXPLANATIONS, build_augmentation, preview
from core.config import AUGMENT_PRESETS, AugmentConfig

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


@pytest.mark.parametrize(
    "field, value",
    [
        ("rotation", 30),
        ("width_shift", 0.3),
        ("height_shift", 0.3),
        ("shear", 20),
        ("zoom", 0.3),
        ("horizontal_flip", True),
        ("vertical_flip", True),
        ("brightness", 0.3),
        ("contrast", 0.5),
    ],
)
def test_each_transform_changes_the_image(image, field, value):
    config = AugmentConfig(**{field: value})
    out = preview(image, config, n=6, seed=1)
    assert out.shape == (6, 32, 32, 3) and out.dtype == np.uint8
    changed = [not np.array_equal(version, image) for version in out]
    assert any(changed), f"{field} left every version unchanged"
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
    from core.model import build_classifier

    config = AUGMENT_PRESETS["standard"]
    model = build_classifier(2, 32, "none", head=(8,), augment=config, seed=5)
    in_model = model.get_layer("augmentation")
    standalone = build_augmentation(config, seed=5)
    assert [layer.get_config() for layer in in_model.layers] == [layer.get_config() for layer in standalone.layers]

"""The predict.py shipped with every ONNX/TFLite export decodes photos exactly as Flora does (core.data.imaging):
checked pixel for pixel on the odd kinds of image Flora accepts, so the two cannot drift apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.imaging import load_for_model

TEMPLATE = Path(__file__).resolve().parent.parent / "core" / "export" / "predict_template.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("flora_export_predict", TEMPLATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save(image: Image.Image, path: Path, fmt: str, **options) -> Path:
    image.save(path, fmt, **options)
    return path


def _odd_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    sixteen = Image.fromarray((rng.integers(0, 65535, (50, 70))).astype(np.uint16))
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    return [
        _save(photo, folder / "photo.jpg", "JPEG", quality=90),
        _save(photo, folder / "rotated.jpg", "JPEG", exif=exif.tobytes()),
        _save(photo.convert("CMYK"), folder / "cmyk.jpg", "JPEG"),
        _save(photo.convert("L"), folder / "gray.png", "PNG"),
        _save(photo.convert("P"), folder / "palette.png", "PNG"),
        _save(rgba, folder / "alpha.png", "PNG"),
        _save(sixteen, folder / "sixteen.png", "PNG"),
        _save(photo.resize((20, 14)), folder / "small.png", "PNG"),  # enlarged
        _save(photo.resize((73, 73)), folder / "exact.png", "PNG"),  # the cache size itself
        _save(photo.resize((1200, 900)), folder / "large.jpg", "JPEG"),  # libjpeg's draft scale
    ]


@pytest.mark.parametrize(("image_size", "cache_size"), [(64, 73), (32, 37)])
def test_predict_py_decodes_exactly_as_flora(script, tmp_path, image_size, cache_size):
    for path in _odd_images(tmp_path):
        ours = load_for_model(path, image_size, cache_size).astype(np.float32)
        theirs = script.load(path, image_size, cache_size)
        assert theirs.shape == ours.shape, path.name
        np.testing.assert_array_equal(theirs, ours, err_msg=path.name)


def test_the_numpy_enlarging_fallback_is_within_a_level_of_opencv(script):
    square = np.random.default_rng(1).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    import cv2

    exact = cv2.resize(square, (73, 73), interpolation=cv2.INTER_LINEAR)
    assert np.abs(script._bilinear(square, 73).astype(int) - exact.astype(int)).max() <= 1


def test_softmax_with_temperature(script):
    logits = np.array([[2.0, 1.0, 0.0]])
    assert np.allclose(script.softmax(logits, 1.0).sum(), 1.0)
    assert script.softmax(logits, 2.0)[0, 0] < script.softmax(logits, 1.0)[0, 0]  # a higher T flattens

"""Decoding odd images: every one either becomes a clean RGB square or fails with a clear reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.data import imaging
from core.data.imaging import ImageError, center_crop, is_image_name, load_for_model, load_square

SIZE = 24


def _rgb(path, color=(200, 30, 30), size=(40, 30), fmt=None):
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _save_mode(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


ODD_BUT_READABLE = {
    "grayscale L": lambda p: _save_mode(p / "l.png", Image.new("L", (30, 40), 128)),
    "grayscale+alpha LA": lambda p: _save_mode(p / "la.png", Image.new("LA", (30, 40), (100, 255))),
    "palette GIF": lambda p: _save_mode(p / "p.gif", Image.new("RGB", (30, 30), (0, 0, 255)).convert("P")),
    "palette GIF with transparency": lambda p: _save_mode(p / "pt.gif", Image.new("P", (30, 30), 0), transparency=0),
    "CMYK JPEG": lambda p: _save_mode(p / "cmyk.jpg", Image.new("CMYK", (30, 30), (0, 255, 255, 0))),
    "RGBA PNG": lambda p: _save_mode(p / "rgba.png", Image.new("RGBA", (30, 30), (0, 255, 0, 255))),
    "16-bit PNG": lambda p: _save_mode(p / "16.png", Image.fromarray(np.full((30, 30), 65535, np.uint16))),
    "32-bit float TIFF": lambda p: _save_mode(p / "f.tiff", Image.fromarray(np.full((30, 30), 0.5, np.float32))),
    "bilevel": lambda p: _save_mode(p / "1.png", Image.new("1", (30, 30), 1)),
    "1x1 pixel": lambda p: _rgb(p / "one.png", size=(1, 1)),
    "BMP": lambda p: _rgb(p / "b.bmp"),
    "WEBP": lambda p: _rgb(p / "w.webp"),
    "spaces and non-ASCII name": lambda p: _rgb(p / "rosé ünïcode photo 1.jpg"),
    "wrong extension (PNG named .jpg)": lambda p: _rgb(p / "actually_png.jpg", fmt="PNG"),
}


@pytest.mark.parametrize("name", ODD_BUT_READABLE)
def test_odd_images_decode_to_rgb_squares(tmp_path, name):
    path = ODD_BUT_READABLE[name](tmp_path)
    out = load_square(path, SIZE)
    assert out.shape == (SIZE, SIZE, 3)
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: _save_mode(p / "t.png", Image.new("RGBA", (20, 20), (0, 0, 0, 0))), (255, 255, 255)),
        (lambda p: _save_mode(p / "g.png", Image.fromarray(np.full((20, 20), 32896, np.uint16))), (128, 128, 128)),
        (lambda p: _save_mode(p / "c.jpg", Image.new("CMYK", (20, 20), (0, 255, 255, 0))), (255, 0, 0)),
        (lambda p: _save_mode(p / "l.png", Image.new("L", (20, 20), 77)), (77, 77, 77)),
    ],
    ids=["transparent->white", "16-bit->8-bit", "CMYK->RGB", "gray->RGB"],
)
def test_colour_conversions_keep_the_colour(tmp_path, make, expected):
    out = load_square(make(tmp_path), 8).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(out, expected, atol=6)


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape: left half red, right half blue. Orientation 6 = display rotated 90° clockwise,
    # which puts red on top and blue at the bottom.
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    out = load_square(path, 20).astype(int)
    top, bottom = out[:4].reshape(-1, 3).mean(0), out[-4:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: _write(p / "empty.jpg", b""), "not an image"),
        (lambda p: _write(p / "notes.jpg", b"shopping list"), "not an image"),
        (lambda p: p / "missing.jpg", "file not found"),
    ],
    ids=["zero-byte", "text named .jpg", "missing"],
)
def test_unreadable_files_raise_clear_errors(tmp_path, make, reason):
    with pytest.raises(ImageError, match=reason):
        load_square(make(tmp_path), SIZE)


def test_truncated_jpeg_is_reported(tmp_path):
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        load_square(path, SIZE)


def test_decompression_bomb_is_refused_with_a_message(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (20_000, 20_000), 0).save(path)  # 400 megapixels, a few KB on disk
    with pytest.raises(ImageError, match="too large"):
        load_square(path, SIZE)


def test_resize_keeps_centre_and_aspect(tmp_path):
    # 60x20: a green centre square between red bands; the centre crop sees only green.
    array = np.zeros((20, 60, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:40] = (0, 255, 0)
    array[:, 40:] = (255, 0, 0)
    Image.fromarray(array).save(tmp_path / "wide.png")
    out = load_square(tmp_path / "wide.png", 10)
    assert out[..., 1].min() > 200 and out[..., 0].max() < 60


def test_bytes_and_file_objects_decode_like_paths(tmp_path):
    path = _rgb(tmp_path / "x.png", color=(10, 20, 30))
    from_path = load_square(path, SIZE)
    np.testing.assert_array_equal(load_square(path.read_bytes(), SIZE), from_path)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_square(f, SIZE), from_path)


def test_load_for_model_is_a_centre_crop_of_the_cache_square(tmp_path):
    noise = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "n.png")
    square = load_square(tmp_path / "n.png", 37)
    np.testing.assert_array_equal(load_for_model(tmp_path / "n.png", 32, 37), center_crop(square, 32))


def test_center_crop_rejects_a_larger_crop():
    with pytest.raises(ValueError, match="larger"):
        center_crop(np.zeros((10, 10, 3)), 12)


@pytest.mark.parametrize("name, expected", [("a.JPG", True), ("b.jpeg", True), ("c.txt", False), ("d", False)])
def test_image_names(name, expected):
    assert is_image_name(name) is expected


def test_enlarging_is_bilinear_shrinking_bicubic_and_an_exact_square_is_untouched(tmp_path):
    rng = np.random.default_rng(5)
    photo = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_square(tmp_path / "p.png", 40), np.asarray(photo))
    enlarged = load_square(tmp_path / "p.png", 52).astype(int)
    pillow_bilinear = np.asarray(photo.resize((52, 52), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(enlarged - pillow_bilinear).max() <= 1  # OpenCV's bilinear, rounding apart
    shrunk = np.asarray(photo.resize((20, 20), Image.Resampling.BICUBIC, reducing_gap=3.0))
    np.testing.assert_array_equal(load_square(tmp_path / "p.png", 20), shrunk)


def _pillow_only(monkeypatch):
    monkeypatch.setattr(imaging, "_decode_jpeg_fast", lambda image, size: None)


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_fast_jpeg_path_gives_pillows_pixels_for_every_exif_orientation(monkeypatch, mode, orientation):
    rng = np.random.default_rng(orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (36, 60, 3), dtype=np.uint8)).convert(mode).save(
        buffer, "JPEG", quality=95, exif=exif.tobytes()
    )
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as image:
        assert imaging._decode_jpeg_fast(image, 30) is not None  # the fast path decoded it
    fast = {size: load_square(data, size) for size in (16, 30, 36, 50)}  # shrink, crop only, enlarge
    _pillow_only(monkeypatch)
    for size, pixels in fast.items():
        assert pixels.flags.c_contiguous
        np.testing.assert_array_equal(pixels, load_square(data, size))


def test_the_fast_jpeg_path_uses_draft_scales_like_pillow(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    big = Image.fromarray(rng.integers(0, 255, (300, 420, 3), dtype=np.uint8)).resize((840, 600))
    big.save(tmp_path / "big.jpg", quality=90)
    fast = {size: load_square(tmp_path / "big.jpg", size) for size in (64, 146, 300)}  # 1/8, 1/4, 1/2 scale
    _pillow_only(monkeypatch)
    for size, pixels in fast.items():
        np.testing.assert_array_equal(pixels, load_square(tmp_path / "big.jpg", size))


def test_a_truncated_jpeg_still_gets_pillows_clear_reason(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, "JPEG")
    path = _write(tmp_path / "cut.jpg", buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_square(path, 32)

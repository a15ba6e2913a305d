"""Decode one image file into a square uint8 RGB array, the same way for training and prediction.

Every odd input either decodes to RGB (grayscale, palette, CMYK, alpha, 16-bit, EXIF-rotated) or
raises `ImageError` with a reason a person can act on.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
# Pillow refuses images over 2x its own limit with a terse message; we refuse earlier and say why.
MAX_PIXELS = 100_000_000
_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as a viewer shows them


class ImageError(ValueError):
    """An image could not be decoded; the message says why."""


def is_image_name(name: str | os.PathLike) -> bool:
    """True when the file name has an image extension we decode."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def load_square(source: str | os.PathLike | bytes | BinaryIO, size: int) -> np.ndarray:
    """Decode an image, resize its shorter side to `size` and centre-crop it square.

    Args:
        source: a path, the file's bytes, or a binary file object.
        size: side of the square result in pixels.

    Returns:
        A (size, size, 3) uint8 RGB array.

    Raises:
        ImageError: the file is missing, not an image, truncated, or too large.
    """
    return np.asarray(load_square_image(source, size), dtype=np.uint8)


def load_square_image(source: str | os.PathLike | bytes | BinaryIO, size: int) -> Image.Image:
    """`load_square` as a PIL RGB image (`.tobytes()` gives the rows without a numpy copy).

    Raises:
        ImageError: as `load_square`.
    """
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                return _decode(image, size)
    except ImageError:
        raise
    except FileNotFoundError as e:
        raise ImageError(f"file not found: {e.filename}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (the contents are not a format Pillow can read)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"corrupt or truncated image data ({e})") from None


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """Crop the central `size` x `size` square of an (H, W, C) or (N, H, W, C) array."""
    height, width = array.shape[-3], array.shape[-2]
    if size > min(height, width):
        raise ValueError(f"crop size {size} is larger than the image ({height}x{width})")
    top = (height - size) // 2
    left = (width - size) // 2
    return array[..., top : top + size, left : left + size, :]


def load_for_model(source: str | os.PathLike | bytes | BinaryIO, image_size: int, cache_size: int) -> np.ndarray:
    """The evaluation preprocessing: decode to the cache square, then centre-crop the input size."""
    return center_crop(load_square(source, cache_size), image_size)


def _decode(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"image too large: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit that guards against decompression bombs"
        )
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the result stays >= size: much faster.
        image.draft(image.mode, (size, size))
    image.load()
    with contextlib.suppress(Exception):  # a malformed EXIF block must not cost us the picture
        # in place: without it Pillow returns a full copy of every photo that needs no turn
        ImageOps.exif_transpose(image, in_place=True)
    image = _to_rgb(image)
    return _resize_center_square(image, size)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_high_depth_to_uint8(np.asarray(image)), "L").convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, _BACKGROUND)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _high_depth_to_uint8(array: np.ndarray) -> np.ndarray:
    """Map 16-bit, 32-bit integer or float pixels to 0-255."""
    array = array.astype(np.float64)
    if array.ndim == 3:
        array = array[..., 0]
    peak = float(np.nanmax(array)) if array.size else 0.0
    if peak <= 1.0:
        scale = 255.0  # float images in [0, 1]
    elif peak <= 255.0:
        scale = 1.0
    else:
        scale = 255.0 / 65535.0  # 16-bit range
    return np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)


def _resize_center_square(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left = (width - side) / 2
    top = (height - side) / 2
    box = (left, top, left + side, top + side)
    if side == size:
        return image.crop(box) if (width, height) != (size, size) else image
    # Shrinking: bicubic, antialiased (Pillow widens the filter to the scale). Enlarging adds no
    # detail to keep, where bicubic only adds overshoot and costs more: bilinear, Keras's and
    # torchvision's default.
    resample = Image.Resampling.BICUBIC if side > size else Image.Resampling.BILINEAR
    # One resample over the central square box: crop and resize in a single pass.
    return image.resize((size, size), resample, box=box, reducing_gap=3.0)

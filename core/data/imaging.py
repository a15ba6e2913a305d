"""Decode one image file into a square uint8 RGB array, the same way for training and prediction.

Every odd input either decodes to RGB (grayscale, palette, CMYK, alpha, 16-bit, EXIF-rotated) or
raises `ImageError` with a reason a person can act on.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import InvalidInput

cv2.setNumThreads(1)  # one small image at a time: OpenCV's thread pool would only add overhead

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
# Pillow refuses images over 2x its own limit with a terse message; we refuse earlier and say why.
MAX_PIXELS = 100_000_000
# Pillow modes that hold one grey channel (training converts them to RGB with R = G = B).
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as a viewer shows them
_ORIENTATION_TAG = 0x0112


# Above this many pixels an image that libjpeg cannot shrink while decoding (PNG, WebP, TIFF...) is reduced in
# its own mode right after loading, before the RGB conversion that would triple its memory.
REDUCE_FIRST_PIXELS = 24_000_000
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "LA": 2, "La": 2, "PA": 2}


class ImageError(InvalidInput):
    """An image could not be decoded; the message says why."""


class ImageTooLarge(ImageError):
    """An image over the pixel limit (a decompression bomb, or a photo far larger than any model needs)."""


@dataclass(frozen=True)
class ImageHeader:
    """What an encoded image's header says, read without decoding its pixels."""

    width: int
    height: int
    format: str | None
    mode: str
    decoded_bytes: int  # the most memory its decoding at `size` holds at once (draft scale and mode counted)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(source: bytes | BinaryIO, size: int, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """The size, format and decoding cost of an encoded image, from its header only.

    Raises:
        ImageTooLarge: over `max_pixels`.
        ImageError: not an image, or one without pixels.
    """
    with opened(source) as image:
        width, height, mode, fmt = image.size[0], image.size[1], image.mode, image.format
        progressive = fmt == "JPEG" and bool(image.info.get("progressive") or image.info.get("progression"))
        coefficients = jpeg_coefficient_bytes(width, height, getattr(image, "layer", None)) if progressive else 0
    _check_pixels(width, height, max_pixels)
    scale = 1
    if fmt == "JPEG":
        while scale < 8 and min(width, height) // (scale * 2) >= size:
            scale *= 2  # libjpeg decodes at 1/2, 1/4 or 1/8 scale (as _decode does)
    bands = _BYTES_PER_PIXEL.get(mode, 4 if mode in ("RGBA", "RGBa", "CMYK", "I", "F") else 3)
    decoded = -(-width // scale) * -(-height // scale) * bands
    # A progressive JPEG is decoded scan by scan into a buffer of every DCT coefficient of the whole image,
    # whatever the output scale: 587 KB saying 10000 x 10000 held ~260 MB while the scaled pixels were 5 MB.
    return ImageHeader(width, height, fmt, mode, decoded + coefficients)


def jpeg_coefficient_bytes(width: int, height: int, layers) -> int:
    """The bytes libjpeg's coefficient buffer takes for a progressive (or multi-scan) JPEG: 64 two-byte
    coefficients per 8x8 block of every component, at its sampling factor, padded to whole MCUs.
    `layers`: Pillow's JpegImageFile.layer, [(component id, h, v, quant table)]; None: 3 components 4:4:4."""
    layers = layers or [(1, 1, 1, 0), (2, 1, 1, 1), (3, 1, 1, 1)]
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    total = 0
    for _, h, v, _ in layers:
        blocks_wide = -(-width * h // (h_max * 8))
        blocks_high = -(-height * v // (v_max * 8))
        blocks_wide = -(-blocks_wide // h) * h  # libjpeg rounds each component up to whole MCUs
        blocks_high = -(-blocks_high // v) * v
        total += blocks_wide * blocks_high * 64 * 2
    return total


def _check_pixels(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image too large: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
            f"{max_pixels / 1e6:.0f} MP limit that guards against decompression bombs"
        )


def is_image_name(name: str | os.PathLike) -> bool:
    """True when the file name has an image extension we decode."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def load_square(source: str | os.PathLike | bytes | BinaryIO, size: int) -> np.ndarray:
    """Decode an image, resize its shorter side to `size` and centre-crop it square.

    Args:
        source: a path, the file's bytes, or a binary file object.
        size: side of the square result in pixels.

    Returns:
        A C-contiguous (size, size, 3) uint8 RGB array.

    Raises:
        ImageError: the file is missing, not an image, truncated, or too large.
    """
    with opened(source) as image:
        return _decode(image, size)


@contextlib.contextmanager
def opened(source: str | os.PathLike | bytes | BinaryIO) -> Iterator[Image.Image]:
    """Open an image with Pillow; whatever goes wrong, in the opening or in the block, becomes an ImageError
    that says why (ImageTooLarge for a decompression bomb)."""
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                yield image
    except ImageError:
        raise
    except FileNotFoundError as e:
        raise ImageError(f"file not found: {e.filename}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (the contents are not a format Pillow can read)") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image too large to decode safely ({e})") from None
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


def pixels_for_model(pixels: np.ndarray, image_size: int, cache_size: int) -> np.ndarray:
    """Raw (H, W, 3) uint8 RGB pixels prepared as a decoded file is: the cache square, then the centre crop.

    Raises:
        ImageError: not an (H, W, 3) array, or an empty one.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageError(f"pixels must be an (H, W, 3) RGB array. Received shape {tuple(pixels.shape)}")
    if min(pixels.shape[0], pixels.shape[1]) < 1:
        raise ImageError(f"image has no pixels ({pixels.shape[1]}x{pixels.shape[0]})")
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    return center_crop(_resize_center_square(pixels, cache_size), image_size)


def _decode(image: Image.Image, size: int) -> np.ndarray:
    width, height = image.size
    _check_pixels(width, height)
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        pixels = _decode_jpeg_fast(image, size)
        if pixels is not None:
            return _resize_center_square(pixels, size)
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the result stays >= size: much faster.
        image.draft(image.mode, (size, size))
    image.load()
    if width * height > REDUCE_FIRST_PIXELS:
        image = _reduce_first(image, size)
    with contextlib.suppress(Exception):  # a malformed EXIF block must not cost us the picture
        # in place: without it Pillow returns a full copy of every photo that needs no turn
        ImageOps.exif_transpose(image, in_place=True)
    return _resize_center_square(_to_rgb(image), size)


def _reduce_first(image: Image.Image, size: int) -> Image.Image:
    """A huge loaded image shrunk in its own mode to about twice `size` on its shorter side.

    Converting a 100-megapixel 1-bit or palette PNG to RGB first held 300 MB more; reduced first it holds a
    few hundred kilobytes. Box averaging where the mode has it; nearest neighbour otherwise (1-bit, palette,
    16-bit), which the final bicubic resize then smooths.
    """
    factor = max(1, min(image.size) // (2 * size))
    if factor < 2:
        return image
    exif = image.getexif()
    try:
        reduced = image.reduce(factor)
    except ValueError:  # "image has wrong mode"
        target = (max(1, image.size[0] // factor), max(1, image.size[1] // factor))
        reduced = image.resize(target, Image.Resampling.NEAREST)
    reduced.info.update(image.info)
    if exif:
        reduced.getexif().update(exif)
    return reduced


def _decode_jpeg_fast(image: Image.Image, size: int) -> np.ndarray | None:
    """Decode an RGB or grayscale JPEG with libjpeg-turbo's own API (simplejpeg), or return None.

    The same library and settings as Pillow's decoder (accurate DCT, smooth chroma upsampling, the
    same 1/2, 1/4, 1/8 draft scales: the pixels are identical), without Pillow's per-image
    overhead. Anything it will not decode cleanly (truncated, corrupt, 12-bit) returns None, and
    Pillow's path decodes it or says why it cannot.
    """
    if image.fp is None:
        return None
    try:
        image.fp.seek(0)
        data = image.fp.read()
    except (OSError, ValueError):
        return None
    width, height = image.size
    scale = 1
    while scale < 8 and min(width, height) // (scale * 2) >= size:
        scale *= 2  # as Pillow's draft: the largest power-of-two reduction keeping the shorter side >= size
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=-(-width // scale), min_height=-(-height // scale), strict=True
        )
    except (ValueError, RuntimeError, MemoryError):
        return None
    turn = None
    with contextlib.suppress(Exception):  # a malformed EXIF block must not cost us the picture
        turn = image.getexif().get(_ORIENTATION_TAG)
    return _turn_upright(pixels, turn)


def _turn_upright(pixels: np.ndarray, orientation: int | None) -> np.ndarray:
    """Apply an EXIF orientation (2-8) to (H, W, C) pixels, as `ImageOps.exif_transpose` does."""
    if orientation in (5, 6, 7, 8):
        pixels = pixels.transpose(1, 0, 2)  # swap the axes; then mirror as each orientation needs
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation == 2:
        pixels = pixels[:, ::-1]
    elif orientation == 3:
        pixels = pixels[::-1, ::-1]
    elif orientation == 4:
        pixels = pixels[::-1]
    return pixels


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


def _resize_center_square(pixels: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """The central square of RGB `pixels` (an array or a Pillow image), resized to `size`.

    Always a new C-contiguous (size, size, 3) uint8 array.
    """
    width, height = pixels.size if isinstance(pixels, Image.Image) else (pixels.shape[1], pixels.shape[0])
    side = min(width, height)
    if side > size:
        # Shrinking: bicubic, antialiased (Pillow widens the filter to the scale), in one resample
        # over the central square box so an odd margin is split exactly.
        if not isinstance(pixels, Image.Image):
            pixels = Image.fromarray(np.ascontiguousarray(pixels))
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
        return np.asarray(pixels.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0))
    top, left = (height - side) // 2, (width - side) // 2
    square = np.asarray(pixels)[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    # Enlarging adds no detail to keep, where bicubic only adds overshoot: bilinear, Keras's and
    # torchvision's default, by OpenCV (about 3x Pillow's speed on small photos).
    return cv2.resize(np.ascontiguousarray(square), (size, size), interpolation=cv2.INTER_LINEAR)

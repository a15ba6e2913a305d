"""Small display copies of dataset images for galleries (aspect kept, EXIF applied, RGB)."""

from __future__ import annotations

import contextlib
import os

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from core.data.imaging import MAX_PIXELS, ImageError
from core.data.imaging import _to_rgb as to_rgb  # the training path's careful conversions (alpha, 16-bit, CMYK)


def thumbnail(path: str | os.PathLike, size: int = 160) -> np.ndarray:
    """An RGB uint8 array fitting in `size` x `size`, aspect kept.

    Raises:
        ImageError: the file cannot be decoded (the message says why).
    """
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"image too large to preview ({image.width}x{image.height})")
            if image.format == "JPEG" and image.mode in ("RGB", "L"):
                image.draft(image.mode, (size, size))
            image.load()
            with contextlib.suppress(Exception):
                ImageOps.exif_transpose(image, in_place=True)  # no copy of a photo that needs no turn
            image = to_rgb(image)
            image.thumbnail((size, size))
            return np.asarray(image, dtype=np.uint8)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except Exception as e:
        raise ImageError(f"cannot preview ({type(e).__name__}: {e})") from None


def placeholder(size: int = 160, text: str = "unreadable") -> np.ndarray:
    """A gray square shown in place of an image that cannot be read."""
    image = Image.new("RGB", (size, size), (232, 232, 232))
    ImageDraw.Draw(image).text((8, size // 2 - 6), text, fill=(110, 110, 110))
    return np.asarray(image)

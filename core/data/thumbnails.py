"""Small display copies of dataset images for galleries (aspect kept, EXIF applied, RGB), and a dataset's example
photo for the snippets that name one."""

from __future__ import annotations

import contextlib
import os

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from core.data.imaging import MAX_PIXELS, ImageError, is_image_name
from core.data.imaging import _to_rgb as to_rgb  # the training path's careful conversions (alpha, 16-bit, CMYK)


def example_photo(dataset_root: str | os.PathLike) -> str | None:
    """One photo of the dataset (the first image of its first class folder, in name order; under train/ for a
    dataset with its own split), for examples that name a file: None when none is found. Looks at two folders, not
    the whole dataset."""
    root = os.path.abspath(dataset_root)
    for base in (os.path.join(root, "train"), root):
        try:
            folders = sorted(e.path for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
        except OSError:
            continue
        for folder in folders:
            if os.path.basename(folder).lower() in ("unlabelled", "unlabeled", "val", "test"):
                continue
            try:
                photos = sorted(e.path for e in os.scandir(folder) if e.is_file() and is_image_name(e.name))
            except OSError:
                continue
            if photos:
                return photos[0]
    return None


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

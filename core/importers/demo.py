"""An offline demo set: flower-like drawings made on this machine, deterministic for a seed.

Five made-up flowers told apart by petal count (3, 4, 5, 6, 8) and, mostly, by colour: about
one drawing in ten borrows another class's colour, so a model that learns colour alone makes a
few telling mistakes, and one that also learns shape does better. Every image is a drawing; the
dataset's flora.json says so (`"synthetic": true`) for the app to show.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from core.importers.common import (
    ImportCancelled,
    ImportResult,
    finish,
    report,
    staging_folder,
    validate_dataset_name,
    write_meta,
)
from core.progress import StageCallback

# class name -> (petal count, petal hue in [0, 1), saturation)
DEMO_CLASSES: dict[str, tuple[int, float, float]] = {
    "three-petal": (3, 0.99, 0.80),  # red
    "four-petal": (4, 0.14, 0.85),  # yellow
    "five-petal": (5, 0.88, 0.55),  # pink
    "six-petal": (6, 0.72, 0.60),  # violet
    "eight-petal": (8, 0.56, 0.75),  # sky blue
}
BORROWED_COLOUR_SHARE = 0.1
DESCRIPTION = (
    "Synthetic: drawings made by Flora on this machine, not photos. Five made-up flowers with 3, 4, 5, 6 "
    "and 8 petals; colour usually gives the class away, but about one drawing in ten borrows another "
    "class's colour, so only a model that also learns the petal count gets those right. For trying the "
    "app without a network; its accuracy says nothing about real flower photos."
)


def make_demo_dataset(
    data_root: str | os.PathLike,
    name: str = "demo",
    seed: int = 0,
    per_class: int = 60,
    size_range: tuple[int, int] = (96, 128),
    progress: StageCallback | None = None,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> ImportResult:
    """Draw the demo set into `data_root/name`: 5 classes x `per_class` JPEGs of 96-128 px.

    Raises:
        ImportRejected: the name is invalid or taken (and not `overwrite`).
        ValueError: `per_class` or `size_range` out of range.
    """
    if not 1 <= per_class <= 10_000:
        raise ValueError(f"per_class must be between 1 and 10000. Received: per_class={per_class}")
    low, high = size_range
    if not 32 <= low <= high <= 1024:
        raise ValueError(f"size_range must satisfy 32 <= low <= high <= 1024. Received: size_range={size_range}")
    name = validate_dataset_name(name, data_root, overwrite)
    rng = np.random.default_rng(seed)
    total = per_class * len(DEMO_CLASSES)
    hues = [spec[1:] for spec in DEMO_CLASSES.values()]
    with staging_folder(data_root, name, overwrite) as staging:
        done = 0
        for class_name, (petals, hue, saturation) in DEMO_CLASSES.items():
            folder = staging / class_name
            folder.mkdir()
            for i in range(per_class):
                if should_stop and should_stop():
                    raise ImportCancelled("drawing stopped on request")
                colour = (hue, saturation)
                if rng.random() < BORROWED_COLOUR_SHARE:
                    others = [h for h in hues if h != colour]
                    colour = others[int(rng.integers(len(others)))]
                side = int(rng.integers(low, high + 1))
                image = draw_flower(rng, side, petals, *colour)
                Image.fromarray(image).save(folder / f"{class_name}_{i:03d}.jpg", quality=90)
                done += 1
                report(progress, "drawing", done, total)
        write_meta(
            staging,
            {
                "name": name,
                "title": "Demo flowers (synthetic)",
                "source": "demo",
                "synthetic": True,
                "description": DESCRIPTION,
                "seed": seed,
            },
        )
        notes = ["synthetic drawings, not photos: made offline for trying the app"]
        return finish(staging, name, data_root, "demo", [], notes)


def draw_flower(rng: np.random.Generator, side: int, petals: int, hue: float, saturation: float) -> np.ndarray:
    """One (side, side, 3) uint8 drawing: a flower with `petals` petals on a leafy background."""
    scale = 2  # draw at twice the size and average down: smooth edges without a drawing library
    n = side * scale
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    image = _background(rng, n, y, x)

    # python floats, not numpy float64 scalars, keep the float32 arrays float32 (numpy 2 promotion rules)
    cx, cy = (float(v) for v in rng.uniform(0.35, 0.65, size=2))
    radius = float(rng.uniform(0.26, 0.4))
    # a stem first, so the flower covers its top
    lean, thickness = float(rng.uniform(-0.3, 0.3)), 0.012 + 0.004 * float(rng.random())
    stem = (np.abs(x - cx - (y - cy) * lean) < thickness) & (y > cy)
    image[stem] = np.array([40, 110, 40], np.float32) * float(rng.uniform(0.8, 1.1))

    petal_rgb = _rgb(hue + rng.normal(0, 0.015), saturation * rng.uniform(0.85, 1.1), rng.uniform(0.8, 0.98))
    start = float(rng.uniform(0, 2 * np.pi))
    length = radius * float(rng.uniform(0.9, 1.05))
    width = length * float(rng.uniform(0.26, 0.34)) * (6 / max(petals, 4)) ** 0.5
    # Each petal and the centre is drawn only inside its bounding box: outside it their alpha is 0 and the
    # picture is left as it was (the same pixels as drawing on the whole canvas, a third of the work).
    petal_alpha = np.zeros_like(x)
    petal_shade = np.ones_like(x)
    for k in range(petals):
        angle = start + 2 * np.pi * k / petals + float(rng.normal(0, 0.05))
        ca, sa = float(np.cos(angle)), float(np.sin(angle))
        half = length / 2
        px, py = cx + half * ca, cy + half * sa  # the petal's middle
        box = _box(n, px, py, float(np.hypot(half * ca, width * sa)), float(np.hypot(half * sa, width * ca)))
        dx, dy = x[box] - cx, y[box] - cy
        u = dx * ca + dy * sa - length / 2  # along the petal, from its middle
        v = -dx * sa + dy * ca
        alpha = np.clip((1.0 - (u / (length / 2)) ** 2 - (v / width) ** 2) * 6, 0, 1)
        shade = 0.75 + 0.25 * np.clip((u + length / 2) / length, 0, 1)  # darker near the centre
        stronger = alpha > petal_alpha[box]
        petal_shade[box][stronger] = shade[stronger]
        np.maximum(petal_alpha[box], alpha, out=petal_alpha[box])
    box = _box(n, cx, cy, length * 1.01, length * 1.01)  # every petal lies within its length of the centre
    alpha = petal_alpha[box][..., None]
    image[box] = image[box] * (1 - alpha) + petal_rgb * petal_shade[box][..., None] * alpha

    centre_radius = radius * float(rng.uniform(0.2, 0.28))
    box = _box(n, cx, cy, centre_radius, centre_radius)
    centre = np.sqrt((x[box] - cx) ** 2 + (y[box] - cy) ** 2) / centre_radius
    alpha = np.clip((1.0 - centre) * 8, 0, 1)[..., None]
    centre_rgb = _rgb(rng.uniform(0.08, 0.13), 0.9, rng.uniform(0.45, 0.8))
    image[box] = image[box] * (1 - alpha) + centre_rgb * alpha

    image += rng.standard_normal(size=image.shape, dtype=np.float32) * 6
    # the mean of each 2 x 2 block, added in the order numpy's mean adds them (the same values, 8x quicker)
    image = (image[0::2, 0::2] + image[0::2, 1::2] + image[1::2, 0::2] + image[1::2, 1::2]) / np.float32(4)
    return np.clip(image, 0, 255).astype(np.uint8)


def _box(n: int, cx: float, cy: float, half_width: float, half_height: float) -> tuple[slice, slice]:
    """The rows and columns of an n x n canvas (coordinates in [0, 1)) within the given extents of (cx, cy), a
    pixel to spare on each side."""
    columns = slice(max(0, int((cx - half_width) * n) - 1), max(0, min(n, int((cx + half_width) * n) + 2)))
    rows = slice(max(0, int((cy - half_height) * n) - 1), max(0, min(n, int((cy + half_height) * n) + 2)))
    return rows, columns


def _background(rng: np.random.Generator, n: int, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    top = _rgb(rng.uniform(0.22, 0.38), rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.6))
    bottom = _rgb(rng.uniform(0.2, 0.35), rng.uniform(0.4, 0.8), rng.uniform(0.15, 0.35))
    t = y[..., None]
    image = top * (1 - t) + bottom * t
    # a few soft blobs: leaves out of focus
    for _ in range(int(rng.integers(2, 6))):
        bx, by, r = (float(v) for v in rng.uniform((0, 0, 0.08), (1, 1, 0.25)))
        blob = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * r * r))[..., None]
        image += blob * float(rng.uniform(-35, 35))
    return image.astype(np.float32)


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, float(np.clip(saturation, 0, 1)), float(np.clip(value, 0, 1)))
    return np.array([r, g, b], np.float32) * 255

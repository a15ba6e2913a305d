"""Datasets with a known answer for the data-issues checks: real flower photos with 8 non-flowers planted among
them (screenshots, flat colours, checkerboards, noise, a spreadsheet), drawn with Pillow and numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PLANTED_PREFIX = "zz_planted_"


def non_flowers(size: int = 128, seed: int = 0) -> dict[str, Image.Image]:
    """Eight pictures that are not flowers, by name."""
    rng = np.random.default_rng(seed)
    out = {}
    light = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(light)
    for y in range(6, size - 8, 11):
        draw.text((4, y), "".join(rng.choice(list("abcdefghij klmnop")) for _ in range(22)), fill=(20, 20, 20))
    out["screenshot_text"] = light
    dark = Image.new("RGB", (size, size), (30, 32, 40))
    draw = ImageDraw.Draw(dark)
    draw.rectangle([0, 0, size, 14], fill=(60, 90, 200))
    for y in range(20, size - 8, 10):
        draw.text((6, y), "def f(x): return x * 2 + 1", fill=(200, 220, 200))
    out["screenshot_code"] = dark
    out["flat_blue"] = Image.new("RGB", (size, size), (30, 80, 230))
    out["flat_gray"] = Image.new("RGB", (size, size), (128, 128, 128))
    squares = (np.indices((size, size)) // 16).sum(axis=0) % 2
    out["checker_bw"] = Image.fromarray((squares * 255).astype(np.uint8)).convert("RGB")
    small = (np.indices((size, size)) // 8).sum(axis=0) % 2
    out["checker_colour"] = Image.fromarray(
        np.where(small[..., None] == 1, [255, 0, 200], [0, 200, 255]).astype(np.uint8)
    )
    out["noise"] = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    sheet = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for x in range(0, size, 20):
        draw.line([(x, 0), (x, size)], fill=(180, 180, 180))
    for y in range(0, size, 12):
        draw.line([(0, y), (size, y)], fill=(180, 180, 180))
    draw.rectangle([0, 0, size, 11], fill=(30, 120, 60))
    out["spreadsheet"] = sheet
    return out


def flowers_with_non_flowers(source: Path, target: Path, per_class: int) -> list[str]:
    """`per_class` photos of each class of `source` (symlinks) and the 8 non-flowers dealt over the classes.

    Returns the planted files' paths, relative to `target`.
    """
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    for name in classes:
        (target / name).mkdir(parents=True, exist_ok=True)
        for photo in sorted((source / name).iterdir())[:per_class]:
            (target / name / photo.name).symlink_to(photo)
    planted = []
    for i, (name, image) in enumerate(non_flowers().items()):
        relative = f"{classes[i % len(classes)]}/{PLANTED_PREFIX}{name}.png"
        image.save(target / relative)
        planted.append(relative)
    return planted

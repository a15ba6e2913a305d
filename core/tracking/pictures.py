"""The confusion matrix and the training curves as PNG images, drawn with Pillow (no plotting library)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (255, 255, 255)
INK = (31, 35, 40)
LINES = [(46, 125, 50), (25, 118, 210), (211, 47, 47), (245, 124, 0)]


def confusion_png(matrix: np.ndarray, classes: list[str]) -> bytes:
    """Rows: true class, columns: predicted; each cell shaded by its share of the row, its count written in it."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(matrix)
    cell = int(max(6, min(48, 720 // max(n, 1))))
    margin = 8 if n > 30 else min(140, 8 + 7 * max((len(c) for c in classes), default=1))
    size = margin + n * cell + 8
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    for i in range(n):
        if margin > 8:
            draw.text((4, margin + i * cell + cell // 2 - 5), classes[i][:20], fill=INK)
        for j in range(n):
            shade = int(255 - 200 * shares[i, j])
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1)
            draw.rectangle(box, fill=(shade, shade, 255) if i != j else (shade, 255, shade))
            if cell >= 24 and matrix[i, j]:
                draw.text((box[0] + 3, box[1] + cell // 2 - 5), str(matrix[i, j]), fill=INK)
    return _png(image)


def curves_png(series: dict[str, list[tuple[int, float]]], title: str = "") -> bytes:
    """Lines of (epoch, value) per name on one chart, each scaled to the chart's range."""
    width, height, pad = 640, 360, 40
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    points = [p for values in series.values() for p in values if np.isfinite(p[1])]
    draw.text((pad, 8), title, fill=INK)
    draw.rectangle((pad, pad, width - pad, height - pad), outline=INK)
    if not points:
        return _png(image)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            pad + (x - x0) / (x1 - x0) * (width - 2 * pad),
            height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad),
        )

    for k, (name, values) in enumerate(series.items()):
        color = LINES[k % len(LINES)]
        line = [at(x, y) for x, y in values if np.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=color, width=2)
        for x, y in line:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)
        draw.text((width - pad - 150, pad + 6 + 14 * k), name, fill=color)
    draw.text((pad, height - pad + 6), f"epoch {x0}", fill=INK)
    draw.text((width - pad - 60, height - pad + 6), f"epoch {x1}", fill=INK)
    draw.text((4, pad), f"{y1:.3g}", fill=INK)
    draw.text((4, height - pad - 10), f"{y0:.3g}", fill=INK)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

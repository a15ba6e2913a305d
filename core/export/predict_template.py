"""Classify photos with a Flora export, without Flora: onnxruntime (or LiteRT) and Pillow and NumPy.

    python predict.py photo.jpg another.png [--top-k 3] [--json]

It reads `preprocessing.json` beside it (made with the export) and prepares each photo exactly as Flora
does (`python -m core predict`): decode to RGB (EXIF orientation applied, transparency on white, 16-bit
scaled), the shorter side resized to `cache_size` around the centre square (bicubic and antialiased when
shrinking, bilinear when enlarging), the centre `image_size` square cropped, as float32 0-255. The model
does the rest ('caffe' preprocessing is inside it). Probabilities are softmax(logits / temperature), the
run's calibrated ones; they match Flora's to about 1e-5. Where the run saved a threshold per class
(`class_thresholds` in preprocessing.json), an answer under its class's threshold is held back, as Flora does.

A multi-label run's export (`"task": "multilabel"` in preprocessing.json) gives each label's sigmoid(logit) instead,
and each photo's labels: every label at or above its threshold (`label_thresholds`, tuned on the run's validation
photos), "none of these" when none is, as `python -m core predict` and Flora's model server do.

Flora's test suite checks this file against Flora's own decoding (core.data.imaging) pixel for pixel.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
REDUCE_FIRST_PIXELS = 24_000_000
HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def load(path: str | Path, image_size: int, cache_size: int) -> np.ndarray:
    """A photo as the model takes it: (image_size, image_size, 3) float32 RGB in 0-255."""
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        square = _decode(image, cache_size)
    top = (square.shape[0] - image_size) // 2
    left = (square.shape[1] - image_size) // 2
    return square[top : top + image_size, left : left + image_size].astype(np.float32)


def _decode(image: Image.Image, size: int) -> np.ndarray:
    width, height = image.size
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        image.draft(image.mode, (size, size))  # libjpeg's 1/2, 1/4, 1/8 scales, as Flora decodes
    image.load()
    if width * height > REDUCE_FIRST_PIXELS:
        factor = max(1, min(image.size) // (2 * size))
        if factor >= 2:
            exif = image.getexif()
            try:
                reduced = image.reduce(factor)
            except ValueError:
                target = (max(1, image.size[0] // factor), max(1, image.size[1] // factor))
                reduced = image.resize(target, Image.Resampling.NEAREST)
            reduced.info.update(image.info)
            if exif:
                reduced.getexif().update(exif)
            image = reduced
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)
    return _resize_center_square(_to_rgb(image), size)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in HIGH_DEPTH:
        array = np.asarray(image).astype(np.float64)
        if array.ndim == 3:
            array = array[..., 0]
        peak = float(np.nanmax(array)) if array.size else 0.0
        scale = 255.0 if peak <= 1.0 else 1.0 if peak <= 255.0 else 255.0 / 65535.0
        gray = np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _resize_center_square(image: Image.Image, size: int) -> np.ndarray:
    width, height = image.size
    side = min(width, height)
    if side > size:
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
        return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0))
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(np.asarray(image)[top : top + side, left : left + side])
    if side == size:
        return square
    try:  # Flora enlarges with OpenCV's bilinear; without OpenCV, the same sampling in NumPy (within a level)
        import cv2

        return cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        return _bilinear(square, size)


def _bilinear(square: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR (half-pixel centres, edges clamped) in floating point."""
    side = square.shape[0]
    coords = np.clip((np.arange(size) + 0.5) * side / size - 0.5, 0, side - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, side - 1)
    weight = coords - low
    rows = square[low] * (1 - weight)[:, None, None] + square[high] * weight[:, None, None]
    out = rows[:, low] * (1 - weight)[None, :, None] + rows[:, high] * weight[None, :, None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # 1 / (1 + e^-z) without overflow


def labels_of(probabilities: np.ndarray, classes: list[str], thresholds: dict[str, float]) -> list[str]:
    """The labels at or above their thresholds, in the classes' order (a label without one: 0.5)."""
    return [name for name, p in zip(classes, probabilities, strict=True) if p >= thresholds.get(name, 0.5)]


def model_runner(folder: Path, model_file: str):
    """A function (N, S, S, 3) float32 -> logits, for the export's model file (ONNX or TFLite)."""
    path = folder / model_file
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return lambda x: session.run(["logits"], {input_name: x})[0]
    from ai_edge_litert import interpreter as litert

    runner = litert.Interpreter(model_path=str(path)).get_signature_runner()
    input_name = next(iter(runner.get_input_details()))
    return lambda x: np.concatenate([runner(**{input_name: x[i : i + 1]})["logits"] for i in range(len(x))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify photos with this Flora export.")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object per photo, with every probability")
    args = parser.parse_args(argv)
    recipe = json.loads((HERE / "preprocessing.json").read_text())
    run = model_runner(HERE, recipe["model_file"])
    classes = recipe["classes"]
    for photo in args.photos:
        try:
            pixels = load(photo, recipe["image_size"], recipe["cache_size"])[None]
        except (OSError, ValueError) as e:
            print(f"{photo}: cannot be read ({e})", file=sys.stderr)
            continue
        if recipe.get("task") == "multilabel":
            _print_labels(photo, sigmoid(run(pixels))[0], classes, recipe.get("label_thresholds", {}), args.json)
            continue
        probabilities = softmax(run(pixels), recipe["temperature"])[0]
        order = np.argsort(-probabilities)[: args.top_k]
        label, sure = classes[order[0]], float(probabilities[order[0]])
        needed = recipe.get("class_thresholds", {}).get(label)
        held_back = needed is not None and sure < needed
        if args.json:
            answer = {"path": str(photo), "probabilities": probabilities.tolist(), "label": label}
            if recipe.get("class_thresholds"):
                answer["abstained"] = held_back
            print(json.dumps(answer))
        else:
            line = ", ".join(f"{classes[i]} {probabilities[i]:.3f}" for i in order)
            if held_back:
                line += f"  [held back: {sure:.1%} for {label} is under its saved threshold of {needed:.2f}]"
            print(photo, line)
    return 0


def _print_labels(photo, probabilities: np.ndarray, classes: list[str], thresholds: dict, as_json: bool) -> None:
    """A multi-label answer: the labels at or above their thresholds ([]: none of these) and every label's score."""
    labels = labels_of(probabilities, classes, thresholds)
    found = sorted(
        (
            {"label": n, "probability": float(probabilities[classes.index(n)]), "threshold": thresholds.get(n, 0.5)}
            for n in labels
        ),
        key=lambda row: -row["probability"],
    )
    if as_json:
        scores = {name: float(p) for name, p in zip(classes, probabilities, strict=True)}
        answer = {"path": str(photo), "labels": labels, "none_of_these": not labels, "found": found}
        print(json.dumps({**answer, "scores": scores, "probabilities": probabilities.tolist()}))
        return
    words = ", ".join(f"{f['label']} {f['probability']:.3f} (threshold {f['threshold']:.3f})" for f in found)
    print(photo, words or "none of these")


if __name__ == "__main__":
    sys.exit(main())

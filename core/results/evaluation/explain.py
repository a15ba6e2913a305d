"""Where the model looked: Grad-CAM heatmaps on the backbone's last feature map, for a class or a contrast.

Grad-CAM (Selvaraju et al. 2017) weighs each channel k of the feature map A (ResNet-50's last block,
layer_names.FEATURE_MAP) by
the mean gradient of a score with respect to it, alpha_k = mean_ij d score / d A_ijk, and sums:
map_ij = sum_k alpha_k A_ijk. The score is a *logit* (before the softmax: a probability's gradient
vanishes exactly when the model is sure), either one class's (the map is kept where it is positive:
evidence for that class) or the difference of two (the *contrast* map, signed: where the photo says
"A rather than B"; swapping A and B flips its sign). With Flora's global-average-pooled head this
equals HiResCAM.

A multi-label model (a sigmoid per label) is explained the same way: `Target(j)` is label j's logit, the input of
its own sigmoid, so the map shows what raised that label's score whatever the other labels do (labels do not
compete, so a contrast of two labels says nothing the model decides; `label_probability` turns the explained logit
into the label's probability).

The classifier is split in two: the backbone to the feature map (one forward pass), and the head
from it (pool -> head -> logits). Only the small head is differentiated. `keras.ops` has no
gradient, so one small dispatch does it per backend: TensorFlow's GradientTape, jax.grad, torch
autograd. Maps are cached per (run, image, target) under the run's heatmaps/ folder.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.imaging import load_for_model
from core.device import without_cuda_noise
from core.errors import InvalidInput, NotFound
from core.fileio import atomic_path
from core.inference import ModelMissing
from core.network import backbones
from core.network import layer_names as names
from core.runs.files import run_files
from core.runs.record import Run

_TINY = 1e-12
COARSE_GRID = 4  # a map with fewer cells a side is drawn in blocks, and an earlier block's map is offered


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """What to explain: one class (`against` None) or `cls` rather than `against` (a contrast)."""

    cls: int
    against: int | None = None

    @property
    def contrast(self) -> bool:
        return self.against is not None

    def weights(self, num_classes: int) -> np.ndarray:
        """The score as a weighting of the logits: e_cls, or e_cls - e_against."""
        w = np.zeros(num_classes, dtype=np.float32)
        w[self.cls] += 1.0
        if self.against is not None:
            w[self.against] -= 1.0
        return w

    @property
    def key(self) -> str:
        return f"{self.cls}" if self.against is None else f"{self.cls}-vs-{self.against}"


def label_probability(logit: float) -> float:
    """A multi-label model's probability for a label from its explained logit (`Heatmap.score`): its sigmoid."""
    return float(0.5 * (1.0 + np.tanh(0.5 * float(logit))))  # the sigmoid, without overflow for a large logit


# ----------------------------------------------------------------------------- the gradient dispatch


def logit_gradients(head, feature_map: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of each image's score sum_c w_c z_c (z = head(A), the logits) with respect to A.

    Args:
        head: a Keras model, feature map -> logits.
        feature_map: (N, h, w, k).
        weights: (N, C): the score of each image as a weighting of its logits.

    Returns:
        (gradients like `feature_map`, scores (N,)), as float64 numpy arrays.
    """
    import keras

    backend = keras.backend.backend()
    dtype = keras.backend.standardize_dtype(head.inputs[0].dtype) if head.inputs else "float32"
    a = np.asarray(feature_map, dtype=dtype)
    w = np.asarray(weights, dtype=dtype)
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(a)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            scores = tf.reduce_sum(head(tensor, training=False) * w, axis=1)
        grads = tape.gradient(scores, tensor)  # images are independent: d(sum)/dA_n = d score_n / dA_n
        return np.asarray(grads, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(x):
            scores = jnp.sum(head(x, training=False) * w, axis=1)
            return jnp.sum(scores), scores

        grads, scores = jax.grad(total, has_aux=True)(jnp.asarray(a))
        return np.asarray(grads, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if backend == "torch":
        import torch

        tensor = torch.as_tensor(a).to(keras.backend.get_device() or "cpu").requires_grad_(True)
        scores = (head(tensor, training=False) * torch.as_tensor(w, device=tensor.device)).sum(dim=1)
        scores.sum().backward()
        return tensor.grad.detach().cpu().numpy().astype(np.float64), scores.detach().cpu().numpy().astype(np.float64)
    raise NotImplementedError(f"Grad-CAM has no gradient for the {backend!r} backend (tensorflow, jax, torch)")


def grad_cam(feature_map: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Signed Grad-CAM maps (N, h, w): channels weighted by their spatially averaged gradient, summed."""
    a = np.asarray(feature_map, dtype=np.float64)
    alpha = np.asarray(gradients, dtype=np.float64).mean(axis=(1, 2))  # (N, k)
    return np.einsum("nhwk,nk->nhw", a, alpha)


def normalise(cam: np.ndarray, signed: bool) -> np.ndarray:
    """For display: a class map kept where positive and scaled over its own range to [0, 1]; a contrast map
    scaled to [-1, 1] (its sign is its meaning, so 0 stays 0).

    A class map's own range: on a coarse grid every cell is often positive (each one argued a little for the
    class), and scaled by its peak alone the weakest cell would still be painted nearly as strongly as the
    strongest: a washed-out photo. From its lowest cell to its highest, the cell that counted least is clear
    and the one that counted most is opaque. A map with nothing in it (all zero, no positive part, or flat)
    stays zero: never a division by zero.
    """
    cam = np.asarray(cam, dtype=np.float64)
    cam = np.where(np.isfinite(cam), cam, 0.0)
    if signed:
        peak = float(np.abs(cam).max()) if cam.size else 0.0
        return np.zeros_like(cam, dtype=np.float32) if peak <= _TINY else (cam / peak).astype(np.float32)
    shown = np.maximum(cam, 0.0)
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 0.0)
    if high - low <= _TINY * max(1.0, high):
        return np.zeros_like(shown, dtype=np.float32)
    return ((shown - low) / (high - low)).astype(np.float32)


def upsample(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A low-resolution map (h, w) stretched to (size, size) as the photo it overlays.

    Bilinear from COARSE_GRID cells a side up; below it, nearest-neighbour blocks: a 2x2 map blurred over
    the photo fades into one even tint, while four blocks show which quarter counted.
    """
    from PIL import Image

    heatmap = np.asarray(heatmap, dtype=np.float32)
    smooth = min(heatmap.shape[:2]) >= COARSE_GRID
    method = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(heatmap, mode="F").resize((size, size), method), dtype=np.float32)


def grid_note(grid: tuple[int, int], image_size: int, last: bool = True) -> str:
    """One line on the map's resolution at the run's image size, and what such a grid can and cannot tell."""
    h, w = grid
    cell = image_size / max(1, w)
    where = "the backbone's last block" if last else "the block before the last (finer)"
    text = f"Grad-CAM on {where}: a {h}×{w} grid at {image_size} px, each cell {cell:.0f}×{cell:.0f} px of the photo"
    if h * w == 1:
        return f"{text}: one cell can say nothing about where; train at 64 px or more to see a map."
    if min(h, w) < COARSE_GRID:
        return f"{text}: it can tell which part of the photo counted most (a side, a corner), not which detail."
    return f"{text}: coarse regions, not edges or single petals (the map is stretched over the photo)."


# ----------------------------------------------------------------------------- overlays

_HEAT = np.array(  # dark red -> red -> orange -> yellow -> white, for "how much this area counted"
    [[0.0, 0.0, 0.0], [0.55, 0.0, 0.0], [0.9, 0.15, 0.05], [1.0, 0.6, 0.0], [1.0, 0.95, 0.3], [1.0, 1.0, 0.9]]
)
_POSITIVE = np.array([215, 48, 39], dtype=np.float64)  # towards the first class
_NEGATIVE = np.array([49, 54, 149], dtype=np.float64)  # towards the second


def colorize(values: np.ndarray, signed: bool) -> np.ndarray:
    """RGB colours (h, w, 3) uint8 for a normalised map."""
    v = np.asarray(values, dtype=np.float64)
    if signed:
        t = np.clip(np.abs(v), 0, 1)[..., None]
        colour = np.where(v[..., None] >= 0, _POSITIVE, _NEGATIVE)
        return (255 * (1 - t) + colour * t).astype(np.uint8)
    t = np.clip(v, 0, 1) * (len(_HEAT) - 1)
    low = np.floor(t).astype(int).clip(0, len(_HEAT) - 2)
    frac = (t - low)[..., None]
    return (255 * (_HEAT[low] * (1 - frac) + _HEAT[low + 1] * frac)).astype(np.uint8)


def overlay(photo: np.ndarray, heatmap: np.ndarray, signed: bool = False, alpha: float = 0.6) -> np.ndarray:
    """The photo with the heatmap painted over it.

    A class map tints the whole photo, dark where the area counted least and bright where it counted
    most, so it reads on any photo (a warm tint alone vanished on yellow flowers); a map with nothing
    in it leaves the photo as it is. A contrast map is opaque where it is strong and clear at 0 (its
    sign is its colour).
    """
    photo = np.asarray(photo, dtype=np.float64)
    size = photo.shape[0]
    values = upsample(heatmap, size) if heatmap.shape[0] != size else np.asarray(heatmap, dtype=np.float32)
    if not signed and not np.any(values > 0):
        return np.clip(photo, 0, 255).astype(np.uint8)
    colour = colorize(values, signed).astype(np.float64)
    # a contrast: as strong as the map; a class map: the same tint everywhere, its colour says how much
    strength = (alpha * np.clip(np.abs(values), 0, 1))[..., None] if signed else np.full((*values.shape, 1), alpha)
    return np.clip(photo * (1 - strength) + colour * strength, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- a run's model, split


@dataclass
class Heatmap:
    """One explained target on one image."""

    target: Target
    cam: np.ndarray  # (h, w) signed Grad-CAM at the feature map's resolution
    score: float  # the explained logit (or logit difference)

    @property
    def signed(self) -> bool:
        return self.target.contrast

    @property
    def values(self) -> np.ndarray:
        """The display map: [0, 1] for a class, [-1, 1] for a contrast."""
        return normalise(self.cam, self.signed)

    @property
    def empty(self) -> bool:
        """True when no area of the photo raised the score (a class map with no positive cell)."""
        return not np.any(self.values)


def split_classifier(classifier, layer: str | None = None):
    """(image -> a feature map, that map -> logits), sharing the classifier's weights.

    `layer` is the backbone's last feature map (None) or an earlier stage's output (core.network.backbones'
    `stage_outputs`): then the second model runs the rest of the backbone too, so the gradient reaches it.
    """
    import keras

    from core.network.graph import head_logits_model  # heavy: keras
    from core.network.model import head_of  # heavy: keras

    entry = backbones.find_in(classifier)
    backbone = classifier.get_layer(entry.name)
    if backbone.layers[-1].name != entry.feature_map:
        raise ValueError(
            f"the {entry.title}'s output is {backbone.layers[-1].name!r}, not its feature map {entry.feature_map!r}"
        )
    layer = layer or entry.feature_map
    if layer == entry.feature_map:
        to_map, rest = backbone, None
    else:
        if layer not in entry.stage_outputs:
            raise ValueError(f"{layer!r} is not a stage output of the {entry.title}: {entry.stage_outputs}")
        middle = backbone.get_layer(layer).output
        to_map = keras.Model(backbone.input, middle, name=f"{entry.name}_to_{layer}")
        rest = keras.Model(middle, backbone.output, name=f"{entry.name}_from_{layer}")
    size = classifier.input_shape[1]
    image = keras.Input((size, size, 3), name=names.IMAGE)
    feature_map = to_map(classifier.get_layer(names.PREPROCESS)(image))
    features = keras.Model(image, feature_map, name="to_feature_map")
    grid = keras.Input(tuple(feature_map.shape[1:]), name="feature_map")
    last = grid if rest is None else rest(grid)
    logits = head_logits_model(head_of(classifier))(classifier.get_layer(names.AVG_POOL)(last))
    return features, keras.Model(grid, logits, name="from_feature_map")


class Explainer:
    """A run's model split for Grad-CAM, loaded once; maps cached in the run folder.

    `layers` are the maps it can draw: the backbone's last feature map, and the stage before it when the
    backbone names one (a finer grid, for runs trained at small sizes). `default_layer` is the last one
    unless its grid is under COARSE_GRID cells a side and the earlier one's is finer.
    """

    def __init__(self, run: Run):

        if not run.has_model:
            raise ModelMissing(run.run_id, run.state)

        with without_cuda_noise():
            from core.network.model import load_classifier  # heavy: keras

            classifier = load_classifier(run_files(run).model)
        self.run = run
        self.classes = run.classes  # a multi-label run's labels: Target(j) explains label j's logit
        self.multilabel = run.multilabel
        config = run.train_config
        self.image_size, self.cache_size = config.image_size, config.cache_size
        self.classifier = classifier
        entry = backbones.find_in(classifier)
        self.last_layer = entry.feature_map
        earlier = [name for name in entry.stage_outputs if name != entry.feature_map]
        self.layers = [entry.feature_map, *earlier[-1:]]
        self._splits: dict[str, tuple] = {}
        self.features, self.head = self._split(self.last_layer)
        self.cache_dir = run_files(run).heatmaps

    def _split(self, layer: str | None) -> tuple:
        layer = layer or self.last_layer
        if layer not in self._splits:
            self._splits[layer] = split_classifier(self.classifier, layer)
        return self._splits[layer]

    def grid(self, layer: str | None = None) -> tuple[int, int]:
        """The (rows, columns) of a layer's map at the run's image size."""
        shape = self._split(layer)[0].output_shape
        return int(shape[1]), int(shape[2])

    @property
    def default_layer(self) -> str:
        last = self.grid(self.last_layer)
        if min(last) < COARSE_GRID and len(self.layers) > 1 and min(self.grid(self.layers[1])) > min(last):
            return self.layers[1]
        return self.last_layer

    def grid_note(self, layer: str | None = None) -> str:
        layer = layer or self.last_layer
        return grid_note(self.grid(layer), self.image_size, last=layer == self.last_layer)

    def class_index(self, name: str) -> int:
        """Raises NotFound (a KeyError) naming the classes when `name` is not one."""
        if name not in self.classes:
            raise NotFound(f"unknown class {name!r}; the run's classes: {', '.join(self.classes)}")
        return self.classes.index(name)

    def load(self, source) -> np.ndarray:
        """The image as the model sees it (decoded, resized, centre-cropped). Raises ImageError."""

        if hasattr(source, "read") and not isinstance(source, str | os.PathLike):
            source = source.read()
        return load_for_model(source, self.image_size, self.cache_size)

    def logits(self, image: np.ndarray, layer: str | None = None) -> np.ndarray:
        """The image's logits through the split model (equal to the classifier's)."""
        import keras

        features, head = self._split(layer)
        return keras.ops.convert_to_numpy(head(self._feature_map(image, features), training=False))[0]

    @staticmethod
    def _feature_map(image: np.ndarray, features) -> np.ndarray:
        return np.asarray(features.predict_on_batch(image[None].astype("float32")), dtype=np.float32)

    def explain(self, image: np.ndarray, targets: list[Target], layer: str | None = None) -> list[Heatmap]:
        """Heatmaps of `targets` on one preprocessed image: one backbone pass, one head gradient per target.

        `layer`: which map (one of `layers`; None: the last). Cached per (image pixels, target, layer) in the
        run folder.
        """
        layer = layer or self.last_layer
        if layer not in self.layers:
            raise InvalidInput(f"layer must be one of {self.layers}. Received: layer={layer!r}")
        features, head = self._split(layer)
        key = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=10).hexdigest()
        if layer != self.last_layer:
            key = f"{key}-{layer}"
        found: dict[Target, Heatmap] = {}
        for target in targets:
            cached = self._cached(key, target)
            if cached is not None:
                found[target] = cached
        todo = [t for t in targets if t not in found]
        if todo:
            feature_map = self._feature_map(image, features)
            repeated = np.repeat(feature_map, len(todo), axis=0)
            weights = np.stack([t.weights(len(self.classes)) for t in todo])
            grads, scores = logit_gradients(head, repeated, weights)
            cams = grad_cam(repeated, grads)
            for target, cam, score in zip(todo, cams, scores, strict=True):
                found[target] = Heatmap(target, cam.astype(np.float32), float(score))
                self._store(key, found[target])
        return [found[t] for t in targets]

    def _file(self, key: str, target: Target) -> Path:
        return self.cache_dir / f"{key}-{target.key}.npz"

    def _cached(self, key: str, target: Target) -> Heatmap | None:
        path = self._file(key, target)
        try:
            with np.load(path, allow_pickle=False) as data:
                return Heatmap(target, data["cam"], float(data["score"]))
        except (OSError, KeyError, ValueError):
            return None

    def _store(self, key: str, heatmap: Heatmap) -> None:

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._file(key, heatmap.target)) as tmp, open(tmp, "wb") as f:
            np.savez(f, cam=heatmap.cam, score=np.float32(heatmap.score))

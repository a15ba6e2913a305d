"""Prediction with a finished run: load its model once, preprocess exactly as evaluation did.

A file that is not an image gets an error entry of its own; the others still get predictions. A multi-label run's
prediction also lists its `labels` (each label whose probability is at or above the label's threshold, tuned on
validation: core.results.probabilities.label_thresholds) and every label's `scores`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.data.imaging import ImageError, load_for_model
from core.device import describe
from core.errors import Unavailable
from core.network import layer_names
from core.results.probabilities import label_thresholds
from core.results.probabilities.calibration import rescale, stored_temperature
from core.runs.files import run_files
from core.runs.record import Run
from core.runtimes.choice import accelerated
from core.settings.config import TrainConfig

Source = str | os.PathLike | bytes | BinaryIO


class ModelMissing(Unavailable, FileNotFoundError):
    def __str__(self) -> str:
        return f"run {self.args[0]} has no saved model (state: {self.args[1]}); train it to completion first"


@dataclass
class Prediction:
    """Top-k labels for one image, or the reason it could not be read."""

    source: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0  # decode + forward for this image
    probabilities: np.ndarray | None = field(default=None, repr=False)  # every class's, in the run's class order
    prediction_set: list[str] | None = None  # its conformal set at set_level, most probable first (when asked)
    set_level: float | None = None
    labels: list[str] | None = None  # a multi-label run's: every label at or above its threshold ([]: none of these)
    scores: dict[str, float] | None = None  # a multi-label run's: every label's probability
    thresholds: dict[str, float] | None = field(default=None, repr=False)  # a multi-label run's, per label

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": self.source, "error": self.error}
        out = {
            "image": self.source,
            "top": [{"label": label, "probability": round(p, 6)} for label, p in self.top],
            "seconds": round(self.seconds, 4),
        }
        if self.prediction_set is not None:
            out["prediction_set"] = {"level": self.set_level, "classes": self.prediction_set}
        if self.labels is not None:  # as the server and `core predict --json` give a multi-label answer
            out["labels"] = self.labels
            out["none_of_these"] = not self.labels
            out["found"] = label_thresholds.found_rows(self.labels, self.scores or {}, self.thresholds or {})
            out["scores"] = {name: label_thresholds.figure(p) for name, p in (self.scores or {}).items()}
        return out


class Predictor:
    """A run's model, loaded once, with the run's classes and input size; `forward.decision` says which runtime
    runs it and why.

    Probabilities are calibrated with the run's temperature (core.results.probabilities.calibration, fitted on the
    validation split as the run ended) unless `calibrated=False`; a run without one gives raw ones. A multi-label
    run's are its sigmoids, each read against its label's threshold (`thresholds`).
    """

    def __init__(
        self,
        run: Run,
        calibrated: bool = True,
        runtime: str | None = None,
        cache_root: str | os.PathLike | None = None,
    ):
        """Load `run`'s model; its forward pass runs in `runtime` (core.runtimes.choice: default $FLORA_RUNTIME,
        else the fastest one measured here), whose converted graph is cached under `cache_root` (`<data>/.cache`).
        """
        if not run.has_model:
            raise ModelMissing(run.run_id, run.state)
        from core.network.graph import inference_model  # heavy: keras
        from core.network.model import load_classifier  # heavy: keras (only when a model is really needed)

        self.run = run
        self.classes = run.classes
        config: TrainConfig = run.train_config
        self.image_size = config.image_size
        self.cache_size = config.cache_size
        self.multilabel = run.multilabel
        # a multi-label run keeps no temperature (its thresholds were tuned on the raw sigmoids)
        self.temperature = stored_temperature(run.directory) if calibrated and not self.multilabel else None
        self.thresholds = label_thresholds.load(run.directory) if self.multilabel else {}
        started = time.perf_counter()
        self.model = load_classifier(run_files(run).model)
        graph = inference_model(self.model, outputs=(layer_names.PROBABILITIES,), share_backbone=True)
        self.forward = accelerated(graph, runtime=runtime, cache_root=cache_root, batch=1)
        self.load_seconds = time.perf_counter() - started
        self.device_label = describe().label
        # The first call compiles the predict function; do it now so the first photo is not slow.
        self._forward(np.zeros((1, self.image_size, self.image_size, 3), dtype=np.float32))

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        probabilities = self.forward.run(batch)[0]
        return rescale(probabilities, self.temperature) if self.temperature else probabilities

    def preprocess(self, source: Source) -> np.ndarray:
        """Decode one image the way evaluation did. Raises ImageError."""
        if hasattr(source, "read") and not isinstance(source, str | os.PathLike):
            source = source.read()
        return load_for_model(source, self.image_size, self.cache_size)

    def predict(self, sources: list[Source], top_k: int = 3, names: list[str] | None = None) -> list[Prediction]:
        """Top-k predictions for each source, in order; unreadable ones get an error entry."""
        top_k = max(1, min(int(top_k), len(self.classes)))
        names = names or [_name(source) for source in sources]
        results: list[Prediction] = []
        for source, name in zip(sources, names, strict=True):
            started = time.perf_counter()
            try:
                image = self.preprocess(source)
            except ImageError as e:
                results.append(Prediction(name, error=str(e)))
                continue
            probabilities = self._forward(image[None])[0]
            order = np.argsort(-probabilities)[:top_k]
            top = [(self.classes[i], float(probabilities[i])) for i in order]
            found = Prediction(name, top, seconds=time.perf_counter() - started, probabilities=probabilities)
            if self.multilabel:
                found.labels = label_thresholds.present(probabilities, self.classes, self.thresholds)[0]
                found.scores = {label: float(p) for label, p in zip(self.classes, probabilities, strict=True)}
                found.thresholds = self.thresholds
            results.append(found)
        return results

    def predict_batch(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities for already-preprocessed (N, size, size, 3) images."""
        out = [self._forward(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)


def _name(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return str(Path(source))
    return getattr(source, "name", "<upload>")

"""One run loaded for serving: decode inputs the way training did, run the model, shape the answer.

`ServedModel` holds the run's float32 inference graph (no augmentation), its classes, its
calibration temperature (when the run has one) and its out-of-distribution reference. Decoding
uses `core.data.imaging.load_for_model`, the very loader of the image cache and `core predict`, so a
photo sent to the server becomes the same tensor it would in training.

A multi-label run (`run.multilabel`) answers with its label list instead: every label whose sigmoid is at or above
the label's threshold (tuned on validation, core.results.probabilities.label_thresholds), "none of these" when none
is, and every label's score. It keeps no temperature, prediction sets, threshold for answering only when sure or
out-of-distribution reference yet, so none of those is applied to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data.imaging import ImageError, ImageHeader, load_for_model, pixels_for_model, read_header
from core.errors import InvalidInput, Unavailable
from core.network import layer_names as names
from core.results.probabilities import class_thresholds, conformal, label_thresholds, selective, tta
from core.results.probabilities.calibration import run_temperature
from core.results.probabilities.image_stats import image_statistics
from core.results.probabilities.reference import Reference, ReferenceUnavailable, ensure_reference
from core.runs.analysis import softmax
from core.runs.files import run_files
from core.runs.record import Run
from core.serving.answer import (
    MULTILABEL_NO_MAX_ERROR,
    MULTILABEL_NO_REFERENCE,
    MULTILABEL_NO_SETS,
    MULTILABEL_NOT_YET,
    Answer,
    label_answers,
)
from core.serving.graph_runner import GraphRunner
from core.serving.holding_back import hold_back
from core.serving.log import entropy

log = logging.getLogger("flora")
VIEWS_AVERAGE = "views_average"  # forward()'s extra output where the run uses test-time augmentation
IMAGE_STATS = (
    "image_statistics"  # forward()'s picture statistics (core.results.probabilities.image_stats), for "none of these"
)


@dataclass
class Decoded:
    """An input ready for the model, with what the log keeps about it."""

    pixels: np.ndarray  # (image_size, image_size, 3) uint8
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    name: str | None = None


def image_facts(data: bytes) -> tuple[str, int | None, int | None]:
    """(sha256, width, height) of an encoded image, reading only its header for the size."""
    sha = hashlib.sha256(data).hexdigest()
    width = height = None
    with contextlib.suppress(Exception):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    return sha, width, height


class ServedModel:
    """A run's model ready to answer: decode, forward, answer."""

    def __init__(
        self,
        run: Run,
        data_root: str | os.PathLike | None = None,
        with_reference: bool = True,
        reference_later: bool = False,
    ):
        """Load `run` to answer.

        Args:
            with_reference: score 'looks like no class it knows' with the run's out-of-distribution reference.
            reference_later: (the server) a run without a stored reference (trained before training fitted
                one) answers at once and gets its reference in the background; its answers carry the flag
                from then on. Otherwise it is fitted here, first.
        """
        from core.results.probabilities.reference import load_inference_model  # heavy: sklearn

        started = time.perf_counter()
        self.run = run
        self.run_id = run.run_id
        self.classes = run.classes
        self.multilabel = run.multilabel
        # a multi-label run's threshold per label (tuned on validation; a label without one: the sigmoid's middle)
        kept = label_thresholds.load(run.directory) if self.multilabel else {}
        self.thresholds = (
            {name: kept.get(name, label_thresholds.UNTUNED) for name in self.classes} if self.multilabel else {}
        )
        config = run.train_config
        self.image_size, self.cache_size = config.image_size, config.cache_size
        self.model = load_inference_model(run, share_backbone=True)
        self.runner = GraphRunner(self.model, self.image_size, data_root, run.run_id)
        self.temperature = run_temperature(run)
        self._stamp: tuple = ()
        self._looked = 0.0
        self._read_answer_settings()
        self.reference: Reference | None = None
        self.reference_note: str | None = None
        self.data_root = data_root
        if self.multilabel:  # it keeps no out-of-distribution reference yet
            self.reference_note = MULTILABEL_NO_REFERENCE
        elif with_reference:
            self.reference = Reference.load(run.directory)
            if self.reference is None and reference_later:
                self.reference_note = "fitting the out-of-distribution reference in the background (first use)"
                threading.Thread(target=self._fit_reference, name=f"reference-{run.run_id}", daemon=True).start()
            elif self.reference is None:
                self._fit_reference()
        self.load_seconds = time.perf_counter() - started

    def _answer_files(self) -> tuple:
        stamps = []
        files = run_files(self.run)
        for path in (files.tta, files.conformal, files.selective, files.class_thresholds):
            try:
                stamps.append(path.stat().st_mtime_ns)
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _read_answer_settings(self) -> None:
        """Test-time augmentation only where it helped on the run's validation split (core.results.probabilities.tta),
        and the run's prediction sets (None: no analysis arrays, or too few test photos), fitted on those
        probabilities."""
        self._stamp = self._answer_files()
        if self.multilabel:  # none of these is fitted for a multi-label run (its label thresholds decide)
            self.tta, self.views, self.sets, self.selective, self.class_thresholds = None, 1, None, None, {}
            return
        self.tta = tta.used_by(self.run.directory)
        self.views = len(self.tta.views) if self.tta is not None else 1
        self.sets = conformal.run_sets(self.run.directory)
        self.selective = selective.load(self.run.directory)  # fitted on first use (`check_max_error`)
        self.class_thresholds = class_thresholds.load(self.run.directory)

    def follow_run(self, every: float = 1.0) -> tuple:
        """Pick up what changed in the run since it was loaded (test-time augmentation measured, sets refitted),
        looking at most every `every` seconds; returns a stamp that changes when they do."""
        now = time.monotonic()
        if now - self._looked >= every:
            self._looked = now
            if self._answer_files() != self._stamp:
                self._read_answer_settings()
        return self._stamp

    def _fit_reference(self) -> None:
        try:
            self.reference = ensure_reference(self.run, self.data_root, self.runner.graph)
            self.reference_note = None
        except (ReferenceUnavailable, OSError, ValueError) as e:
            self.reference_note = str(e)
            log.warning("run %s: no out-of-distribution reference: %s", self.run_id, e)

    def warm(self, batch_sizes: list[int], background: bool = False) -> None:
        """Choose the runtime and prepare the forward pass for these batch sizes (core.serving.graph_runner);
        `background` (a switch): return at once, the graph answering op by op until it is ready."""
        self.runner.warm(batch_sizes, background)

    @property
    def fixed_shapes(self) -> bool:
        """Whether batches must keep the warmed sizes (Keras's compiled graph); the other runtimes take any."""
        return self.runner.fixed_shapes

    @property
    def batches_at_once(self) -> int:
        """How many batches the chosen runtime takes at once (the server's batch workers follow it)."""
        return self.runner.batches_at_once

    @property
    def runtime(self) -> str | None:
        """Which runtime answers and why, once chosen."""
        return self.runner.runtime

    @property
    def ood_method(self) -> str | None:
        return self.reference.detector.method if self.reference else None

    def decode(self, data: bytes, name: str | None = None, header: ImageHeader | None = None) -> Decoded:
        """An encoded image file -> model pixels. Raises ImageError with the reason.

        `header` (core.data.imaging.read_header, read by the caller to budget the decode) saves a second look.
        """
        if not data:
            raise ImageError("empty file: no image data")
        pixels = load_for_model(bytes(data), self.image_size, self.cache_size)
        if header is None:
            sha, width, height = image_facts(data)
        else:
            sha, width, height = hashlib.sha256(data).hexdigest(), header.width, header.height
        return Decoded(pixels, sha, width, height, name)

    def read_header(self, data: bytes) -> ImageHeader:
        """What decoding `data` for this model will cost, from its header. Raises ImageError (ImageTooLarge)."""
        if not data:
            raise ImageError("empty file: no image data")
        return read_header(bytes(data), self.cache_size)

    def from_pixels(self, array: np.ndarray, name: str | None = None) -> Decoded:
        """Raw (H, W, 3) pixels -> model pixels, resized as a decoded photo is. Raises ImageError."""
        array = np.asarray(array)
        pixels = pixels_for_model(array, self.image_size, self.cache_size)
        sha = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        return Decoded(pixels, sha, int(array.shape[1]), int(array.shape[0]), name)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """probabilities, logits and pooled features for a (N, size, size, 3) batch; for a run that uses
        test-time augmentation, also its views' averaged calibrated probabilities (`VIEWS_AVERAGE`)."""
        outputs = self._forward_once(batch)
        outputs[IMAGE_STATS] = image_statistics(batch)
        if self.views > 1:
            view_logits = [outputs[names.LOGITS]]
            view_logits += [self._forward_once(view)[names.LOGITS] for view in tta.views_of(batch)[1:]]
            outputs[VIEWS_AVERAGE] = tta.averaged(view_logits, self.temperature)
        return outputs

    def _forward_once(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner(batch)

    def check_set_level(self, level: float | None) -> float | None:
        """The level of a request's prediction sets (0.9, or its alpha 0.1), None for none.

        Raises:
            InvalidInput: a level out of range, or the run has no prediction sets.
        """
        if level is None:
            return None
        if self.multilabel:
            raise InvalidInput(f"run {self.run_id} is multi-label: {MULTILABEL_NO_SETS}")
        level = conformal.level_of(level)
        if self.sets is None:
            raise InvalidInput(
                f"run {self.run_id} has no prediction sets (its test split is too small, or it has no analysis "
                f"arrays); fit them with `python -m core calibrate {self.run_id} --conformal 0.9`"
            )
        low, high = conformal.LEVEL_RANGE
        if not low - 1e-9 <= level <= high + 1e-9:
            raise InvalidInput(f"a prediction set's level must be {low:.2f}-{high:.2f}. Received: {level:g}")
        return level

    def check_max_error(self, value: float | None) -> float | None:
        """A request's maximum error among answered photos (0.05; None: answer every photo), the run's threshold for
        it fitted first when the run has none yet (or it was fitted on other probabilities). Raises InvalidInput or
        Unavailable."""
        if value is None:
            return None
        if self.multilabel:
            raise InvalidInput(f"run {self.run_id} is multi-label: {MULTILABEL_NO_MAX_ERROR}")
        level = selective.check_max_error(value)
        if self.selective is None or self.selective.views != self.views:
            self.selective = selective.run_selective(self.run.directory)
            self._stamp = self._answer_files()
        if self.selective is None:
            raise Unavailable(
                f"run {self.run_id} has no calibrated threshold (its test split is too small, or it has no analysis "
                f"arrays); `python -m core calibrate {self.run_id} --max-error {level:g}` says which"
            )
        return level

    def set_of(self, answer: Answer, level: float) -> list[str] | None:
        """The class names of an answer's prediction set at `level` (the Predict page's slider), most probable first;
        None when the run has no sets, or they were fitted on other probabilities than this answer's."""
        if self.sets is None or self.sets.views != answer.views:
            return None
        return self.sets.named_sets(answer.probabilities, level)[0]

    def answers(
        self,
        outputs: dict[str, np.ndarray],
        top_k: int = 3,
        set_level: float | None = None,
        max_error: float | None = None,
    ) -> list[Answer]:
        """Per-row answers from forward()'s outputs: calibrated top-k (the views' average where the run uses
        test-time augmentation), entropy, OOD score and flag, at `set_level` the conformal set, and whether each is
        held back (the run's class thresholds; with `max_error`, checked by `check_max_error`, only when sure)."""
        if self.multilabel:  # its labels against their thresholds (core.serving.answer)
            return label_answers(outputs[names.PROBABILITIES], self.classes, self.thresholds, top_k)
        logits, features = outputs[names.LOGITS], outputs[names.FEATURES]
        raw = outputs[names.PROBABILITIES]
        single = softmax(logits, self.temperature) if self.temperature != 1.0 else raw
        probabilities = outputs.get(VIEWS_AVERAGE, single)
        views = self.views if VIEWS_AVERAGE in outputs else 1
        sets = None
        if set_level is not None and self.sets is not None and len(logits):
            # the probabilities the sets were fitted on: the views' average, or the photo as it is
            fitted_on = probabilities if self.sets.views > 1 and views > 1 else single
            sets = self.sets.named_sets(fitted_on, set_level)
        top_k = max(1, min(int(top_k), len(self.classes)))
        ood_scores = ood_flags = projections = None
        pictures = outputs.get(IMAGE_STATS)
        if self.reference is not None and len(logits):
            ood_scores, ood_flags = self.reference.detector.score(logits, features, pictures)
            projections = self.reference.drift_projection(features)
        out = []
        entropies = entropy(probabilities)
        let_through = self.reference.detector.let_through_words() if ood_flags is not None else None
        for i, row in enumerate(probabilities):
            order = np.argsort(-row)[:top_k]
            top = [(self.classes[j], float(row[j])) for j in order]
            out.append(
                Answer(
                    probabilities=row,
                    label=top[0][0],
                    top=top,
                    max_probability=float(row[order[0]]),
                    entropy=float(entropies[i]),
                    ood_score=None if ood_scores is None else float(ood_scores[i]),
                    ood_flag=None if ood_flags is None else bool(ood_flags[i]),
                    ood_why=self.reference.detector.why(pictures[i])
                    if ood_flags is not None and ood_flags[i] and pictures is not None
                    else None,
                    ood_false_alarms=None if ood_flags is None else self.reference.detector.false_alarms,
                    ood_let_through=let_through,
                    projection=None if projections is None else projections[i],
                    raw_probabilities=raw[i],
                    prediction_set=None if sets is None else sets[i],
                    set_level=None if sets is None else set_level,
                    views=views,
                )
            )
        hold_back(out, self.selective, max_error, self.class_thresholds)
        return out

    def predict_pixels(
        self, pixels: np.ndarray, top_k: int = 3, set_level: float | None = None, max_error: float | None = None
    ) -> list[Answer]:
        """Answers for (N, size, size, 3) prepared pixels, without batching (the CLI and the pages)."""
        outputs: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(pixels), 64):
            for name, value in self.forward(pixels[start : start + 64]).items():
                outputs.setdefault(name, []).append(value)
        joined = {name: np.concatenate(values) for name, values in outputs.items() if values}
        return self.answers(joined, top_k, set_level, max_error) if joined else []

    def describe(self) -> dict[str, Any]:
        if self.multilabel:
            return {
                "run_id": self.run_id,
                "task": "multilabel",
                "classes": self.classes,
                "label_thresholds": self.thresholds,
                "image_size": self.image_size,
                "runtime": self.runtime,
                "not_for_multilabel": MULTILABEL_NOT_YET,
            }
        return {
            "run_id": self.run_id,
            "classes": self.classes,
            "image_size": self.image_size,
            "runtime": self.runtime,
            "temperature": self.temperature,
            "ood_method": self.ood_method,
            "ood_threshold": self.reference.detector.thresholds[self.ood_method] if self.reference else None,
            "ood_note": self.reference_note,
            "ood_summary": self.reference.detector.summary() if self.reference else None,
            "test_time_augmentation": None if self.tta is None else {"views": self.tta.views, "why": self.tta.reason},
            "prediction_sets": None
            if self.sets is None
            else {
                "method": self.sets.method,
                "fitted_level": self.sets.level,
                "levels": list(conformal.LEVEL_RANGE),
                "held_out_coverage": self.sets.held_out.coverage,
            },
            "class_thresholds": self.class_thresholds,
        }

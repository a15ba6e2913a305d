"""A confidence threshold per class: answer "tulip" only when the model gives tulip at least its threshold.

Evaluate shows, for each class and any threshold, what the class's answers do on the run's test photos: an answer
is a photo whose top class is the class with a top probability at or above the threshold; its *precision* is the
share of those answers that are right, its *recall* the share of the class's photos found that way ("at 0.70: 19 of
20 'tulip' answers right, 2 of 3 'tulip' photos found"). The probabilities are the ones the run's predictors give
(calibrated, test-time augmentation's average where the run uses it:
`core.results.probabilities.tta.served_probabilities`).

Saved thresholds are part of the run (`class_thresholds.json`): Predict, the model server and the exports' predict
script hold back an answer whose class's threshold is not met and say why. Figures on the test photos are where a
threshold is chosen, so the photos it is judged on chose it too: on new photos expect a little less.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import InvalidInput
from core.fileio import read_json, write_json_atomic
from core.results.evaluation.chance import wilson
from core.runs.files import run_files

THRESHOLDS_VERSION = 1
STEP = 0.01  # the sliders' step and the curve's grid


class ThresholdError(InvalidInput):
    """A threshold outside [0, 1) or a class the run does not have."""


@dataclass(frozen=True)
class ClassAnswers:
    """What one class's answers do at one threshold."""

    threshold: float
    answers: int  # photos whose top class is the class, at or above the threshold
    right: int  # of those, photos of the class
    photos: int  # the class's photos

    @property
    def precision(self) -> float | None:
        return self.right / self.answers if self.answers else None

    @property
    def recall(self) -> float | None:
        return self.right / self.photos if self.photos else None


def class_answers(probabilities: np.ndarray, labels: np.ndarray, c: int, threshold: float) -> ClassAnswers:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    mine = (probabilities.argmax(axis=1) == c) & (probabilities.max(axis=1) >= threshold)
    return ClassAnswers(float(threshold), int(mine.sum()), int((mine & (labels == c)).sum()), int((labels == c).sum()))


def curve(probabilities: np.ndarray, labels: np.ndarray, c: int, step: float = STEP) -> list[ClassAnswers]:
    """The class's answers at every threshold from 0 to 1 - step."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    grid = np.round(np.arange(0.0, 1.0, step), 6)
    top = probabilities.max(axis=1)
    mine = probabilities.argmax(axis=1) == c
    score = np.where(mine, top, -1.0)  # a photo whose top class is another is never this class's answer
    order = np.sort(score)
    right_scores = np.sort(score[labels == c])
    answers = len(score) - np.searchsorted(order, grid, side="left")
    right = len(right_scores) - np.searchsorted(right_scores, grid, side="left")
    photos = int((labels == c).sum())
    return [ClassAnswers(float(t), int(a), int(r), photos) for t, a, r in zip(grid, answers, right, strict=True)]


def words(name: str, counts: ClassAnswers) -> str:
    """'at 0.70: 19 of 20 'tulip' answers right, 2 of 3 'tulip' photos found' (the caller escapes the name)."""
    answers = (
        f"{counts.right} of {counts.answers} '{name}' answers right{_between(counts.right, counts.answers)}"
        if counts.answers
        else f"no photo answered '{name}'"
    )
    found = f"{counts.right} of {counts.photos} '{name}' photos found{_between(counts.right, counts.photos)}"
    return f"at {figure(counts.threshold)}: {answers}, {found}"


def _between(right: int, of: int) -> str:
    """' (95%: 35%-90%)': Wilson's interval for a share counted on few photos (walk 52: '8 of 12' with none)."""
    if of <= 0:
        return ""
    low, high = wilson(right, of)
    return f" (95%: {low:.0%}-{high:.0%})"


def figure(threshold: float) -> str:
    """'0.70', or '0.534' on a finer slider's step."""
    return f"{threshold:.2f}" if abs(round(threshold, 2) - threshold) < 1e-9 else f"{threshold:.3f}"


@dataclass(frozen=True)
class SliderRange:
    """Where a class's threshold can make a difference on the run's test photos: from 1/k (a top probability is never
    under it, so there every answer is given: no threshold) to the highest probability the class gets."""

    low: float  # at or below: no threshold
    high: float
    step: float
    seen: tuple[float, float] | None  # the lowest and highest top probability of the class's answers (None: none)
    classes: int

    def threshold(self, value: float) -> float:
        """The slider's value as a threshold to keep: 0 (none) at or below `low`."""
        return 0.0 if value <= self.low + 1e-9 else round(float(value), 4)

    @property
    def bunched(self) -> bool:
        """Whether every answer's probability sits within BUNCHED of 1/k: the model barely tells the classes apart."""
        return self.seen is not None and self.seen[1] - 1 / self.classes < BUNCHED

    def words(self, name: str) -> str:
        """Where the class's answers lie, why the slider runs where it does, and what bunching near 1/k means (the
        caller escapes the name)."""
        k = self.classes
        if self.seen is None:
            said = f"No test photo is answered '{name}', so no threshold changes anything on them"
        else:
            said = (
                f"On the test photos, answers '{name}' come with {self.seen[0]:.3f}-{self.seen[1]:.3f}: the slider "
                f"runs from {self.low:.2f} (under 1/{k} no top probability falls, so every answer is given) to "
                f"{self.high:.{2 if self.step >= 0.01 else 3}f}"
            )
        if self.bunched:
            said += (
                f". They bunch near 1/{k} = {1 / k:.0%}: the calibrated model can hardly tell the classes apart (see "
                "Calibration), so a threshold here sorts answers by a few points of probability, which say little "
                "about which are right"
            )
        return said + "."


BUNCHED = 0.15  # every answer within this of 1/k: near-uniform probabilities


def slider_range(probabilities: np.ndarray, c: int, saved: float = 0.0) -> SliderRange:
    """The range of class `c`'s threshold slider over the probabilities the run gives (a saved threshold kept
    inside it); a finer step where they lie close together."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    k = probabilities.shape[1]
    low = math.floor(100 / k) / 100
    top = probabilities.max(axis=1)
    mine = probabilities.argmax(axis=1) == c
    seen = (float(top[mine].min()), float(top[mine].max())) if mine.any() else None
    highest = seen[1] if seen else float(probabilities[:, c].max(initial=low))
    step = STEP if highest - low >= 0.1 else STEP / 10
    high = math.ceil(highest / step) * step
    high = round(min(0.99, max(high, float(saved), low + step)), 4)
    return SliderRange(low, high, step, seen, k)


def check(thresholds: dict[str, float], classes: list[str]) -> dict[str, float]:
    """Thresholds by class name, each in [0, 1); 0 (no threshold) left out. Raises ThresholdError."""
    out = {}
    for name, value in thresholds.items():
        if name not in classes:
            raise ThresholdError(f"unknown class {name!r}; the run's classes: {', '.join(classes)}")
        value = float(value)
        if not (0.0 <= value < 1.0) or not math.isfinite(value):
            raise ThresholdError(f"a threshold must be at least 0 and below 1. Received: {name}={value:g}")
        if value > 0:
            out[name] = round(value, 4)
    return out


def save(
    run_dir: str | os.PathLike, thresholds: dict[str, float], classes: list[str], by: str | None = None
) -> dict[str, float]:
    """Store the run's thresholds (0 or absent: none for that class); returns what was stored."""
    kept = check(thresholds, classes)
    record = {"version": THRESHOLDS_VERSION, "thresholds": kept, "saved_at": time.time(), "saved_by": by}
    write_json_atomic(run_files(run_dir).class_thresholds, record)
    return kept


def load(run_dir: str | os.PathLike) -> dict[str, float]:
    """The run's saved thresholds by class name ({} when none)."""
    data = read_json(run_files(run_dir).class_thresholds)
    if not isinstance(data, dict) or data.get("version") != THRESHOLDS_VERSION:
        return {}
    found = data.get("thresholds")
    if not isinstance(found, dict):
        return {}
    return {str(k): float(v) for k, v in found.items() if isinstance(v, int | float) and 0 < v < 1}


def decision(thresholds: dict[str, float], label: str, confidence: float) -> tuple[bool, str | None]:
    """(answered, why not) for a top class `label` given at `confidence`."""
    threshold = thresholds.get(label)
    if threshold is None or confidence >= threshold:
        return True, None
    return False, f"{confidence:.1%} for {label} is under its saved threshold of {figure(threshold)}"


def table(probabilities: np.ndarray, labels: np.ndarray, classes: list[str], thresholds: dict[str, float]):
    """Per class: its threshold and its answers' precision and recall there, and without a threshold."""
    rows: list[dict[str, Any]] = []
    for c, name in enumerate(classes):
        at = class_answers(probabilities, labels, c, thresholds.get(name, 0.0))
        free = class_answers(probabilities, labels, c, 0.0)
        rows.append(
            {
                "class": name,
                "threshold": thresholds.get(name, 0.0),
                "answers": at.answers,
                "precision": at.precision,
                "recall": at.recall,
                "precision without": free.precision,
                "recall without": free.recall,
                "photos": at.photos,
            }
        )
    return rows


def run_probabilities(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(test probabilities as the run's predictors give them, test labels, classes). Raises AnalysisMissing."""
    from core.results.probabilities.tta import served_probabilities  # heavy: pandas (the views' tables)
    from core.runs.analysis import RunAnalysis

    analysis = RunAnalysis.load(run_dir)
    _, test, _ = served_probabilities(run_dir, analysis)
    return test, analysis.test.labels, analysis.classes

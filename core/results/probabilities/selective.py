"""Answer only when sure: a confidence threshold with a guaranteed error rate among the photos answered.

The person names a level ("at most 5% wrong among the photos you answer"). Flora answers a photo when its top
probability reaches a threshold and holds back otherwise, and picks the threshold by Learn then Test (Angelopoulos,
Bates, Candes, Jordan & Lei 2021) on the calibration half of the test split (the half conformal prediction sets
calibrate on, `core.results.probabilities.conformal`):

  for each threshold t, the hypothesis "the error among photos answered at t is above the level" is tested with
  the exact binomial p-value of the errors among the calibration photos answered at t (Bentkus's binary bound,
  which MAPIE's risk control computes too); thresholds are tested in a fixed sequence from strict to lenient and
  the first one not rejected ends the sequence (fixed-sequence testing: no correction for the number tested);
  the most lenient rejected threshold is the one used.

What this promises: with probability at least 1 - DELTA (90%) over the draw of the calibration photos, the error
among photos like the run's test photos that the threshold answers is at most the level. It is a promise about
photos taken together, not about one photo, and it is made for the share of the error the threshold answers, so a
strict level can leave most photos unanswered. The held-out half, which chose nothing, is recounted (its own
error has the noise of a finite count: `allowed_errors` is the most errors a true rate at the level gives in 95% of
such counts), and the halving is repeated many times to show the spread.

Where the fixed sequence starts is decided on the validation split, never on the test photos (as MAPIE's split
fixed-sequence testing learns its order on other data): at the threshold where validation, its counts scaled to the
calibration half, shows the level most clearly (the smallest p-value). Stricter thresholds answer too few photos to
show much; more lenient ones are tested after it, in order, while they pass.

When no threshold passes at the level, `Selective.nearest_at` says the lowest level (in whole percent) one passes at
on the same calibration photos and what it did there on the held-out half; `no_threshold_words` says it. Predict,
Evaluate, the server's reason, `core calibrate` and the model card all give these, so they quote one level and one
share answered.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.errors import InvalidInput
from core.fileio import read_versioned, write_json_atomic
from core.results.probabilities.learn_then_test import (
    DELTA,
    LEVELS,
    MAX_ERROR_RANGE,
    learn_then_test,
    nearest_level,
)
from core.results.probabilities.selective_words import (  # the words, read from here as before
    fragile_words,  # noqa: F401
    halvings_words,  # noqa: F401
    no_threshold_words,
    other_halvings_words,
    threshold_text,  # noqa: F401
)
from core.runs.files import run_files

DEFAULT_MAX_ERROR = 0.05
HALF_SEED = 0  # the same halves as the conformal sets
SPREAD_SPLITS = 200
SLACK_CONFIDENCE = 0.95  # the held-out half's own noise: the errors a rate at the level stays under 95% of the time
SELECTIVE_VERSION = 1
FRAGILE_SHARE = 0.1  # more halvings than this without a threshold: said beside the promise


class SelectiveError(InvalidInput):
    """A level outside MAX_ERROR_RANGE, or too few photos to calibrate on."""


def check_max_error(value: float) -> float:
    """A maximum error rate as a fraction (0.05; 5 means 5%). Raises SelectiveError outside MAX_ERROR_RANGE."""
    value = float(value)
    if value >= 1:
        value /= 100.0
    low, high = MAX_ERROR_RANGE
    if not low - 1e-9 <= value <= high + 1e-9 or not math.isfinite(value):
        raise SelectiveError(f"the maximum error must be {low:.2f}-{high:.2f} (0.05: 5% wrong). Received: {value:g}")
    return round(value, 6)


@dataclass
class Counted:
    """What a threshold did on photos that chose nothing."""

    photos: int
    answered: int
    errors: int
    allowed_errors: int  # the most errors a true rate at the level gives in SLACK_CONFIDENCE of counts this size

    @property
    def share_answered(self) -> float:
        return self.answered / self.photos if self.photos else 0.0

    @property
    def error(self) -> float | None:
        return self.errors / self.answered if self.answered else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share_answered": self.share_answered, "error": self.error}


def counted(confidence: np.ndarray, correct: np.ndarray, threshold: float | None, max_error: float) -> Counted:
    from scipy.stats import binom  # heavy: scipy

    answered_mask = np.asarray(confidence) >= threshold if threshold is not None else np.zeros(len(confidence), bool)
    answered = int(answered_mask.sum())
    errors = int((~np.asarray(correct, bool))[answered_mask].sum())
    allowed = int(binom.ppf(SLACK_CONFIDENCE, answered, max_error)) if answered else 0
    return Counted(len(confidence), answered, errors, allowed)


@dataclass
class SelectiveSpread:
    """The fit on one random half, counted on the other, many times."""

    splits: int
    without_threshold: int  # halvings where no threshold passed
    error_mean: float | None  # over halvings that answered something
    error_sd: float | None
    error_low: float | None  # 2.5% and 97.5% of those halvings
    error_high: float | None
    share_mean: float
    share_sd: float
    share_low: float
    share_high: float
    within_level: float | None  # share of halvings (that answered something) whose held-out error is at most the level
    answered_splits: int | None = None  # halvings whose held-out half had answers (the error's figures are over these)

    @property
    def found(self) -> int:
        """Halvings where a threshold was found."""
        return self.splits - self.without_threshold

    @property
    def share_found_mean(self) -> float | None:
        """The share answered on average over the halvings that found a threshold (the others answer none)."""
        return self.share_mean * self.splits / self.found if self.found else None

    @property
    def fragile(self) -> bool:
        """More than FRAGILE_SHARE of the halvings found no threshold: the one halving's promise is luck of the draw."""
        return self.without_threshold > FRAGILE_SHARE * self.splits


def spread(
    confidence: np.ndarray,
    correct: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    max_error: float,
    splits: int = SPREAD_SPLITS,
    seed: int = 1,
) -> SelectiveSpread:
    rng = np.random.default_rng(seed)
    n = len(confidence)
    errors, shares, missing = [], [], 0
    for _ in range(splits):
        perm = rng.permutation(n)
        cal, held = perm[: n // 2], perm[n // 2 :]
        threshold = learn_then_test(confidence[cal], correct[cal], validation, max_error)
        if threshold is None:
            missing += 1
            shares.append(0.0)
            continue
        answered = confidence[held] >= threshold
        shares.append(float(answered.mean()))
        if answered.any():
            errors.append(float((~correct[held][answered]).mean()))
    e = np.asarray(errors)
    s = np.asarray(shares)
    return SelectiveSpread(
        splits=splits,
        without_threshold=missing,
        error_mean=float(e.mean()) if len(e) else None,
        error_sd=float(e.std(ddof=1)) if len(e) > 1 else None,
        error_low=float(np.quantile(e, 0.025)) if len(e) else None,
        error_high=float(np.quantile(e, 0.975)) if len(e) else None,
        share_mean=float(s.mean()),
        share_sd=float(s.std(ddof=1)) if len(s) > 1 else 0.0,
        share_low=float(np.quantile(s, 0.025)),
        share_high=float(np.quantile(s, 0.975)),
        within_level=float((e <= max_error + 1e-12).mean()) if len(e) else None,
        answered_splits=len(e),
    )


@dataclass
class Selective:
    """A run's selective answers: the calibration half's confidences (any level's threshold), the report at a level."""

    max_error: float  # the level the report below was made at
    delta: float
    views: int  # the probabilities' views (core.results.probabilities.tta), as the conformal sets
    classes: list[str]
    calibration_confidence: list[float]
    calibration_correct: list[bool]
    val_confidence: list[float]
    val_correct: list[bool]
    threshold: float | None  # at max_error; None: no threshold promises it on these photos
    held_out: Counted
    spread: SelectiveSpread | None
    nearest: dict[str, Any] | None  # without a threshold: {"max_error", "threshold", "held_out": Counted dict}
    photos: list[dict[str, Any]]  # the held-out half: path, label, prediction, confidence, answered
    version: int = SELECTIVE_VERSION
    _cache: dict[float, float | None] = field(default_factory=dict, repr=False, compare=False)
    _near: dict[float, dict[str, Any] | None] = field(default_factory=dict, repr=False, compare=False)
    _spread: dict[tuple[float, int], SelectiveSpread] = field(default_factory=dict, repr=False, compare=False)

    def spread_at(self, max_error: float, splits: int = SPREAD_SPLITS) -> SelectiveSpread:
        """The spread over random halvings at `max_error`, each halving fitting its own threshold, from the stored test
        photos (the calibration half, then the held-out half): the same figures as a fit at that level reports."""
        max_error = check_max_error(max_error)
        if max_error == self.max_error and self.spread is not None and self.spread.splits == splits:
            return self.spread
        if (max_error, splits) not in self._spread:
            confidence = np.r_[self.calibration_confidence, [p["confidence"] for p in self.photos]].astype(np.float64)
            correct = np.r_[
                np.asarray(self.calibration_correct, bool), [p["label"] == p["prediction"] for p in self.photos]
            ].astype(bool)
            self._spread[(max_error, splits)] = spread(confidence, correct, self.validation, max_error, splits)
        return self._spread[(max_error, splits)]

    def threshold_at(self, max_error: float) -> float | None:
        """The threshold promising at most `max_error` wrong among answers (None: none does), from the stored half."""
        max_error = check_max_error(max_error)
        if max_error == self.max_error:
            return self.threshold
        if max_error not in self._cache:
            self._cache[max_error] = learn_then_test(
                np.asarray(self.calibration_confidence),
                np.asarray(self.calibration_correct, bool),
                self.validation,
                max_error,
                self.delta,
            )
        return self._cache[max_error]

    def nearest_at(self, max_error: float) -> dict[str, Any] | None:
        """Where `max_error` has no threshold, the nearest level that has one on the calibration half, its threshold
        and what it did on the held-out half: {"max_error", "threshold", "held_out": Counted dict}. None where
        `max_error` has a threshold, or no level up to the range's top does. The one answer every place gives."""
        max_error = check_max_error(max_error)
        if max_error == self.max_error and self.nearest is not None:
            return self.nearest
        if self.threshold_at(max_error) is not None:
            return None
        if max_error not in self._near:  # asked once per photo held back: up to 50 levels tested each time otherwise
            found = nearest_level(
                np.asarray(self.calibration_confidence),
                np.asarray(self.calibration_correct, bool),
                self.validation,
                max_error,
                self.delta,
            )
            self._near[max_error] = (
                None
                if found is None
                else {
                    "max_error": found[0],
                    "threshold": found[1],
                    "held_out": self.held_out_at(found[1], found[0]).to_dict(),
                }
            )
        return self._near[max_error]

    def held_out_at(self, threshold: float | None, max_error: float) -> Counted:
        """What `threshold` does on the held-out half, counted from its photos as stored (as the JSON lists them)."""
        confidence = np.asarray([p["confidence"] for p in self.photos], dtype=np.float64)
        correct = np.asarray([p["label"] == p["prediction"] for p in self.photos], dtype=bool)
        return counted(confidence, correct, threshold, max_error)

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.val_confidence, dtype=np.float64), np.asarray(self.val_correct, dtype=bool)

    def summary(self) -> dict[str, Any]:
        """What `core calibrate --max-error --json` prints besides the photos."""
        return {
            "max_error": self.max_error,
            "confidence": 1 - self.delta,
            "method": "Learn then Test: binomial p-values, fixed-sequence testing from strict to lenient thresholds",
            "views": self.views,
            "calibration_photos": len(self.calibration_confidence),
            "threshold": self.threshold,
            "promised": self.threshold is not None,
            "held_out": self.held_out.to_dict(),
            "spread": asdict(self.spread) if self.spread else None,
            "nearest": self.nearest,
            # the calibration half, surest first: the threshold (or that none exists) can be recounted from it
            "calibration": [
                {"confidence": c, "right": r}
                for c, r in sorted(
                    zip(self.calibration_confidence, self.calibration_correct, strict=True), reverse=True
                )
            ],
        }

    def no_level_words(self) -> str | None:
        """Where no level up to the highest can be promised: how often other halvings found one there (words)."""
        if self.nearest_at(LEVELS[-1]) is not None or self.threshold_at(LEVELS[-1]) is not None:
            return None
        return other_halvings_words(self.spread_at(LEVELS[-1]), LEVELS[-1])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_cache", None)
        out.pop("_near", None)
        out.pop("_spread", None)
        out["held_out"] = self.held_out.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selective:
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        held = {k: data["held_out"][k] for k in ("photos", "answered", "errors", "allowed_errors")}
        data["held_out"] = Counted(**held)
        data["spread"] = SelectiveSpread(**data["spread"]) if data.get("spread") else None
        return cls(**data)


def fit(
    test_probabilities: np.ndarray,
    test_labels: np.ndarray,
    test_paths: list[str],
    classes: list[str],
    val_probabilities: np.ndarray,
    val_labels: np.ndarray,
    max_error: float = DEFAULT_MAX_ERROR,
    views: int = 1,
    seed: int = HALF_SEED,
    spread_splits: int = SPREAD_SPLITS,
) -> Selective:
    """Fit the threshold on one half of the test split, count on the other, repeat over random halvings.

    Raises:
        SelectiveError: a level outside the range, or fewer than 2 test photos.
    """
    max_error = check_max_error(max_error)
    probabilities = np.asarray(test_probabilities, dtype=np.float64)
    labels = np.asarray(test_labels, dtype=np.int64)
    n = len(labels)
    if n < 2:
        raise SelectiveError(f"{n} test photo(s) are too few to calibrate on half and count on the other half")
    confidence = probabilities.max(axis=1)
    prediction = probabilities.argmax(axis=1)
    correct = prediction == labels
    val_probabilities = np.asarray(val_probabilities, dtype=np.float64).reshape(-1, probabilities.shape[1])
    val_confidence = val_probabilities.max(axis=1)
    val_correct = val_probabilities.argmax(axis=1) == np.asarray(val_labels, dtype=np.int64)
    validation = (val_confidence, val_correct)
    perm = np.random.default_rng(seed).permutation(n)
    cal, held = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    threshold = learn_then_test(confidence[cal], correct[cal], validation, max_error)
    # the held-out half is counted on its confidences as stored, so any level's count from the stored photos (Predict,
    # the nearest level) and a recount of the JSON's rows give the same figures as this one
    held_confidence = np.round(confidence[held], 6)
    photos = [
        {
            "path": test_paths[i],
            "label": classes[labels[i]],
            "prediction": classes[prediction[i]],
            "confidence": float(c),
            "answered": bool(threshold is not None and c >= threshold),
        }
        for i, c in zip(held, held_confidence, strict=True)
    ]
    fitted = Selective(
        max_error=max_error,
        delta=DELTA,
        views=int(views),
        classes=list(classes),
        calibration_confidence=[float(c) for c in confidence[cal]],
        calibration_correct=[bool(c) for c in correct[cal]],
        val_confidence=[float(c) for c in val_confidence],
        val_correct=[bool(c) for c in val_correct],
        threshold=threshold,
        held_out=counted(held_confidence, correct[held], threshold, max_error),
        spread=None,
        nearest=None,
        photos=photos,
    )
    fitted.nearest = fitted.nearest_at(max_error)
    if spread_splits:
        fitted.spread = fitted.spread_at(max_error, spread_splits)
    return fitted


def save(selective: Selective, run_dir: str | os.PathLike) -> None:
    write_json_atomic(run_files(run_dir).selective, selective.to_dict())


def load(run_dir: str | os.PathLike) -> Selective | None:
    """The run's stored selective answers, or None (never fitted, or of another version)."""
    return read_versioned(run_files(run_dir).selective, SELECTIVE_VERSION, Selective.from_dict)


def fit_run(run_dir: str | os.PathLike, max_error: float = DEFAULT_MAX_ERROR, store: bool = True) -> Selective:
    """Fit a run's selective answers on the probabilities its predictors give (probabilities.tta); `store`: keep them
    as the run's (the level its report is at; any level's threshold comes from them either way).

    Raises:
        AnalysisMissing: the run has no analysis arrays yet.
        SelectiveError: a level out of range or too few test photos.
    """
    from core.results.probabilities.tta import served_probabilities  # heavy: pandas (the views' tables)
    from core.runs.analysis import RunAnalysis

    analysis = RunAnalysis.load(run_dir)
    val, test, views = served_probabilities(run_dir, analysis)
    fitted = fit(
        test, analysis.test.labels, analysis.test.paths, analysis.classes, val, analysis.val.labels, max_error, views
    )
    if store:
        save(fitted, run_dir)
    return fitted


def run_selective(run_dir: str | os.PathLike) -> Selective | None:
    """The run's selective answers: stored (refitted at their level when the run's views changed), else fitted now at
    the default level; None without analysis arrays or with too few test photos."""
    from core.results.probabilities.tta import used_by  # heavy: pandas (the views' tables)
    from core.runs.analysis import AnalysisMissing

    stored = load(run_dir)
    report = used_by(run_dir)
    views = len(report.views) if report is not None else 1
    if stored is not None and stored.views == views:
        return stored
    try:
        return fit_run(run_dir, stored.max_error if stored is not None else DEFAULT_MAX_ERROR)
    except (AnalysisMissing, SelectiveError):
        return None


def decision(selective: Selective | None, confidence: float, max_error: float) -> tuple[bool, str | None]:
    """(answered, why not): whether a photo of this top probability is answered at `max_error`, and the reason in
    words when it is held back."""
    if selective is None:
        return False, "this run has no calibrated threshold (no analysis arrays, or too few test photos)"
    threshold = selective.threshold_at(max_error)
    if threshold is None:
        return False, "; ".join(no_threshold_words(max_error, selective.nearest_at(max_error)))
    if confidence >= threshold:
        return True, None
    return False, (
        f"not sure enough: {confidence:.1%} is under {threshold:.1%}, the threshold that keeps wrong answers at or "
        f"below {max_error:.0%} of those answered"
    )

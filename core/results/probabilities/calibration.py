"""How much to trust the probabilities: ECE, MCE, NLL, Brier, reliability bins, and temperature scaling.

A model is *calibrated* when, of the photos it gives 80 %, about 80 % are right. Temperature
scaling (Guo et al. 2017) divides every logit by one number T fitted on the validation split
(minimising the negative log-likelihood over log T): T > 1 softens over-confident answers, the
ranking of the classes (and so the accuracy) never changes. The fit is stored with the run
(calibration.json) and every predictor applies it. What it means in words, on a weak model above all:
`calibration_words`.

Conventions: 15 equal-width confidence bins over [0, 1], each closed on the left and the last one
closed on both sides, so confidences of exactly 0 and 1 are counted; ECE weighs each bin's
|accuracy - confidence| by its share of the images; Brier is the multi-class score
sum_c (p_c - y_c)^2 averaged over images (0 perfect, 2 worst).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.fileio import read_json, read_versioned, write_json_atomic
from core.runs.analysis import RunAnalysis, softmax
from core.runs.files import run_files

BINS = 15
T_BOUNDS = (0.05, 20.0)  # a temperature outside this says the logits are broken, not over-confident
AT_BOUND = 0.01  # a fitted T within 1% of a bound of the search stopped there: the best T may lie beyond
NEAR_UNIFORM = 0.95  # NLL after scaling at or above this share of ln K: about the same probability for every class
NEAR_UNIFORM_TOP = 0.1  # ... and a mean top probability within this of 1/K (else confident and often wrong)
BOOTSTRAP_SAMPLES = 1000
FEW_PER_CLASS = 30  # fewer validation images per class than this: the fitted T is itself uncertain
CALIBRATION_VERSION = 1
_EPS = 1e-12


def bin_index(confidence: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The bin of each confidence: [0, 1/b), [1/b, 2/b), ..., [(b-1)/b, 1] (the last closed)."""
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.searchsorted(edges, confidence, side="right")


def _confidence_and_correct(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    return probabilities.max(axis=1), (probabilities.argmax(axis=1) == labels).astype(np.float64)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Per bin: its range, how many images, their accuracy and mean confidence, and the gap between them.

    Empty bins have count 0 and accuracy/confidence None (a diagram leaves them out).
    """
    confidence, correct = _confidence_and_correct(probabilities, labels)
    index = bin_index(confidence, bins)
    counts = np.bincount(index, minlength=bins)
    hits = np.bincount(index, weights=correct, minlength=bins)
    sure = np.bincount(index, weights=confidence, minlength=bins)
    rows = []
    for b in range(bins):
        n = int(counts[b])
        accuracy = hits[b] / n if n else None
        mean_conf = sure[b] / n if n else None
        rows.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "count": n,
                "accuracy": accuracy,
                "confidence": mean_conf,
                "gap": None if n == 0 else mean_conf - accuracy,  # > 0: over-confident in this bin
            }
        )
    return rows


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of (share of images) x |accuracy - confidence|."""
    rows = reliability(probabilities, labels, bins)
    total = sum(r["count"] for r in rows)
    if total == 0:
        return 0.0
    return float(sum(r["count"] / total * abs(r["gap"]) for r in rows if r["count"]))


def mce(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Maximum calibration error: the largest |accuracy - confidence| over the non-empty bins."""
    gaps = [abs(r["gap"]) for r in reliability(probabilities, labels, bins) if r["count"]]
    return float(max(gaps)) if gaps else 0.0


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    picked = probabilities[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(np.mean(-np.log(np.clip(picked, _EPS, 1.0)))) if len(picked) else 0.0


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of sum_c (p_c - [c is true])^2."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not len(probabilities):
        return 0.0
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1.0
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def logits_nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """NLL of softmax(logits / T), computed with a log-sum-exp (exact for huge logits)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), np.asarray(labels, dtype=np.int64)])) if len(z) else 0.0


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The T minimising the NLL of softmax(logits / T), searched over log T within `bounds`."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    low, high = np.log(bounds[0]), np.log(bounds[1])
    # Each of the ~30 evaluations is one pass over (n, classes): the row maxima and the given logits are
    # taken once, the pass is in float32 (100k x 1,000 logits are 400 MB; float64 temporaries were 800 MB each).
    z = np.asarray(logits, dtype=np.float32)
    top = z.max(axis=1)
    below = z - top[:, None]  # <= 0: exp never overflows, whatever T
    given = below[np.arange(len(z)), np.asarray(labels, dtype=np.int64)].astype(np.float64)

    def nll(log_t: float) -> float:
        t = float(np.exp(log_t))
        sums = np.exp(below / np.float32(t)).sum(axis=1, dtype=np.float64)
        return float(np.mean(np.log(sums) - given / t))

    found = minimize_scalar(
        nll,
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(found.x))


def ece_interval(
    probabilities: np.ndarray,
    labels: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    level: float = 0.95,
    seed: int = 0,
    bins: int = BINS,
) -> tuple[float, float]:
    """A bootstrap interval on ECE: the images resampled with replacement `samples` times, bias-corrected."""
    confidence, correct = _confidence_and_correct(probabilities, labels)
    n = len(confidence)
    if n == 0:
        return 0.0, 0.0
    index = bin_index(confidence, bins)
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    chunk = max(1, 2_000_000 // n)  # resamples at a time: bounded memory on 6,000-image test splits
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        draw = rng.integers(0, n, size=(k, n))
        cell = (np.arange(k)[:, None] * bins + index[draw]).ravel()
        hits = np.bincount(cell, weights=correct[draw].ravel(), minlength=k * bins).reshape(k, bins)
        sure = np.bincount(cell, weights=confidence[draw].ravel(), minlength=k * bins).reshape(k, bins)
        values[start : start + k] = np.abs(sure - hits).sum(axis=1) / n  # sum_b n_b/N |conf_b - acc_b|
    # Resampling adds noise, and noise only ever adds apparent miscalibration: the bootstrap ECEs sit
    # above the estimate (on 649 well-calibrated photos the whole percentile interval can lie above it).
    # Shift the percentile interval back by that bias, the simple bias-corrected bootstrap.
    bias = float(values.mean()) - float(np.abs(hits_sure_gap(index, correct, confidence, bins)).sum() / n)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail]) - bias
    return float(max(0.0, low)), float(max(0.0, high))


def hits_sure_gap(index: np.ndarray, correct: np.ndarray, confidence: np.ndarray, bins: int) -> np.ndarray:
    """Per bin: sum of confidences minus number right (the ECE's numerator, before dividing by N)."""
    return np.bincount(index, weights=confidence, minlength=bins) - np.bincount(index, weights=correct, minlength=bins)


@dataclass
class Scores:
    """The calibration of one set of probabilities."""

    accuracy: float
    ece: float
    mce: float
    nll: float
    brier: float
    ece_low: float  # bootstrap interval on ECE
    ece_high: float
    images: int

    @classmethod
    def of(cls, probabilities: np.ndarray, labels: np.ndarray, seed: int = 0) -> Scores:
        _, correct = _confidence_and_correct(probabilities, labels)
        low, high = ece_interval(probabilities, labels, seed=seed)
        return cls(
            accuracy=float(correct.mean()) if len(correct) else 0.0,
            ece=ece(probabilities, labels),
            mce=mce(probabilities, labels),
            nll=nll(probabilities, labels),
            brier=brier(probabilities, labels),
            ece_low=low,
            ece_high=high,
            images=len(labels),
        )


@dataclass
class Calibration:
    """A run's fitted temperature and what it does to the test split (stored as calibration.json)."""

    temperature: float
    val_images: int
    val_per_class: float  # mean validation images per class: below FEW_PER_CLASS, T is uncertain
    before: Scores  # test split, raw probabilities
    after: Scores  # test split, softmax(logits / T)
    val_nll_before: float
    val_nll_after: float
    version: int = CALIBRATION_VERSION
    reliability_before: list[dict[str, Any]] = field(default_factory=list)
    reliability_after: list[dict[str, Any]] = field(default_factory=list)
    classes: int = 0  # how many classes (0 in files written before it was kept: from the validation counts)

    @property
    def few_validation_images(self) -> bool:
        return self.val_per_class < FEW_PER_CLASS

    @property
    def class_count(self) -> int:
        if self.classes:
            return self.classes
        return max(2, round(self.val_images / self.val_per_class)) if self.val_per_class else 2

    @property
    def at_bound(self) -> str | None:
        """ "upper" or "lower" when the fitted T sits on a bound of the search (T_BOUNDS): the search stopped
        there, the best temperature may lie beyond it; None otherwise."""
        low, high = T_BOUNDS
        if self.temperature >= high * (1 - AT_BOUND):
            return "upper"
        if self.temperature <= low * (1 + AT_BOUND):
            return "lower"
        return None

    @property
    def near_uniform(self) -> bool:
        """True when the calibrated probabilities are about the same for every class: the test NLL after scaling
        is close to ln K, what a guess of 1/K for every class scores, and the test photos' top probability is near
        1/K on average. The NLL alone also reaches ln K when confident answers are often wrong (walk 53: 'about 33%
        for every photo' beside answers of 95% and 89%, calibrated confidences 0.36-0.99)."""
        if self.after.nll < NEAR_UNIFORM * float(np.log(self.class_count)):
            return False
        rows = [r for r in self.reliability_after if r.get("count")]
        if not rows:  # files from before the bins were kept: the NLL alone
            return True
        mean_top = sum(r["count"] * r["confidence"] for r in rows) / sum(r["count"] for r in rows)
        return bool(mean_top <= 1 / self.class_count + NEAR_UNIFORM_TOP)

    def summary(self) -> dict[str, Any]:
        """What `python -m core calibrate --json` prints (test split)."""
        return {
            "temperature": self.temperature,
            "ece_before": self.before.ece,
            "ece_after": self.after.ece,
            "nll_before": self.before.nll,
            "nll_after": self.after.nll,
            "mce_before": self.before.mce,
            "mce_after": self.after.mce,
            "brier_before": self.before.brier,
            "brier_after": self.after.brier,
            "ece_interval_before": [self.before.ece_low, self.before.ece_high],
            "ece_interval_after": [self.after.ece_low, self.after.ece_high],
            "accuracy": self.before.accuracy,
            "test_images": self.before.images,
            "val_images": self.val_images,
            "few_validation_images": self.few_validation_images,
            "temperature_bounds": list(T_BOUNDS),
            "temperature_at_bound": self.at_bound,
            "near_uniform_after": self.near_uniform,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        data = dict(data)
        data["before"] = Scores(**data["before"])
        data["after"] = Scores(**data["after"])
        return cls(**data)


def calibrate(analysis: RunAnalysis) -> Calibration:
    """Fit T on the validation logits; score the test split before and after."""
    val, test = analysis.val, analysis.test
    temperature = fit_temperature(val.logits, val.labels)
    raw, scaled = softmax(test.logits), softmax(test.logits, temperature)
    per_class = len(val.labels) / max(1, len(analysis.classes))
    return Calibration(
        temperature=temperature,
        val_images=len(val.labels),
        val_per_class=per_class,
        before=Scores.of(raw, test.labels),
        after=Scores.of(scaled, test.labels),
        val_nll_before=logits_nll(val.logits, val.labels),
        val_nll_after=logits_nll(val.logits, val.labels, temperature),
        reliability_before=reliability(raw, test.labels),
        reliability_after=reliability(scaled, test.labels),
        classes=len(analysis.classes),
    )


def save(calibration: Calibration, run_dir: str | os.PathLike) -> None:
    write_json_atomic(run_files(run_dir).calibration, calibration.to_dict())


def load(run_dir: str | os.PathLike) -> Calibration | None:
    """The stored calibration of a run, or None (not fitted yet, or from another version)."""
    return read_versioned(run_files(run_dir).calibration, CALIBRATION_VERSION, Calibration.from_dict)


def calibrate_run(run_dir: str | os.PathLike, refit: bool = False) -> Calibration:
    """The run's calibration: read it, or fit it from analysis.npz once and store it.

    Raises:
        AnalysisMissing: the run has no analysis arrays yet.
    """
    if not refit:
        stored = load(run_dir)
        if stored is not None:
            return stored
    calibration = calibrate(RunAnalysis.load(run_dir))
    save(calibration, run_dir)
    return calibration


def stored_temperature(run_dir: str | os.PathLike) -> float | None:
    """The run's fitted temperature, or None when it has none (predictors then show raw probabilities)."""
    data = read_json(run_files(run_dir).calibration)
    try:
        value = float(data["temperature"]) if data else None
    except (KeyError, TypeError, ValueError):
        return None
    return value if value and np.isfinite(value) and value > 0 else None


def run_temperature(run) -> float:
    """The temperature every predictor of a run divides its logits by: the fitted one, else 1.0 (raw softmax)."""
    return stored_temperature(run.directory) or 1.0


def rescale(probabilities: np.ndarray, temperature: float | None) -> np.ndarray:
    """softmax(log p / T), which equals softmax(z / T): log p = z - logsumexp(z), and a shift cancels."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not temperature or temperature == 1.0:
        return probabilities.astype(np.float32)
    return softmax(np.log(np.clip(probabilities, 1e-45, 1.0)), temperature)

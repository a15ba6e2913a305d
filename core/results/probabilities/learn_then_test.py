"""Learn then Test's arithmetic for answering only when sure (Angelopoulos, Bates, Candes, Jordan & Lei 2021): the
errors among the photos each confidence threshold answers, their binomial p-values, where the fixed sequence of
thresholds starts (decided on validation) and the most lenient threshold it rejects 'error above the level' at.
`core.results.probabilities.selective` fits, reports and stores a run's threshold with these."""

from __future__ import annotations

import math

import numpy as np

MAX_ERROR_RANGE = (0.01, 0.5)  # what Predict, the CLI and the server accept
# The levels Predict's and Evaluate's sliders offer: every whole percent of the range, the steps `nearest_level` takes,
# so the nearest level said where one has no threshold is always one the person can pick.
LEVELS = tuple(p / 100 for p in range(round(MAX_ERROR_RANGE[0] * 100), round(MAX_ERROR_RANGE[1] * 100) + 1))
DELTA = 0.1  # the promise holds with probability at least 1 - DELTA over the calibration photos drawn
# Thresholds tested: every thousandth, and finer near 1 where a confident model's answers gather.
GRID = np.unique(np.concatenate([np.round(np.arange(1000) / 1000, 3), 1.0 - 10.0 ** -np.arange(3.25, 6.01, 0.25)]))


def fewest_answers(max_error: float, delta: float = DELTA) -> int:
    """The fewest answered photos that can show an error rate of at most `max_error` (all of them right)."""
    return math.ceil(math.log(delta) / math.log(1.0 - max_error))


def p_values(confidence: np.ndarray, correct: np.ndarray, grid: np.ndarray, max_error: float) -> np.ndarray:
    """Per threshold: the binomial p-value of 'the error among photos answered at it is above `max_error`'
    (1 where none is answered): P(Binomial(n, max_error) <= errors)."""
    from scipy.stats import binom  # heavy: scipy

    answered, errors = counts(confidence, correct, grid)
    with np.errstate(invalid="ignore"):
        p = binom.cdf(errors, answered, max_error)
    return np.where(answered > 0, p, 1.0)


def counts(confidence: np.ndarray, correct: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(answered, errors) at each threshold of `grid`: photos whose confidence reaches it, and the wrong ones."""
    confidence = np.asarray(confidence, dtype=np.float64)
    order = np.argsort(confidence, kind="stable")
    sorted_conf = confidence[order]
    wrong = np.concatenate([[0], np.cumsum(~np.asarray(correct, dtype=bool)[order])])
    below = np.searchsorted(sorted_conf, grid, side="left")  # photos under each threshold
    answered = len(confidence) - below
    errors = wrong[-1] - wrong[below]
    return answered.astype(np.int64), errors.astype(np.int64)


def sequence_start(
    val_confidence: np.ndarray, val_correct: np.ndarray, calibration_size: int, max_error: float, grid: np.ndarray
) -> int:
    """The index in `grid` where the fixed sequence starts, from the validation split alone: the threshold whose
    p-value on validation, its counts scaled to the calibration half's size, is the smallest (the strictest of
    equals); 0 (answer every photo) without validation."""
    from scipy.stats import binom  # heavy: scipy

    val_confidence = np.asarray(val_confidence, dtype=np.float64)
    if not len(val_confidence):
        return 0
    answered, errors = counts(val_confidence, val_correct, grid)
    scale = calibration_size / len(val_confidence)
    n, k = np.round(answered * scale), np.round(errors * scale)
    with np.errstate(invalid="ignore"):
        p = np.where(n > 0, binom.cdf(k, n, max_error), 1.0)
    return int(np.flatnonzero(p == p.min())[-1])


def learn_then_test(
    confidence: np.ndarray,
    correct: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    max_error: float,
    delta: float = DELTA,
    grid: np.ndarray = GRID,
) -> float | None:
    """The most lenient threshold the fixed sequence rejects 'error above `max_error`' at, or None.

    `validation`: (confidence, correct) of the validation split, which decides where the sequence starts."""
    start = sequence_start(*validation, len(confidence), max_error, grid)
    tested = grid[: start + 1][::-1]  # strict to lenient
    p = p_values(confidence, correct, tested, max_error)
    failed = np.flatnonzero(p > delta)
    passed = len(tested) if not len(failed) else int(failed[0])
    return float(tested[passed - 1]) if passed else None


def nearest_level(
    confidence: np.ndarray,
    correct: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    max_error: float,
    delta: float = DELTA,
) -> tuple[float, float] | None:
    """(level, threshold): the lowest of LEVELS above `max_error` that some threshold promises, or None up to the
    range's top."""
    for level in LEVELS:
        if level <= max_error + 1e-9:
            continue
        found = learn_then_test(confidence, correct, validation, level, delta)
        if found is not None:
            return level, found
    return None

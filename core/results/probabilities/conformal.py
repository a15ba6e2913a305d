"""Prediction sets with a guarantee: split conformal prediction (APS and RAPS) on a run's calibrated probabilities.

Instead of one answer, a *set* of classes ("rose or tulip") built so that, over photos like the run's test
photos, sets hold the right class at least a chosen share of the time (the *level*, 1 - alpha). Split
conformal prediction (Vovk et al.; Angelopoulos & Bates 2021, "A gentle introduction") gives this from any
model: score how unlikely each calibration photo's true class looked, take the ceil((n + 1) * level)-th
smallest score as the threshold, and put in a new photo's set every class whose score would be below it.
The guarantee holds whatever the model, as long as the new photos are exchangeable with the calibration ones.

What the promise covers: it is *marginal*, over all photos like the test photos taken together. It does not say
that this photo's set is right 9 times in 10, nor that one-class sets are: on a weak model, sets of one class can be
right much less often than the level while larger sets make up for it. The held-out half is therefore also counted
by set size (`HeldOut.by_size`, and at every level in `by_level`), and the words under a set say how sets of its
size did. A threshold per class (below) makes the promise hold for each class; no split-conformal threshold can
make it hold for each set size (the size is what the threshold decides), so for sizes Flora reports, not promises.

The score is adaptive, so sets grow where the model is unsure:
  APS (Romano, Sesia & Candes 2020): the probability mass of the classes ranked above the class (the
      non-randomised score: the original draws a random share u of the class's own probability per photo,
      which makes coverage exact but gives two photos the model sees alike different sets; Flora does not draw,
      so the same photo always gets the same set and the guarantee holds, with coverage at or a little above
      the level);
  RAPS (Angelopoulos et al. 2021): APS plus lambda * (rank - k_reg)+, a penalty on classes ranked below
      k_reg, which keeps sets small when many classes share the tail; lambda and k_reg are chosen on the
      *validation* split (never on the photos the threshold or the report use).

A threshold per class (Mondrian conformal prediction, Vovk 2005) makes the promise hold for each class, not only
on average over them: a class the model finds hard gets larger sets instead of fewer right answers. Flora uses
it when most classes have enough calibration photos for the level (a class with too few shares the overall
threshold, and is named), and one threshold for all otherwise.

Flora fits the threshold on one half of the test split and reports on the other half (`held_out`): the
recounted coverage, the mean set size, coverage and size by class and by set size. The other half never chose
anything.
A random split is one draw: `spread` repeats the halving many times and says how far coverage moves.

The sets are a fixed function of a photo's probabilities: a photo gets the same set in the CLI, on the Predict
page and from the model server, and anyone can recount. Every set holds the top class (as RAPS's
`allow_zero_sets=False` does for an empty set, here for every set): the answer shown first is always in its set, no
set is empty, a higher level never drops a class, and coverage only grows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.fileio import read_json, read_versioned, write_json_atomic
from core.results.probabilities.calibration import stored_temperature
from core.results.probabilities.conformal_scores import (
    ConformalError,
    choose_regularisation,
    class_scores,
    class_thresholds,
    level_of,
    min_photos,
    set_masks,
    threshold,
    true_scores,
)
from core.results.probabilities.coverage import (
    SPREAD_SPLITS,
    ClassCoverage,
    HeldOut,
    Spread,
    by_size,
    coverage_spread,
    held_out_report,
)
from core.results.probabilities.promise import by_size_record, promise_words
from core.runs.analysis import AnalysisMissing, RunAnalysis
from core.runs.files import run_files

METHODS = ("raps", "aps")
DEFAULT_METHOD = "raps"
DEFAULT_LEVEL = 0.9
LEVEL_RANGE = (0.80, 0.99)  # what Predict's slider offers
HALF_SEED = 0
BY_CLASS_SHARE = 0.5  # thresholds per class when at least this share of classes has enough calibration photos
CONFORMAL_VERSION = 3  # 2: every set holds the top class; coverage and size at each level. 3: not randomised; by size
UNDER_MARGIN = 0.02  # a class whose coverage averaged over the halvings is this far below the level is under-covered


@dataclass
class ConformalSets:
    """A run's prediction sets: the score, its calibration scores (any level's threshold), the held-out report."""

    method: str
    level: float  # the level the report (and RAPS's regularisation) was made at
    lam: float
    k_reg: int
    how: str
    temperature: float
    views: int  # 1: the photo as it is; > 1: test-time augmentation's averaged views (core.results.probabilities.tta)
    calibration_scores: list[float]  # the true-class scores of the calibration half, sorted
    calibration_labels: list[int]  # their classes, in the same order
    by_class: bool  # a threshold per class (each class covered), else one for all photos
    classes: list[str]
    held_out: HeldOut
    spread: Spread | None
    photos: list[dict[str, Any]]  # the held-out half: path, label, set (class names), for anyone to recount
    version: int = CONFORMAL_VERSION
    # the held-out half at every whole percent Predict offers:
    # {"90": {"coverage": .., "mean_size": .., "by_size": {"1": [right, photos], ..}}, ...}
    by_level: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what this fit replaced when the run's probabilities changed (test-time augmentation adopted or dropped)
    previous: dict[str, Any] | None = None

    def under_covered(self) -> list[str]:
        """Classes the sets cover less than promised: their mean over the halvings is over UNDER_MARGIN below the
        level (one halving's figure moves by several points either way); without halvings, a one-sided binomial
        test on the held-out half (p < 0.05)."""
        if self.spread is not None and self.spread.class_coverage_mean:
            means = self.spread.class_coverage_mean
            return [c for c in self.classes if c in means and means[c] < self.level - UNDER_MARGIN]
        return self.held_out.under_covered

    def at_level(self, level: float) -> dict[str, float] | None:
        """The held-out half's coverage and mean set size at `level` (a whole percent from LEVEL_RANGE), or None."""
        return self.by_level.get(str(round(level * 100)))

    def size_record(self, size: int, level: float | None = None) -> tuple[int, int] | None:
        """(right, photos): how often the held-out half's sets of `size` classes at `level` held the right class;
        None when none had that size (or the level was not counted)."""
        level = self.level if level is None else level
        counted = self.at_level(level)
        sizes = counted.get("by_size") if counted else (self.held_out.by_size if level == self.level else None)
        record = (sizes or {}).get(str(int(size)))
        return (int(record[0]), int(record[1])) if record and record[1] else None

    def held_record(self, level: float | None = None) -> tuple[int, int, int]:
        """(right, photos, photos whose set holds every class) on the held-out half at `level` (default: the fitted
        one; a level that was not counted gives the fitted level's record)."""
        counted = self.at_level(self.level if level is None else level)
        sizes = counted.get("by_size") if counted else None
        return by_size_record(sizes or self.held_out.by_size, len(self.classes))

    def short_sizes(self, level: float | None = None) -> list[tuple[int, int, int]]:
        """(size, right, photos) for the set sizes whose held-out sets held the right class less often than
        `level`: where the promise, made over all photos, does not carry over to sets of that size."""
        level = self.level if level is None else level
        counted = self.at_level(level)
        sizes = counted.get("by_size") if counted else self.held_out.by_size
        out = []
        for size, (right, photos) in sorted((sizes or {}).items(), key=lambda item: int(item[0])):
            if photos and right / photos < level:
                out.append((int(size), int(right), int(photos)))
        return out

    def cut(self, level: float | None = None) -> float | np.ndarray:
        """The threshold at `level` (default: the fitted one): one number, or one per class."""
        level = self.level if level is None else level
        if not self.by_class:
            return threshold(np.asarray(self.calibration_scores), level)
        return class_thresholds(self.calibration_scores, self.calibration_labels, len(self.classes), level)[0]

    def few_photos(self, level: float | None = None) -> list[str]:
        """Classes with too few calibration photos for a threshold of their own at `level` (by class only)."""
        if not self.by_class:
            return []
        level = self.level if level is None else level
        few = class_thresholds(self.calibration_scores, self.calibration_labels, len(self.classes), level)[1]
        return [self.classes[c] for c in few]

    def sets(self, probabilities: np.ndarray, level: float | None = None) -> list[list[int]]:
        """The class indices in each row's set at `level`, most probable first."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim == 1:
            probabilities = probabilities[None]
        scores = class_scores(probabilities, lam=self.lam, k_reg=self.k_reg)
        masks = set_masks(scores, self.cut(level), probabilities)
        order = np.argsort(-probabilities, axis=1, kind="stable")
        return [[int(j) for j in row_order if mask[j]] for row_order, mask in zip(order, masks, strict=True)]

    def named_sets(self, probabilities: np.ndarray, level: float | None = None) -> list[list[str]]:
        return [[self.classes[j] for j in row] for row in self.sets(probabilities, level)]

    def summary(self) -> dict[str, Any]:
        """What `core calibrate --conformal --json` prints besides the photos."""
        held = self.held_out
        return {
            "method": self.method,
            "level": self.level,
            "alpha": round(1 - self.level, 6),
            "lambda": self.lam,
            "k_reg": self.k_reg,
            "how": self.how,
            "temperature": self.temperature,
            "views": self.views,
            "calibration_photos": len(self.calibration_scores),
            "by_class": self.by_class,
            "threshold": self.cut() if not self.by_class else dict(zip(self.classes, self.cut().tolist(), strict=True)),
            "classes_with_the_overall_threshold": self.few_photos(),
            "held_out": {
                "photos": held.photos,
                "coverage": held.coverage,
                "mean_set_size": held.mean_size,
                "single_class_sets": held.singletons,
                "all_class_sets": held.full,
                "by_size": held.by_size,
                "sizes_right_less_often_than_the_level": [
                    {"size": size, "right": right, "photos": photos} for size, right, photos in self.short_sizes()
                ],
                "under_covered_classes": self.under_covered(),
                "by_class": [asdict(c) for c in held.by_class],
            },
            "spread": asdict(self.spread) if self.spread else None,
            "by_level": self.by_level,
            "previous": self.previous,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConformalSets:
        data = dict(data)
        held = dict(data["held_out"])
        held["by_class"] = [ClassCoverage(**c) for c in held["by_class"]]
        data["held_out"] = HeldOut(**held)
        data["spread"] = Spread(**data["spread"]) if data.get("spread") else None
        return cls(**data)


def fit(
    test_probabilities: np.ndarray,
    test_labels: np.ndarray,
    test_paths: list[str],
    classes: list[str],
    val_probabilities: np.ndarray,
    val_labels: np.ndarray,
    level: float = DEFAULT_LEVEL,
    method: str = DEFAULT_METHOD,
    temperature: float = 1.0,
    views: int = 1,
    seed: int = HALF_SEED,
    spread_splits: int = SPREAD_SPLITS,
    by_class: bool | None = None,
) -> ConformalSets:
    """Choose the regularisation on validation, fit the threshold on one half of the test split, report on the other.

    `by_class`: a threshold per class (each class covered at the level, sets larger for hard classes); None
    (the default): per class when at least half the classes have enough calibration photos for the level (the
    others take the overall threshold), else one for all.

    Raises:
        ConformalError: the level is out of range, or the calibration half is too small for it.
    """
    if method not in METHODS:
        raise ConformalError(f"method must be one of {METHODS}. Received: method={method!r}")
    level = level_of(level)
    probabilities = np.asarray(test_probabilities, dtype=np.float64)
    labels = np.asarray(test_labels, dtype=np.int64)
    n = len(labels)
    if n // 2 < min_photos(level):
        raise ConformalError(
            f"{n} test photos are too few for sets at {level:.0%}: the calibration half needs at least "
            f"{min_photos(level)} photos (it has {n // 2}); pick a lower level or a larger test split"
        )
    lam, k_reg, how = choose_regularisation(val_probabilities, val_labels, level, method)
    scores = class_scores(probabilities, lam=lam, k_reg=k_reg)
    perm = np.random.default_rng(seed).permutation(n)
    calibrate, held = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    given = true_scores(scores[calibrate], labels[calibrate])
    order_of_scores = np.argsort(given, kind="stable")
    calibration_scores, calibration_labels = given[order_of_scores], labels[calibrate][order_of_scores]
    if by_class is None:  # per class when most classes can have their own (the rest share the overall one)
        counts = np.bincount(calibration_labels, minlength=len(classes))
        by_class = bool((counts >= min_photos(level)).mean() >= BY_CLASS_SHARE)
    if by_class:
        cut = class_thresholds(calibration_scores, calibration_labels, len(classes), level)[0]
    else:
        cut = threshold(calibration_scores, level)
    masks = set_masks(scores[held], cut, probabilities[held])
    by_level = {}
    low, high = (round(x * 100) for x in LEVEL_RANGE)
    for percent in range(low, high + 1):
        if by_class:
            other = class_thresholds(calibration_scores, calibration_labels, len(classes), percent / 100)[0]
        else:
            other = threshold(calibration_scores, percent / 100)
        inside = set_masks(scores[held], other, probabilities[held])
        by_level[str(percent)] = {
            "coverage": float(inside[np.arange(len(held)), labels[held]].mean()),
            "mean_size": float(inside.sum(axis=1).mean()),
            "by_size": by_size(inside, labels[held]),
        }
    photos = []
    for i, mask in zip(held, masks, strict=True):
        members = np.flatnonzero(mask)
        members = members[np.argsort(-probabilities[i, members], kind="stable")]  # most probable first
        photos.append({"path": test_paths[i], "label": classes[labels[i]], "set": [classes[j] for j in members]})
    return ConformalSets(
        method=method,
        level=level,
        lam=lam,
        k_reg=k_reg,
        how=how,
        temperature=float(temperature),
        views=int(views),
        calibration_scores=[float(s) for s in calibration_scores],
        calibration_labels=[int(c) for c in calibration_labels],
        by_class=by_class,
        classes=list(classes),
        held_out=held_out_report(masks, labels[held], classes, level),
        spread=coverage_spread(scores, probabilities, labels, classes, level, spread_splits, by_class=by_class)
        if spread_splits
        else None,
        photos=photos,
        by_level=by_level,
    )


def save(sets: ConformalSets, run_dir: str | os.PathLike) -> None:
    write_json_atomic(run_files(run_dir).conformal, sets.to_dict())


def load(run_dir: str | os.PathLike) -> ConformalSets | None:
    """The run's stored prediction sets, or None (never fitted, or from another version)."""
    return read_versioned(run_files(run_dir).conformal, CONFORMAL_VERSION, ConformalSets.from_dict)


def fit_run(
    run_dir: str | os.PathLike,
    level: float = DEFAULT_LEVEL,
    method: str = DEFAULT_METHOD,
    by_class: bool | None = None,
    previous: dict[str, Any] | None = None,
) -> ConformalSets:
    """Fit and store a run's sets from its analysis arrays, on the probabilities its predictors give.

    Raises:
        AnalysisMissing: the run has no analysis arrays yet.
        ConformalError: too few test photos for the level.
    """
    from core.results.probabilities.tta import served_probabilities  # heavy: pandas (tta's McNemar test)

    analysis = RunAnalysis.load(run_dir)
    val, test, views = served_probabilities(run_dir, analysis)
    fitted = fit(
        test,
        analysis.test.labels,
        analysis.test.paths,
        analysis.classes,
        val,
        analysis.val.labels,
        level,
        method,
        temperature=stored_temperature(run_dir) or 1.0,
        views=views,
        by_class=by_class,
    )
    fitted.previous = previous
    save(fitted, run_dir)
    return fitted


def run_sets(run_dir: str | os.PathLike) -> ConformalSets | None:
    """The run's sets: stored ones (refitted at their level when the run's views changed since), else fitted now
    at the default level; None when the run has no analysis arrays or too few test photos."""
    from core.results.probabilities.tta import used_by  # heavy: pandas (tta's McNemar test)

    stored = load(run_dir)
    report = used_by(run_dir)
    views = len(report.views) if report is not None else 1
    if stored is not None and stored.views == views:
        return stored
    try:
        older = read_json(run_files(run_dir).conformal) if stored is None else None
        if isinstance(older, dict) and older.get("method") in METHODS and isinstance(older.get("level"), float):
            # sets of an earlier version (randomised): fitted again the same way, at the level they were asked for
            return fit_run(run_dir, older["level"], older["method"], older.get("by_class"))
        if stored is not None:
            before = {
                "views": stored.views,
                "coverage": stored.held_out.coverage,
                "mean_size": stored.held_out.mean_size,
            }
            return fit_run(run_dir, stored.level, stored.method, stored.by_class, previous=before)
        return fit_run(run_dir)
    except (AnalysisMissing, ConformalError):
        return None


SIZE_WORDS = {1: "one-class", 2: "two-class", 3: "three-class"}


def size_words(size: int) -> str:
    return SIZE_WORDS.get(size, f"{size}-class")


# Beside a prediction set for a photo that looks like none of the classes: the set is shown, its promise does not
# reach it (Predict, `core predict`, the server's `prediction_set.note`).
FOREIGN_SET_NOTE = (
    "not to be trusted: the photo looks like none of the classes, and the set's promise covers photos like the "
    "test photos, not this one"
)


def set_words(
    names: list[str],
    total: int,
    level: float,
    record: tuple[int, int] | None = None,
    by_class: bool = False,
    foreign: bool = False,
    shared: Sequence[str] = (),
) -> str:
    """The set in plain words (the caller escapes the names): 'rose or tulip', what the promise covers (all photos,
    not this one), and, with `record` (right, photos: how the run's held-out sets of this size did at this level,
    ConformalSets.size_record), how often sets of this size were right, said plainly when less often than the level.
    `foreign`: the photo looks like none of the classes: the set, marked not to be trusted, and no promise.
    `shared`: the classes without a threshold of their own (ConformalSets.few_photos), for whom the promise is not
    made class by class.
    """
    size = len(names)
    listed = names[0] if size == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"
    if foreign:
        return f"{listed}: {FOREIGN_SET_NOTE}."
    if size == total:
        what = (
            f"any of the {total} classes: at {level:.0%} the model cannot narrow this photo down "
            "(it is unsure, or the photo is unlike what it was trained on)"
        )
    elif size == 1:
        what = f"{listed}, one class at this level"
    elif size > max(3, total // 2):
        what = f"{listed}: a wide set ({size} of {total} classes), the model is unsure about this photo"
    else:
        what = listed
    said = promise_words(level, by_class, shared)
    promise = said[0].upper() + said[1:]
    if record is None:
        return f"{what}. {promise}."
    right, photos = record
    sized = f"{size_words(size)} sets" if size < total else "sets of every class"
    if right / photos < level:
        return (
            f"{what}. {promise}. On this run's held-out test photos, {sized} were right only {right} of {photos} "
            f"times ({right / photos:.0%}), less often than that: read this set as the model's best guess, not a "
            "sure answer."
        )
    return f"{what}. {promise}; on this run's held-out test photos, {sized} were right {right} of {photos} times."

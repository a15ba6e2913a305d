"""Is multi-label run B really better than run A? Paired comparison of their AP on the very same test photos.

Runs are comparable when they share the labels (same names, same order) and test photos; they are compared on the
test photos they all have with the same label list (`compare.common_photos`' rule), the checks and notes in words
are compare.py's. Per run: AP of each label and their macro mean (mAP, over the labels at least one of these photos
has: a label with no positive test photo has no AP). Per later run against the first:

- the difference of each label's AP and of the mAP, each with a paired bootstrap 95% interval: one resample draws
  photos with replacement (seeded) and both runs are scored on those very photos, so what the photos share (easy for
  both, hard for both) cancels in the difference;
- a paired permutation test of the mAP difference (two-sided): under "no real difference" the two runs' answers for a
  photo are exchangeable, so each photo's pair of score rows is swapped or not at random and the difference computed
  again; p is the share of swaps whose difference is at least as far from 0 as the one seen (every swap pattern when
  there are few photos, else `PERMUTATIONS` drawn). AP reads the order of the scores only, so each run's scores are
  turned into ranks among its own (per label, ties kept) before swapping: two runs' scales never mix.

A difference counts as shown only when the interval leaves out 0 and p < 0.05: with few test photos or a weak model
the words say "no real difference shown", whatever the sign of the figure.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.results.evaluation import compare as single
from core.results.evaluation import multilabel_bootstrap as bootstrap
from core.results.evaluation import multilabel_compare_words as words
from core.results.evaluation.compare import NotComparable
from core.results.evaluation.multilabel import MultilabelEvaluation
from core.runs.files import run_files
from core.settings.config import TrainConfig, canonical_json

PERMUTATIONS = 2000  # swap patterns drawn when there are more than 2^11 of them
SHOWN_P = 0.05
TOLERANCE = 1e-12  # a permuted difference this close to the one seen counts as as far (float sums in another order)


@dataclass
class _Photos:
    paths: list[str]


@dataclass
class _Split:
    """What compare.py's checks and notes read of a run: its labels, its test photos, the hash of its split."""

    classes: list[str]
    test: _Photos
    split_hash: str | None


@dataclass
class MultilabelSide:
    """One multi-label run's side of a comparison: its test scores and truth, and how it was trained when known."""

    run_id: str
    evaluation: MultilabelEvaluation
    config: TrainConfig | None = None
    dataset: str | None = None
    corrections: str | None = None
    split_hash: str | None = None

    @property
    def analysis(self) -> _Split:
        return _Split(self.evaluation.classes, _Photos(self.evaluation.paths), self.split_hash)


def check_kinds(runs) -> None:
    """Raise NotComparable when single-label and multi-label runs are mixed (`runs`: Run records)."""
    kinds = {bool(run.multilabel) for run in runs}
    if len(kinds) > 1:
        multi = next(run for run in runs if run.multilabel)
        plain = next(run for run in runs if not run.multilabel)
        raise NotComparable(
            f"run {multi.run_id[:6]} is multi-label (a list of labels per photo, judged by AP per label) and run "
            f"{plain.run_id[:6]} single-label (one class per photo, judged by accuracy): they answer different "
            "questions, so their figures cannot be paired. Compare multi-label runs with each other, single-label "
            "runs with each other"
        )


def load_side(run) -> MultilabelSide:
    """A multi-label run's side from its stored evaluation (or one made from its arrays and thresholds).

    Raises:
        MultilabelEvaluationMissing: the run keeps neither.
    """
    evaluation = MultilabelEvaluation.of_run(run.directory)
    corrections = canonical_json(run.corrections) if run.corrections else ""
    return MultilabelSide(
        run.run_id, evaluation, run.train_config, run.dataset_fingerprint, corrections, _split_hash(run.directory)
    )


def _split_hash(run_dir) -> str | None:
    """The split's hash stored in the run's analysis arrays (read alone, not the features), None without them."""
    path = run_files(run_dir).analysis
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return str(data["split_hash"]) if "split_hash" in data.files else None


def common_rows(sides: list[MultilabelSide]) -> tuple[list[str], dict[str, Any]]:
    """The test photos every run has with the same label list, in the first run's order, and what was left out."""
    rows = [
        {p: tuple(row) for p, row in zip(s.evaluation.paths, s.evaluation.targets.tolist(), strict=True)} for s in sides
    ]
    shared = [p for p in sides[0].evaluation.paths if all(p in other for other in rows[1:])]
    same = [p for p in shared if all(other[p] == rows[0][p] for other in rows[1:])]
    left_out = {
        "only_in": {s.run_id: len(s.evaluation.paths) - len(shared) for s in sides},
        "relabelled": len(shared) - len(same),
    }
    return same, left_out


def restricted(evaluation: MultilabelEvaluation, paths: list[str]) -> MultilabelEvaluation:
    """The evaluation on `paths` alone, in that order (a new one: a cached evaluation is never changed)."""
    where = {path: i for i, path in enumerate(evaluation.paths)}
    order = np.array([where[p] for p in paths], dtype=np.int64)
    positions = None if evaluation.cache_positions is None else evaluation.cache_positions[order]
    return MultilabelEvaluation(
        evaluation.probabilities[order],
        evaluation.targets[order],
        list(evaluation.classes),
        list(paths),
        evaluation.thresholds,
        positions,
    )


# ----------------------------------------------------------------------------- the figures


def ranks(scores: np.ndarray) -> np.ndarray:
    """Each column's scores as twice their average rank among the column's, over the rows: whole numbers (int32,
    which sort fast), AP unchanged (the same order, the same ties), and the same scale for every run."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    if not scores.size:
        return scores.astype(np.int32)
    return np.rint(2 * rankdata(scores, axis=0, method="average")).astype(np.int32)


def row_average_precisions(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AP of one label (0/1 `truth`, N photos) under each row of `scores` (P, N): scikit-learn's, ties one
    threshold; NaN without a positive."""
    truth = np.asarray(truth) > 0
    scores = np.atleast_2d(np.asarray(scores))
    positives = int(truth.sum())
    if positives == 0:
        return np.full(len(scores), np.nan)
    order = np.argsort(-scores, axis=1)  # the order within a tie group does not matter: counted at its end
    ranked = np.take_along_axis(scores, order, axis=1)
    hits = truth[order]
    found = np.cumsum(hits, axis=1)
    ends = np.ones(ranked.shape, dtype=bool)  # the last photo of each tie group: one threshold
    ends[:, :-1] = ranked[:, :-1] != ranked[:, 1:]
    at_ends = np.where(ends, found, 0)
    before = np.zeros_like(at_ends)  # photos found up to the previous tie group's end
    before[:, 1:] = np.maximum.accumulate(at_ends, axis=1)[:, :-1]
    precision = found / np.arange(1, scores.shape[1] + 1)
    return np.sum(np.where(ends, (found - before) * precision, 0.0), axis=1) / positives


def _mean_over_labels(per_label: np.ndarray) -> np.ndarray:
    """Row-wise mean over the labels with an AP (NaN where none has one)."""
    tested = ~np.isnan(per_label)
    counts = tested.sum(axis=1)
    sums = np.where(tested, per_label, 0.0).sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(per_label), np.nan), where=counts > 0)


def permutation_test(
    targets: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0
) -> dict[str, Any]:
    """Two-sided paired permutation test of mAP(B) - mAP(A) over the photos: each photo's pair of rank rows swapped
    or not. Every swap pattern when 2^N <= `permutations` (exact), else `permutations` drawn with `seed` and the
    observed pattern counted in (p never 0). Returns {"p_value", "difference", "permutations", "exact"}."""
    truth = np.asarray(targets) > 0
    n, c = truth.shape
    tested = np.flatnonzero(truth.any(axis=0))
    if n == 0 or not len(tested) or n * c > bootstrap.MAX_CELLS:  # none on a split too large (said so)
        return {"p_value": None, "difference": None, "permutations": 0, "exact": False}
    ra, rb = ranks(scores_a), ranks(scores_b)
    exact = n < 63 and 2**n <= permutations
    permutations = bootstrap.resamples_for(n, c, permutations)  # fewer on a large split, as the bootstrap's
    if exact:
        swaps = np.array(list(itertools.product((False, True), repeat=n)), dtype=bool)
    else:
        rng = np.random.default_rng(seed)
        swaps = np.vstack([np.zeros((1, n), dtype=bool), rng.random((permutations, n)) < 0.5])
    differences = np.zeros(len(swaps))
    for j in tested:
        a = np.where(swaps, rb[:, j], ra[:, j])
        b = np.where(swaps, ra[:, j], rb[:, j])
        differences += row_average_precisions(truth[:, j], b) - row_average_precisions(truth[:, j], a)
    differences /= len(tested)
    seen = differences[0]  # the first pattern swaps nothing (exact: all False first; drawn: put first)
    far = np.abs(differences) >= abs(seen) - TOLERANCE
    return {
        "p_value": float(np.mean(far)),
        "difference": float(seen),
        "permutations": len(swaps) - (0 if exact else 1),
        "exact": bool(exact),
    }


def paired_bootstrap(
    targets: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, resamples: int = bootstrap.RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """95% intervals of AP(B) - AP(A) per label and of the mAP difference, both runs scored on the same resampled
    photos (multinomial counts, as multilabel_bootstrap draws them). A resample leaving a label no positive leaves
    that label out of its mAP, for both runs alike."""
    truth = np.asarray(targets) > 0
    n, c = truth.shape
    if not n or n * c > bootstrap.MAX_CELLS:
        return {"resamples": 0, "seed": seed, "map": (np.nan, np.nan), "ap": np.full((c, 2), np.nan)}
    resamples = bootstrap.resamples_for(n, c, resamples)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    ap_a = bootstrap.weighted_average_precisions(truth, scores_a, weights)
    ap_b = bootstrap.weighted_average_precisions(truth, scores_b, weights)
    differences = ap_b - ap_a
    return {
        "resamples": resamples,
        "seed": seed,
        "map": bootstrap._percentiles(_mean_over_labels(ap_b) - _mean_over_labels(ap_a)),
        "ap": bootstrap._columns(differences),
    }


def clear_of_zero(interval) -> bool:
    """Whether a 95% interval of a difference leaves out 0 (None ends: no interval, so no)."""
    low, high = interval
    return low is not None and high is not None and (low > 0 or high < 0)


def shown(interval, p_value: float | None) -> bool:
    """The mAP difference counts as shown when its 95% interval leaves out 0 and its p-value is under SHOWN_P."""
    return clear_of_zero(interval) and p_value is not None and p_value < SHOWN_P


def _number(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def _pair(values) -> list[float | None]:
    return [_number(float(v)) for v in values]


def run_figures(evaluation: MultilabelEvaluation) -> dict[str, Any]:
    """One run's figures on the compared photos: AP per label, macro and micro mAP, what a random scorer gets."""
    ap = evaluation.average_precisions()
    return {
        "map": evaluation.mean_average_precision(),
        "map_micro": evaluation.micro_average_precision(),
        "random_map": evaluation.random_map(),
        "ap": {name: _number(value) for name, value in zip(evaluation.classes, ap, strict=True)},
        "test_images": len(evaluation.paths),
    }


def pair_figures(
    a: MultilabelEvaluation, b: MultilabelEvaluation, seed: int = 0, resamples: int = bootstrap.RESAMPLES
) -> dict[str, Any]:
    """B against A on the same photos: the mAP difference with its interval and p-value, and per label (worst first:
    where B loses most) each AP, the difference and its interval."""
    targets = a.targets
    ap_a, ap_b = a.average_precisions(), b.average_precisions()
    spread = paired_bootstrap(targets, a.probabilities, b.probabilities, resamples, seed)
    test = permutation_test(targets, a.probabilities, b.probabilities, seed=seed)
    map_a, map_b = a.mean_average_precision(), b.mean_average_precision()
    difference = None if map_a is None or map_b is None else map_b - map_a
    per_label = []
    positives = a.truth.sum(axis=0)
    for j, name in enumerate(a.classes):
        delta = ap_b[j] - ap_a[j]
        per_label.append(
            {
                "label": name,
                "positives": int(positives[j]),
                "ap_a": _number(ap_a[j]),
                "ap_b": _number(ap_b[j]),
                "difference": _number(delta),
                "interval": _pair(spread["ap"][j]),
                "clear_of_zero": clear_of_zero(_pair(spread["ap"][j])),
            }
        )
    per_label.sort(key=lambda row: (row["difference"] is None, row["difference"] or 0.0, row["label"]))
    return {
        "map_a": map_a,
        "map_b": map_b,
        "map_difference": difference,
        "map_interval": _pair(spread["map"]),
        "p_value": test["p_value"],
        "permutations": test["permutations"],
        "exact": test["exact"],
        "bootstrap": {"resamples": spread["resamples"], "seed": seed, "level": bootstrap.LEVEL},
        "shown": shown(_pair(spread["map"]), test["p_value"]),
        # every label's photos in the same order, ties alike: every AP and the mAP are then the same, and so is
        # every resample's (two trainings alike differ in float32's last digits, 2e-6 in a walk, never in order)
        "identical": bool(np.array_equal(ranks(a.probabilities), ranks(b.probabilities))),
        "largest_score_difference": float(np.abs(a.probabilities - b.probabilities).max(initial=0.0)),
        "per_label": per_label,
    }


def compare(sides: list[MultilabelSide], seed: int = 0) -> dict[str, Any]:
    """Everything `python -m core compare --json` prints for multi-label runs: per-run AP and mAP on the shared
    photos, and each later run against the first (`pair_figures`, its verdict in words).

    Raises:
        NotComparable: other labels, no test photo in common (compare.check_comparable's reasons).
    """
    single.check_comparable(sides, noun="labels", figures="AP")
    paths, left_out = common_rows(sides)
    if not paths:
        raise NotComparable("no test photo has the same label list in every run (label corrections differ)")
    split_differs = single.split_note(
        sides, len(paths), figures="mAP, AP per label, the permutation test", own="test mAP is"
    )
    same_split = single.same_split_note(sides) if all(s.split_hash for s in sides) else None
    evaluations = [restricted(s.evaluation, paths) for s in sides]
    first = evaluations[0]
    tested = first.truth.any(axis=0)
    out: dict[str, Any] = {
        "task": "multilabel",
        "runs": {s.run_id: run_figures(e) for s, e in zip(sides, evaluations, strict=True)},
        "labels": list(first.classes),
        "labels_without_positive": [name for name, t in zip(first.classes, tested, strict=True) if not t],
        "test_images": len(paths),
        "left_out": left_out,
        "difference": None if split_differs else single.difference_note(left_out),
        "split_differs": split_differs,
        "same_split": same_split,
        "pairs": [],
    }
    for side, evaluation in zip(sides[1:], evaluations[1:], strict=True):
        pair = {"a": sides[0].run_id, "b": side.run_id, **pair_figures(first, evaluation, seed)}
        pair["verdict"] = words.verdict(pair, len(paths), sides[0].run_id[:6], side.run_id[:6])
        out["pairs"].append(pair)
    out["scope"] = words.scope(out)
    return out

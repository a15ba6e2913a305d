"""What fixing labels is worth, before the long run: the change in validation accuracy and macro F1 if a set of
label corrections were applied, estimated in seconds by retraining the head on the run's stored features.

How: the training photos' pooled features (train_features.npz) and the validation photos' (analysis.npz) are
reduced together (`out_of_sample.reduce`, which looks at no label); a head (`feature_head.fit_head`) is fitted on
the training labels as the run had them and, beside it, on the same rows with the corrections applied (a relabelled
photo takes its new label, an excluded one leaves). Each of SEEDS pairs is fitted on one bootstrap resample of the
training rows, the same resample for both arms; both heads are scored on the validation photos, and on
bootstrap resamples of them, the same resample for both arms. The estimate is the mean change over the pairs on
the whole validation split; the 95% interval holds 95% of the paired changes over (pair, resample): it carries
both the training photos' and the validation photos' luck.

What it cannot see, and says: a fine-tuned backbone (the features are the run's, frozen), augmentation, the
network's own head and schedule; the test split (never looked at: the real run's test change is the check). A
correction of a validation photo changes what is measured, not what is learnt: the estimate is then given on the
labels as they are and, with the person's corrected labels taken as the truth, on the corrected ones. A correction
of a test photo changes nothing here.

The suspects (every one, or the top N) are taken among the training photos only: relabelling a validation suspect
to the model's own guess would grade the model against itself. A suspect the person marked Fine is left out, and
one they marked (relabel, exclude) takes their mark instead of the suggestion.

  models/<run_id>/fix_worth.json   {"version": 1, "estimates": {<corrections digest>: estimate}}

Keyed by `core.data.corrections.digest`, the hash a corrected run's config carries, so Compare finds the estimate
made for exactly the corrections a later run applied (core.results.fix_worth_held).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.data.corrections import EXCLUDE, FINE, RELABEL, Corrections, digest, resolve
from core.errors import InvalidInput
from core.fileio import read_json, write_json_atomic
from core.results.feature_head import HEAD_C, fit_head
from core.results.labels import issues as label_issues
from core.results.labels.out_of_sample import dimensions, reduce
from core.results.train_features import training_features
from core.runs.analysis import RunAnalysis
from core.runs.files import run_files
from core.runs.record import Run
from core.sharing.people import LOCAL_USER

FIX_WORTH_VERSION = 1
SEEDS = 8  # paired head fits (one bootstrap resample of the training rows each)
RESAMPLES = 2000  # validation resamples over all pairs
RESAMPLE_CHUNK = 100  # validation resamples scored at once
KEPT_ESTIMATES = 30  # per run, the newest kept
MARKED, SUSPECTS, TOP, GIVEN = "marked", "suspects", "top", "given"
CHOICES = (MARKED, SUSPECTS, TOP)
AS_LABELLED, CORRECTED = "as_labelled", "corrected"


class FixWorthError(InvalidInput):
    """Nothing to estimate, or what it needs is missing; the message says what to do."""


# --- the estimate on arrays -------------------------------------------------------------------------------------


def resampled_scores(
    weights: np.ndarray, labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro F1 of `predictions` under each row of `weights` (m, n): how often each validation photo
    is drawn in a resample. Macro F1 averages the classes present in the resample, as `accuracy_and_macro_f1`."""
    from scipy import sparse  # heavy: scipy

    n = len(labels)
    rows = np.arange(n)
    truth = sparse.csr_matrix((np.ones(n), (rows, labels)), shape=(n, num_classes))
    said = sparse.csr_matrix((np.ones(n), (rows, predictions)), shape=(n, num_classes))
    right = sparse.csr_matrix(((predictions == labels).astype(float), (rows, labels)), shape=(n, num_classes))
    w = np.asarray(weights, dtype=np.float64)
    t, p, tp = (np.asarray((m.T @ w.T).T) for m in (truth, said, right))
    present = t > 0
    denominator = t + p
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    macro = (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    accuracy = tp.sum(axis=1) / np.maximum(w.sum(axis=1), 1)
    return accuracy, macro


@dataclass
class Change:
    """One figure's change (after - before), as fractions: the estimate and its 95% interval."""

    before: float  # the head without the corrections, on the whole validation split (mean over the pairs)
    after: float
    change: float
    low: float
    high: float

    @classmethod
    def of(cls, values: dict[str, Any]) -> Change:
        return cls(**{k: float(values[k]) for k in ("before", "after", "change", "low", "high")})


def paired_change(
    x_train: np.ndarray,
    y_before: np.ndarray,
    y_after: np.ndarray,
    keep_after: np.ndarray,
    x_val: np.ndarray,
    val_labels: dict[str, tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    seeds: int = SEEDS,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, Change]]:
    """The change in validation accuracy and macro F1 between heads fitted on (`x_train`, `y_before`) and on
    (`x_train[keep_after]`, `y_after[keep_after]`), paired over `seeds` bootstrap resamples of the training rows.

    Args:
        val_labels: {name: (labels, rows of x_val)}: each way of scoring the validation photos (as labelled,
            corrected); both heads are scored on the same rows and labels.

    Returns:
        {name: {"accuracy": Change, "macro_f1": Change}}.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1. Received: seeds={seeds}")
    rng = np.random.default_rng(seed)
    n = len(y_before)
    keep_after = np.asarray(keep_after, dtype=bool)
    from threadpoolctl import threadpool_limits  # heavy: scikit-learn's

    predictions = []
    # One BLAS thread: these fits are small, and threads that spin-wait for a core lose tenfold on a busy machine
    # (an app that trains a run while its user explores: a fit measured 25.6 s with two threads, 1.4 s with one).
    with threadpool_limits(1):
        for s in range(seeds):
            rows = rng.integers(0, n, n)  # one bootstrap resample, the same for both arms
            kept = rows[keep_after[rows]]
            before = fit_head(x_train[rows], y_before[rows], num_classes, HEAD_C, seed=s)
            after = fit_head(x_train[kept], y_after[kept], num_classes, HEAD_C, seed=s)
            predictions.append((before.predict(x_val), after.predict(x_val)))
    per_seed = max(1, -(-resamples // seeds))
    out = {}
    for name, (labels, val_rows) in val_labels.items():
        labels, val_rows = np.asarray(labels, dtype=np.int64), np.asarray(val_rows, dtype=np.int64)
        whole = np.ones((1, len(labels)))
        figures = {"accuracy": ([], [], []), "macro_f1": ([], [], [])}  # (before, after, resampled changes)
        for before, after in predictions:
            b, a = before[val_rows], after[val_rows]
            for i, (score_b, score_a) in enumerate(
                zip(
                    resampled_scores(whole, labels, b, num_classes),
                    resampled_scores(whole, labels, a, num_classes),
                    strict=True,
                )
            ):
                key = ("accuracy", "macro_f1")[i]
                figures[key][0].append(float(score_b[0]))
                figures[key][1].append(float(score_a[0]))
            for start in range(0, per_seed, RESAMPLE_CHUNK):
                m = min(RESAMPLE_CHUNK, per_seed - start)
                weights = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=m)
                (acc_b, f1_b), (acc_a, f1_a) = (resampled_scores(weights, labels, p, num_classes) for p in (b, a))
                figures["accuracy"][2].extend(acc_a - acc_b)
                figures["macro_f1"][2].extend(f1_a - f1_b)
        out[name] = {
            key: Change(
                before=float(np.mean(b)),
                after=float(np.mean(a)),
                change=float(np.mean(a) - np.mean(b)),
                low=float(np.percentile(changes, 2.5)),
                high=float(np.percentile(changes, 97.5)),
            )
            for key, (b, a, changes) in figures.items()
        }
    return out


# --- which corrections ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """Which corrections to estimate: a person's marks, every suspect among the training photos relabelled to its
    suggestion (or as the person marked it; Fine ones left out), the top N of those, or a set given whole (`given`:
    what `train --corrections` names, e.g. the ones a run applied)."""

    kind: str = MARKED
    top: int = 0
    given: str = ""

    def words(self, count: int) -> str:
        """'your 12 marks', 'every training suspect (40)', 'the top 50 training suspects', 'these 7 corrections'."""
        s = "" if count == 1 else "s"
        if self.kind == MARKED:
            return f"your {count} mark{s}"
        if self.kind == SUSPECTS:
            return f"every training suspect ({count})"
        if self.kind == TOP:
            return f"the top {count} training suspect{s}"
        return f"these {count} correction{s}"


def suspects_as_corrections(
    review: label_issues.LabelReview, top: int = 0, marks: dict | None = None, depth: int | None = None
) -> dict[str, dict[str, Any]]:
    """The suspects among the training photos (validation and test ones change the measure, not the model), most
    suspicious first, each relabelled to its suggestion; `top`: only the first that many (0: all); `marks`: the
    person's (`Corrections.entries`): a suspect marked Fine is left out, one marked relabel or exclude takes that
    mark; `depth`: only among the review's first `depth` suspects (what its self-test supports; None: all)."""
    marks = marks or {}
    out: dict[str, dict[str, Any]] = {}
    for issue in review.issues[:depth] if depth is not None else review.issues:
        mark = marks.get(issue.path) or {}
        if issue.split != "train" or mark.get("action") == FINE:
            continue  # a Fine one is reviewed: the label is right
        if mark.get("action") == EXCLUDE or (mark.get("action") == RELABEL and mark.get("to")):
            out[issue.path] = {k: v for k, v in mark.items() if k in ("action", "to")}
        else:
            out[issue.path] = {"action": RELABEL, "to": issue.suggested}
        if top and len(out) >= top:
            break
    return out


def chosen_corrections(
    run: Run, data_root: str | os.PathLike, choice: Choice, person: str | None = None, store=None
) -> dict[str, dict[str, Any]]:
    """The corrections `choice` names for `run` ({path: {"action", "to"?}}, as a run records them); `person`:
    whose marks (the run applies its owner's; the CLI's are "local", as `train --corrections kept`), which the
    suspects also follow (Fine: left out; relabel or exclude: that mark, not the suggestion).

    Raises:
        FixWorthError: no marks, no suspects, no label review to take them from, or a given set that is empty.
    """
    if choice.kind == GIVEN:
        found = resolve(choice.given, data_root, run.dataset_path, store, person or LOCAL_USER)
        if not found:
            raise FixWorthError(f"{choice.given!r} names no label corrections that change training")
        return found
    if choice.kind == MARKED:
        found = Corrections.load(data_root, run.dataset_path, person or LOCAL_USER).effective()
        if not found:
            raise FixWorthError(
                "no label corrections are marked for this dataset (a relabel or an exclude; 'fine' changes nothing): "
                "mark some in Explore's suspected label errors, or estimate the suspects instead"
            )
        return found
    if choice.kind in (SUSPECTS, TOP):
        if choice.kind == TOP and choice.top < 1:
            raise FixWorthError(f"the top N needs N of at least 1. Received: {choice.top}")
        review = label_issues.load(run.directory)
        if review is None:
            raise FixWorthError(
                f"run {run.run_id} has no suspected label errors yet: find them first "
                f"(`python -m core label-issues {run.run_id}`, or Explore's 'Suspected label errors')"
            )
        marks = Corrections.load(data_root, run.dataset_path, person or LOCAL_USER).entries
        found = suspects_as_corrections(review, choice.top if choice.kind == TOP else 0, marks)
        if not found:
            raise FixWorthError(
                f"run {run.run_id} has no suspected label errors among its training photos that are not marked "
                "Fine (suspects among validation and test photos change what is measured, not what is learnt)"
            )
        return found
    raise FixWorthError(f"choice must be one of {CHOICES} or a given set. Received: {choice.kind!r}")


# --- the estimate of one run ------------------------------------------------------------------------------------


@dataclass
class Estimate:
    """What fixing a set of corrections is estimated to change, for one run, as stored in fix_worth.json."""

    run_id: str
    digest: str  # core.data.corrections.digest of the corrections: what a corrected run's config hashes
    corrections: int
    choice: dict[str, Any]  # Choice's fields
    touched: dict[str, int]  # train_relabelled, train_excluded, val_relabelled, val_excluded, test, unchanged, missing
    results: dict[str, dict[str, Change]]  # AS_LABELLED, and CORRECTED when validation photos are corrected
    seeds: int
    resamples: int
    train_photos: int
    val_photos: int
    seconds: float
    made_at: float = 0.0
    version: int = FIX_WORTH_VERSION

    @property
    def words(self) -> str:
        return Choice(**self.choice).words(self.corrections)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        values = dict(data)
        values["results"] = {
            name: {key: Change.of(change) for key, change in figures.items()}
            for name, figures in data["results"].items()
        }
        return cls(**values)


def _apply(
    corrections: dict[str, dict[str, Any]],
    classes: list[str],
    splits: dict[str, tuple[list[str], np.ndarray]],
    test_paths: list[str],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """Each split's labels and kept rows with `corrections` applied, and what they touched."""
    fixed = {
        name: (np.array(labels, copy=True), np.ones(len(labels), dtype=bool)) for name, (_, labels) in splits.items()
    }
    where = {path: (name, i) for name, (paths, _) in splits.items() for i, path in enumerate(paths)}
    tests = set(test_paths)
    touched = dict.fromkeys(
        ("train_relabelled", "train_excluded", "val_relabelled", "val_excluded", "test", "unchanged", "missing"), 0
    )
    for path, entry in corrections.items():
        if path not in where:
            touched["test" if path in tests else "missing"] += 1
            continue
        name, i = where[path]
        labels, keep = fixed[name]
        if entry.get("action") == EXCLUDE:
            keep[i] = False
            touched[f"{name}_excluded"] += 1
        elif entry.get("action") == RELABEL and entry.get("to") in classes:
            new = classes.index(entry["to"])
            if labels[i] == new:
                touched["unchanged"] += 1
            else:
                labels[i] = new
                touched[f"{name}_relabelled"] += 1
        else:
            touched["missing"] += 1  # a class this run does not have
    return fixed, touched


def estimate_run(
    run: Run,
    data_root: str | os.PathLike,
    corrections: dict[str, dict[str, Any]],
    choice: Choice = Choice(),
    seeds: int = SEEDS,
    resamples: int = RESAMPLES,
    train=None,
    progress=None,
    save_it: bool = True,
) -> Estimate:
    """Estimate what applying `corrections` to `run`'s data would change on its validation photos (and store it).

    Args:
        train: the run's training features (core.results.train_features.TrainFeatures); read or computed when None.

    Raises:
        FixWorthError: no corrections, or no validation photos.
        AnalysisMissing: the run has no analysis arrays.
    """
    if not corrections:
        raise FixWorthError("no corrections to estimate")
    started = time.perf_counter()
    analysis = RunAnalysis.load(run.directory)
    val = analysis.val
    if not len(val.labels):
        raise FixWorthError(f"run {run.run_id} has no validation photos to measure a change on")
    if train is None:
        train = training_features(run, data_root, progress)
    classes = analysis.classes
    fixed, touched = _apply(
        corrections,
        classes,
        {"train": (train.paths, train.labels), "val": (val.paths, val.labels)},
        analysis.test.paths,
    )
    (y_after, keep), (val_after, val_keep) = fixed["train"], fixed["val"]
    if not keep.any():
        raise FixWorthError("these corrections exclude every training photo: nothing would be left to learn from")
    x = reduce(np.concatenate([np.asarray(train.features), val.features]), dimensions(len(classes)))
    x_train, x_val = x[: len(train.labels)], x[len(train.labels) :]
    scorings = {AS_LABELLED: (val.labels, np.arange(len(val.labels)))}
    if touched["val_relabelled"] or touched["val_excluded"]:
        scorings[CORRECTED] = (val_after[val_keep], np.flatnonzero(val_keep))
    y_before = np.asarray(train.labels, dtype=np.int64)
    results = paired_change(x_train, y_before, y_after, keep, x_val, scorings, len(classes), seeds, resamples)
    estimate = Estimate(
        run_id=run.run_id,
        digest=digest(corrections),
        corrections=len(corrections),
        choice=asdict(choice),
        touched=touched,
        results=results,
        seeds=seeds,
        resamples=resamples,
        train_photos=len(y_before),
        val_photos=len(val.labels),
        seconds=round(time.perf_counter() - started, 2),
        made_at=time.time(),
    )
    if save_it:
        save(estimate, run.directory)
    return estimate


# --- stored with the run ----------------------------------------------------------------------------------------


def load_all(run_dir: str | os.PathLike) -> dict[str, Estimate]:
    """The estimates stored with a run, by corrections digest (an unreadable or older file: none)."""
    data = read_json(run_files(run_dir).fix_worth, default={}) or {}
    if not isinstance(data, dict) or data.get("version") != FIX_WORTH_VERSION:
        return {}
    out = {}
    for key, value in (data.get("estimates") or {}).items():
        try:
            out[key] = Estimate.from_dict(value)
        except (KeyError, TypeError, ValueError):
            continue  # one damaged entry loses only itself
    return out


def save(estimate: Estimate, run_dir: str | os.PathLike) -> None:
    """Store `estimate` with the run (replacing one for the same corrections; the newest KEPT_ESTIMATES kept)."""
    kept = load_all(run_dir)
    kept.pop(estimate.digest, None)
    kept[estimate.digest] = estimate
    newest = sorted(kept.values(), key=lambda e: e.made_at)[-KEPT_ESTIMATES:]
    write_json_atomic(
        run_files(run_dir).fix_worth,
        {"version": FIX_WORTH_VERSION, "estimates": {e.digest: e.to_dict() for e in newest}},
    )


def find(run_dir: str | os.PathLike, corrections: dict[str, dict[str, Any]] | None) -> Estimate | None:
    """The estimate stored with a run for exactly these corrections, or None."""
    return load_all(run_dir).get(digest(corrections)) if corrections else None

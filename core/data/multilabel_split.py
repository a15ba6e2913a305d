"""The split of a multi-label dataset: iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011), seeded.

A stratified split by class cannot be drawn when a photo has several labels. Iterative stratification deals the
photos of the rarest label first, each to the split that still wants the most of that label (ties: the split that
wants the most photos, then the seed), and goes on with the next rarest, so every label gets its share of photos in
every split as far as its count allows; photos with no label fill the splits last. One departure from the paper: a
label with at least as many photos as there are splits first gives a photo to each split that has none of it yet
(by the paper's rule alone, a label of 3 or 4 photos in a 70/15/15 split never reaches one of the small splits).
A label with fewer photos than there are splits cannot be in each of them: the notes name it.
"""

from __future__ import annotations

import numpy as np

from core.data.datasets import SMALL_TEST_SPLIT, SPLITS, DatasetError, DatasetIndex, Split
from core.data.multilabel import LabelSets

_SHOWN = 8  # labels named in one note before "... and N more"


def iterative_stratification(sets: LabelSets, fractions: tuple[float, ...], seed: int = 42) -> np.ndarray:
    """The fold (0..k-1) of each photo, folds sized by `fractions` (summing to 1), labels spread evenly.

    Algorithm 1 of Sechidis et al. (2011): the desired count of each fold and of each (fold, label) pair is
    decremented as photos are dealt; the rarest label with photos left goes first. A fold still without the label
    is served first while the label has at least k photos (the module's docstring says why).
    """
    n, k = len(sets), len(fractions)
    rng = np.random.default_rng(seed)
    positives = sets.positives().tolist()
    wanted = [n * share for share in fractions]  # photos each fold still wants
    wanted_label = [[share * count for count in positives] for share in fractions]  # of each label
    left = list(positives)  # unassigned photos having each label
    have = [[0] * sets.num_labels for _ in fractions]  # photos of each label dealt to each fold
    fold = np.full(n, -1, dtype=np.int64)
    members = _members(sets)
    draws = iter(rng.random(n + sets.num_labels).tolist())  # uniforms for ties (a photo's, a label's)
    indptr, indices = sets.indptr.tolist(), sets.indices.tolist()  # plain lists: one photo at a time is Python's

    def pick(scores: list[float], among) -> list[int]:
        best = max(scores[j] for j in among)
        return [j for j in among if scores[j] == best]

    while True:
        alive = [j for j, count in enumerate(left) if count > 0]
        if not alive:
            break
        fewest = min(left[j] for j in alive)
        rarest = [j for j in alive if left[j] == fewest]
        label = rarest[int(next(draws) * len(rarest))]
        photos = members[label]
        for photo in rng.permutation(photos[fold[photos] < 0]).tolist():
            lacking = [j for j in range(k) if have[j][label] == 0] if positives[label] >= k else []
            candidates = pick([wanted_label[j][label] for j in range(k)], lacking or range(k))
            if len(candidates) > 1:
                candidates = pick(wanted, candidates)
            chosen = candidates[int(next(draws) * len(candidates))]
            fold[photo] = chosen
            wanted[chosen] -= 1
            row, dealt = wanted_label[chosen], have[chosen]
            for j in indices[indptr[photo] : indptr[photo + 1]]:
                row[j] -= 1
                dealt[j] += 1
                left[j] -= 1
    for photo in rng.permutation(np.flatnonzero(fold < 0)).tolist():  # no label: the fold wanting the most photos
        candidates = pick(wanted, range(k))
        chosen = candidates[int(next(draws) * len(candidates))]
        fold[photo] = chosen
        wanted[chosen] -= 1
    return fold


def _members(sets: LabelSets) -> list[np.ndarray]:
    """The photos having each label."""
    order = np.argsort(sets.indices, kind="stable")
    photos = np.repeat(np.arange(len(sets)), sets.sizes())[order]
    bounds = np.concatenate([[0], np.cumsum(sets.positives())])
    return [photos[bounds[j] : bounds[j + 1]] for j in range(sets.num_labels)]


def split_multilabel(
    sets: LabelSets,
    names: list[str],
    given: list[str | None] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
) -> Split:
    """Train/val/test of a multi-label dataset: the dataset's own split where it has one (a missing val or test
    carved from its train photos the same way), else iterative stratification with the seed.

    Raises:
        DatasetError: too few photos for a validation or test split.
    """
    n = len(sets)
    notes: list[str] = []
    if given is not None and any(s is not None for s in given):
        split = _from_dataset(sets, given, val_fraction, test_fraction, seed, notes)
    else:
        if n < 3:
            raise DatasetError(f"a multi-label dataset needs at least 3 photos to split; it has {n}")
        fold = iterative_stratification(sets, (1 - val_fraction - test_fraction, val_fraction, test_fraction), seed)
        split = Split(*(np.flatnonzero(fold == i).astype(np.int64) for i in range(3)), "random", notes)
    for name in ("val", "test"):
        if len(getattr(split, name)) == 0:
            raise DatasetError(f"too few photos to make a {name} split: add photos, or bring your own split")
    split.notes += rare_label_notes(sets, names, split)
    if len(split.test) < SMALL_TEST_SPLIT:
        split.notes.append(small_test_note(len(split.test)))
    return split


def small_test_note(n: int) -> str:
    """What a small test split of a multi-label dataset can tell."""
    return (
        f"Small test split: {n} photos, and each label's figures rest on its own photos among them (a label on a "
        f"tenth of the photos: about {max(1, round(n / 10))}), so a label's average precision is known only roughly; "
        "differences between runs inside their intervals may be chance. More test photos give firmer figures."
    )


def _from_dataset(sets, given, val_fraction, test_fraction, seed, notes) -> Split:
    given_arr = np.array([s or "train" for s in given])
    parts = {s: np.flatnonzero(given_arr == s) for s in SPLITS}
    missing = [s for s in ("val", "test") if len(parts[s]) == 0]
    if missing:
        train = parts["train"]
        wanted = {"val": val_fraction if "val" in missing else 0.0, "test": test_fraction if "test" in missing else 0.0}
        fractions = (1 - wanted["val"] - wanted["test"], wanted["val"], wanted["test"])
        fold = iterative_stratification(sets.take(train), fractions, seed)
        parts = {**parts, "train": train[fold == 0]}
        for i, name in ((1, "val"), (2, "test")):
            if name in missing:
                parts[name] = train[fold == i]
        notes.append(
            f"the dataset has no {' or '.join(missing)} split: carved from its train photos by iterative "
            "stratification with the seed"
        )
    return Split(*(np.sort(parts[s]).astype(np.int64) for s in SPLITS), "dataset", notes)


def targets_of(index: DatasetIndex, paths: list[str]) -> LabelSets:
    """The label lists of these photos of a multi-label dataset (paths relative to it), in this order.

    Raises:
        DatasetError: a path that is not one of the dataset's photos.
    """
    position = {entry.path: i for i, entry in enumerate(index.entries)}
    try:
        rows = np.array([position[path] for path in paths], dtype=np.int64)
    except KeyError as e:
        raise DatasetError(f"{e.args[0]} is not a photo of the multi-label dataset at {index.root}") from None
    return index.targets.take(rows)


def counts_by_label(sets: LabelSets, names: list[str], split: Split) -> dict[str, dict[str, int]]:
    """{label: {train: n, val: n, test: n}}: photos having each label in each split."""
    counts = {s: sets.positives(getattr(split, s)) for s in SPLITS}
    return {name: {s: int(counts[s][j]) for s in SPLITS} for j, name in enumerate(names)}


def rare_label_notes(sets: LabelSets, names: list[str], split: Split) -> list[str]:
    """The labels missing from some split (too rare to be in each), named; and photos with no label, counted."""
    table = counts_by_label(sets, names, split)
    absent: dict[str, list[str]] = {}
    for name, counts in table.items():
        total = sum(counts.values())
        if total == 0:
            absent.setdefault("no photo at all", []).append(name)
            continue
        gaps = [s for s in SPLITS if counts[s] == 0]
        if gaps:
            absent.setdefault(f"no {' or '.join(gaps)} photo", []).append(f"{name} ({total})")
    notes = []
    for where, labels in sorted(absent.items()):
        shown = ", ".join(labels[:_SHOWN]) + (f" ... and {len(labels) - _SHOWN} more" if len(labels) > _SHOWN else "")
        notes.append(
            f"{len(labels)} label(s) too rare to be in every split, with {where}: {shown}. Its metrics there are "
            "not measured; more photos of it would be"
            if where != "no photo at all"
            else f"{len(labels)} label(s) that no photo has: {shown}; the model cannot learn them"
        )
    return notes

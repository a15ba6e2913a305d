"""The checks: each turns what decoding and hashing found into findings a person can act on."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from core.data.datasets import SPLITS, DatasetError, DatasetIndex
from core.data.split_rule import split_rule
from core.health.hashing import Analysis
from core.health.report import Finding
from core.settings.config import IMBALANCE_RATIO, TrainConfig

TINY_SIDE = 64  # px: below this the picture holds too little to learn from at any input size
EXTREME_ASPECT = 3.0  # longer/shorter side: the centre square then keeps under a third of the picture
STRONG_IMBALANCE = 5.0
MIN_CLASS_IMAGES = 10


class Checks:
    """Builds the findings; each method adds what one check found."""

    def __init__(self, index: DatasetIndex, table: pd.DataFrame, paths: list[str], image_size: int, config=None):
        self.index = index
        self.table = table
        self.paths = paths
        self.image_size = image_size
        self.config = config or TrainConfig()
        self.findings: list[Finding] = []
        self.names = index.classes  # what a label value is called (multi-label: each label list, core.health.check)

    def add(self, kind, severity, title, detail, positions=(), groups=(), captions=None, files=None) -> None:
        files = files if files is not None else [self.paths[i] for i in positions]
        self.findings.append(
            Finding(
                kind,
                severity,
                title,
                detail,
                files,
                [[self.paths[i] for i in g] for g in groups],
                captions or {},
            )
        )

    def unreadable(self, analysis: Analysis) -> None:
        bad = np.flatnonzero(~analysis.readable)
        if not len(bad):
            return
        kinds = Counter(_reason_kind(str(analysis.reason[i])) for i in bad)
        summary = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        self.add(
            "unreadable",
            "warning",
            f"{len(bad)} file{_s(len(bad))} cannot be decoded ({summary})",
            "Training skips these files, so their classes have fewer images than the folders suggest. "
            "Re-export or delete them; each file's reason is listed.",
            bad,
            captions={self.paths[i]: str(analysis.reason[i]) for i in bad},
        )

    def run_split(self, split_of: dict[str, str], run_id: str) -> tuple[np.ndarray, dict[str, Any]]:
        """A run's own split (path -> "train" | "val" | "test", as the run drew it), as one name per entry ("" for
        photos the run does not have: unreadable, excluded, or added since)."""
        names = np.array([split_of.get(path, "") for path in self.paths], dtype=object)
        sizes = {name: int((names == name).sum()) for name in ("train", "val", "test")}
        return names, {"source": "run", "run_id": run_id, "sizes": sizes}

    def split(self, readable: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The split training would use, as one name per entry ("" for unreadable files)."""
        config = self.config
        index = self.index
        positions = np.flatnonzero(readable)
        split_of = np.full(len(readable), "", dtype=object)
        info: dict[str, Any] = {
            "source": "dataset" if index.has_split else "random",
            "val_fraction": config.val_fraction,
            "test_fraction": config.test_fraction,
            "seed": config.split_draw_seed,
        }
        given = [index.entries[i].split for i in positions] if index.has_split else None
        try:  # the rule every run draws its split with: photos labelled in Flora join training, as in training
            split = split_rule(
                index.labels[positions], [index.entries[i].path for i in positions], index,
                config.val_fraction, config.test_fraction, config.split_draw_seed, given,
            )  # fmt: skip
        except DatasetError as e:
            info["error"] = str(e)
            if index.multilabel:  # no class folders: the label file lists the photos
                why = "Training needs enough readable photos for a validation and a test split. Add photos (or bring "
                why += "your own split)."
                files = [str(index.meta.get("label_file") or "labels.csv")]
            else:
                why = "Training needs at least two classes with readable images, and enough images per class for a "
                why += "validation and a test split. Add classes or images (or bring your own split)."
                files = [f"{c}/" for c in index.classes]
            self.add("cannot_train", "error", f"training will fail: {e}", why, files=files)
            return split_of, info
        for name in ("train", "val", "test"):
            split_of[positions[getattr(split, name)]] = name
        info["sizes"] = split.sizes()
        info["notes"] = list(split.notes)
        return split_of, info

    def duplicates(self, exact: list[list[int]], near: list[list[int]], analysis: Analysis) -> None:
        if exact:
            extra = sum(len(g) - 1 for g in exact)
            self.add(
                "exact_duplicates",
                "warning",
                f"{len(exact)} picture{_s(len(exact))} stored more than once: {extra} redundant "
                f"cop{'y' if extra == 1 else 'ies'} ({sum(map(len, exact))} files)",
                "Byte-for-byte identical files. Copies give their picture extra weight in training and, "
                "when they land in different splits, a test the model has already seen. Keep one of each group.",
                sorted(i for g in exact for i in g),
                groups=exact,
            )
        if near:
            self.add(
                "near_duplicates",
                "warning",
                f"{len(near)} group{_s(len(near))} of near duplicates ({sum(map(len, near))} files): "
                "the same picture resized, re-encoded or lightly edited",
                "Found by a perceptual hash of each image and confirmed on its thumbnail. Look at each group: "
                "keep one picture per group unless they really are different shots.",
                sorted(i for g in near for i in g),
                groups=near,
            )

    def leakage(self, groups: list[list[int]], split_of: np.ndarray, info: dict[str, Any]) -> None:
        if "sizes" not in info:
            return
        leaks = [g for g in groups if len({split_of[i] for i in g} - {""}) > 1]
        if not leaks:
            return
        files = sorted(i for g in leaks for i in g)
        captions = {self.paths[i]: split_of[i] for i in files}
        pairs = Counter("/".join(s for s in SPLITS if s in {split_of[i] for i in g}) for g in leaks)
        where = ", ".join(f"{count} across {name}" for name, count in pairs.most_common())
        if info["source"] == "run":
            verb = "straddles" if len(leaks) == 1 else "straddle"
            title = f"{len(leaks)} duplicate picture{_s(len(leaks))} {verb} the split run {info['run_id'][:6]} " + (
                f"trained on ({where})"
            )
            detail = (
                f"Copies of these pictures are both in run {info['run_id'][:6]}'s training photos and in its "
                "validation or test photos (its own split, as it drew it: photos labelled in Flora in training, "
                "label corrections applied), so its validation and test accuracy reward memory and look better "
                "than they are. Delete the copies before the next run."
            )
        elif info["source"] == "dataset":
            verb = "appears" if len(leaks) == 1 else "appear"
            title = f"{len(leaks)} picture{_s(len(leaks))} {verb} in more than one of the dataset's splits ({where})"
            detail = (
                "The same picture (exact or near copy) is in train and in val/test of the dataset's own split, "
                "so validation and test accuracy reward memory, not recognition, and look better than they are. "
                "Remove the copies from val/test (or from train)."
            )
        else:
            title = f"{len(leaks)} duplicate picture{_s(len(leaks))} would straddle the split training makes ({where})"
            detail = (
                "This dataset brings no split of its own, so training splits it per class at random "
                f"(validation {info['val_fraction']:.0%}, test {info['test_fraction']:.0%}, seed {info['seed']}). "
                "Under that split, copies of these pictures land both in train and in val/test: test accuracy "
                "would be optimistic. Delete the copies before training; a different seed only moves the leak."
            )
        self.add("split_leakage", "error", title, detail, files, groups=leaks, captions=captions)

    def conflicting_labels(self, groups: list[list[int]], labels: np.ndarray) -> None:
        conflicts = [g for g in groups if len({int(labels[i]) for i in g}) > 1]
        if not conflicts:
            return
        files = sorted(i for g in conflicts for i in g)
        classes = self.names
        self.add(
            "conflicting_labels",
            "error",
            f"{len(conflicts)} picture{_s(len(conflicts))} filed under two or more classes ({len(files)} files)",
            "The same picture (exact or near copy) has different labels, so the model is taught both answers "
            "and is marked wrong either way. Decide which class each belongs to and delete the other copies.",
            files,
            groups=conflicts,
            captions={self.paths[i]: classes[int(labels[i])] for i in files},
        )

    def classes(self, readable: np.ndarray, labels: np.ndarray) -> None:
        index = self.index
        counts = np.bincount(labels[readable], minlength=len(index.classes))
        if index.empty_classes:
            names = index.empty_classes
            self.add(
                "empty_class",
                "warning",
                f"{len(names)} class folder{_s(len(names))} without images: {', '.join(names[:5])}"
                + (" ..." if len(names) > 5 else ""),
                "Empty folders are not classes: training ignores them. Add images, or delete the folders.",
                files=[f"{name}/" for name in names],
            )
        small = [i for i, c in enumerate(counts) if c < MIN_CLASS_IMAGES]
        if small:
            described = ", ".join(f"{index.classes[i]} ({counts[i]})" for i in small[:8])
            tiny = [index.classes[i] for i in small if counts[i] < 3]
            members = np.flatnonzero(readable & np.isin(labels, small))
            unsplit = ""
            if tiny and not index.has_split:
                unsplit = f"{', '.join(tiny)}: under 3 images, so not in every split. "
            self.add(
                "small_class",
                "warning",
                f"{len(small)} class{'es' if len(small) != 1 else ''} with fewer than {MIN_CLASS_IMAGES} readable "
                f"images: {described}" + (" ..." if len(small) > 8 else ""),
                "A class this small gives a validation and test score of one or two images, and little to learn "
                f"from. {unsplit}Collect more images for these classes, or merge or drop them.",
                members,
                captions={self.paths[i]: index.classes[labels[i]] for i in members},
            )
        present = counts[counts > 0]
        if len(present) < 2:
            return
        largest, smallest = int(present.max()), int(present.min())
        ratio = largest / smallest
        if ratio <= IMBALANCE_RATIO:  # as training's "auto" class weights: on above the ratio, not at it
            return
        big = index.classes[int(np.argmax(counts))]
        little = index.classes[int(np.argmin(np.where(counts > 0, counts, np.iinfo(counts.dtype).max)))]
        low = [i for i, c in enumerate(counts) if c > 0 and largest / c > IMBALANCE_RATIO]
        severity = "warning" if ratio >= STRONG_IMBALANCE else "info"
        self.add(
            "class_imbalance",
            severity,
            f"classes are imbalanced: largest/smallest = {largest}/{smallest} = {ratio:.1f} ({big} vs {little})",
            "A model can score well by favouring the big classes. Training weights classes by their size "
            f"when this ratio passes {IMBALANCE_RATIO} (class weights 'auto'); per-class recall on the Evaluate "
            "page shows whether the small classes suffer. Listed: the images of the under-represented classes "
            f"({', '.join(f'{index.classes[i]} {counts[i]}' for i in low[:8])}).",
            np.flatnonzero(readable & np.isin(labels, low)),
        )

    def sizes(self, readable: np.ndarray) -> None:
        width = self.table["width"].to_numpy()
        height = self.table["height"].to_numpy()
        short = np.minimum(width, height)
        long = np.maximum(width, height)
        size_of = {self.paths[i]: f"{width[i]}x{height[i]}" for i in np.flatnonzero(readable)}
        tiny = np.flatnonzero(readable & (short < TINY_SIDE))
        if len(tiny):
            self.add(
                "tiny_images",
                "warning",
                f"{len(tiny)} tiny image{_s(len(tiny))} (shorter side under {TINY_SIDE} px)",
                f"At the {self.image_size} px training size these are blown up more than "
                f"{self.image_size / TINY_SIDE:.1f}-fold: mostly blur, little to learn from. Thumbnails or "
                "icons that slipped in? Replace them with larger pictures or delete them.",
                tiny,
                captions={self.paths[i]: size_of[self.paths[i]] for i in tiny},
            )
        small = np.flatnonzero(readable & (short >= TINY_SIDE) & (short < self.image_size))
        if len(small):
            share = len(small) / max(1, int(readable.sum()))
            self.add(
                "small_images",
                "info",
                f"{len(small)} image{_s(len(small))} ({share:.0%}) smaller than "
                + (
                    f"the default {self.image_size} px training size"
                    if self.image_size == TrainConfig().image_size
                    else f"the {self.image_size} px training size"
                ),
                f"Training at {self.image_size} px upscales them, which costs time and adds no detail. Train "
                f"at an image size near their shorter side (median {int(np.median(short[small]))} px) instead.",
                small,
                captions={self.paths[i]: size_of[self.paths[i]] for i in small},
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = np.where(short > 0, long / np.maximum(short, 1), 0)
        odd = np.flatnonzero(readable & (aspect > EXTREME_ASPECT))
        if len(odd):
            self.add(
                "extreme_aspect",
                "warning",
                f"{len(odd)} image{_s(len(odd))} with an extreme aspect ratio (one side over "
                f"{EXTREME_ASPECT:.0f}x the other)",
                "Training keeps the centre square of each image, which is under a third of these pictures: "
                "the subject may be cut off. Crop them around the subject, or check they belong here "
                "(panoramas, banners, strips of several photos).",
                odd,
                captions={self.paths[i]: f"{size_of[self.paths[i]]} ({aspect[i]:.1f}:1)" for i in odd},
            )

    def grayscale(self, gray: np.ndarray, labels: np.ndarray) -> None:
        found = np.flatnonzero(gray)
        if not len(found):
            return
        readable = self.table["readable"].to_numpy()
        total = int(readable.sum())
        per_class = {
            self.names[c]: (int(np.sum(gray & (labels == c))), int(np.sum(readable & (labels == c))))
            for c in np.unique(labels[found])
        }
        share = len(found) / max(1, total)
        lopsided = [
            name
            for name, (g, n) in per_class.items()
            if n and g / n >= 0.2 and g / n >= 3 * (len(found) - g) / max(1, total - n)
        ]
        severity = "warning" if lopsided else "info"
        detail = (
            "Black-and-white pictures, stored as such or as colour files with gray pixels. Training converts "
            "them to RGB, which is fine when they are few and spread over the classes. "
        )
        if lopsided:
            detail += (
                f"Here they are concentrated in {', '.join(lopsided)}: a model can learn 'gray means "
                f"{lopsided[0]}' instead of what a {lopsided[0]} looks like. Add colour pictures there, or remove the "
                "gray ones."
            )
        self.add(
            "grayscale",
            severity,
            f"{len(found)} black-and-white image{_s(len(found))} ({share:.1%} of {total}; gray pixels, whatever "
            "the file's colour mode)" + (f", concentrated in {', '.join(lopsided)}" if lopsided else ""),
            detail,
            found,
            captions={self.paths[i]: self.names[labels[i]] for i in found},
        )

    def ignored(self) -> None:
        ignored = self.index.ignored_files
        if ignored:
            self.add(
                "ignored_files",
                "info",
                f"{len(ignored)} file{_s(len(ignored))} in class folders "
                + ("is not an image and is ignored" if len(ignored) == 1 else "are not images and are ignored"),
                "Files without an image extension (.jpg, .png, ...) are not part of the dataset. Nothing to do "
                "unless some of them are pictures with a wrong extension.",
                files=list(ignored),
            )


def _reason_kind(reason: str) -> str:
    text = reason.lower()
    for needle, kind in (
        ("too large", "too large"),
        ("not an image", "not images"),
        ("truncated", "truncated or corrupt"),
        ("corrupt", "truncated or corrupt"),
        ("no pixels", "empty"),
        ("cannot read", "unreadable from disk"),
    ):
        if needle in text:
            return kind
    return "other"


def _s(count: int) -> str:
    return "" if count == 1 else "s"

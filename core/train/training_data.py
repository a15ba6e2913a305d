"""What a run's fits train on: the decoded images, their split, the class weights, a multi-label dataset's lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.datasets import Split
from core.data.ingest import ImageCache
from core.data.multilabel import LabelSets


@dataclass
class TrainingData:
    """What both phases train on: the decoded images, the split, and the class weights.

    A multi-label dataset's photos carry `targets` (their label lists in the cache's order; `cache.labels` are -1)
    and `class_weights` are then per-label positive weights (core.train.multilabel.positive_weights), which the
    loss applies, not per-sample weights.
    """

    cache: ImageCache
    split: Split
    class_weights: np.ndarray | None
    num_classes: int
    targets: LabelSets | None = None

    @property
    def multilabel(self) -> bool:
        return self.targets is not None

    def labels_of(self, positions: np.ndarray) -> np.ndarray | LabelSets:
        """What a batch source reads for these photos: class ids, or (multi-label) their label lists."""
        if self.targets is not None:
            return self.targets.take(positions)
        return self.cache.labels[positions]

    @property
    def sample_weights(self) -> np.ndarray | None:
        """Per-class weights for the batches to hand as sample weights (none for a multi-label run: its loss weighs)."""
        return None if self.multilabel else self.class_weights

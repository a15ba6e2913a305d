"""The kinds of dataset (and so of run): one class a photo, or any number of labels. Nothing else, so that settings,
pages and the network can ask a dataset's or a run's kind without loading the decoder (core.data.multilabel)."""

from __future__ import annotations

SINGLE_LABEL = "single"  # one class a photo, from its folder (every dataset before multi-label)
MULTI_LABEL = "multilabel"  # any number of labels a photo, from the dataset's label file
TASKS = (SINGLE_LABEL, MULTI_LABEL)

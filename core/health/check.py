"""`check_dataset`: run every check on a dataset and gather the report (kept beside the caches).

The checks themselves, each turning what decoding found into findings, are in `findings.py`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd

from core.data.datasets import DatasetIndex
from core.data.multilabel import label_set_ids
from core.fileio import read_json, write_json_atomic
from core.health.findings import Checks
from core.health.hashing import analyse, duplicate_groups, grayscale_flags
from core.health.multilabel import class_counts, label_findings
from core.health.report import SEVERITIES, HealthReport
from core.health.table import as_index, cache_file, image_table
from core.progress import StageCallback
from core.settings.config import TrainConfig


def check_dataset(
    path_or_index: DatasetIndex | str | os.PathLike,
    progress: StageCallback | None = None,
    cache_root: str | os.PathLike | None = None,
    image_size: int | None = None,
    workers: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    config: TrainConfig | None = None,
) -> HealthReport:
    """Check a dataset: unreadable files, duplicates, split leakage, imbalance, odd sizes, grayscale.

    Args:
        path_or_index: a dataset folder or a scanned index.
        progress: called as progress(stage, done, total), stage "reading headers" then "hashing".
        cache_root: where to cache per-file results by fingerprint (e.g. `data/.cache`); None: no cache.
        image_size: the training input size the size findings refer to (default: the config's, 224).
        workers: decoding threads (default: up to 4).
        should_stop: polled between chunks of files; True raises CheckCancelled.
        config: the training settings to check against (its split fractions and split seed decide the
            split leakage is measured on when the dataset has no split of its own); default TrainConfig().

    Raises:
        DatasetError: the folder is not a dataset (no class folders with images).
        CheckCancelled: `should_stop` asked to stop.
    """
    started = time.perf_counter()
    config = config or TrainConfig()
    image_size = image_size or config.image_size
    index = as_index(path_or_index)
    table = image_table(index, progress, cache_root)
    analysis, cached = analyse(index, progress, cache_root, workers, should_stop)
    table["readable"] = analysis.readable
    table["reason"] = np.where(analysis.readable, "", analysis.reason)
    gray = grayscale_flags(table, analysis)
    table["grayscale"] = gray
    paths = table["path"].tolist()
    labels = index.labels
    readable = analysis.readable

    checker = Checks(index, table, paths, image_size, config)
    if index.multilabel:  # a label value is a photo's whole list: copies with other lists conflict
        labels, checker.names = label_set_ids(index.targets, index.classes)
    checker.unreadable(analysis)
    split_of, split_info = checker.split(readable)
    exact, near, combined = duplicate_groups(analysis)
    checker.duplicates(exact, near, analysis)
    checker.leakage(combined, split_of, split_info)
    checker.conflicting_labels(combined, labels)
    if index.multilabel:
        label_findings(checker, readable)
    else:
        checker.classes(readable, labels)
    checker.sizes(readable)
    checker.grayscale(gray, labels)
    checker.ignored()

    widths, heights = table["width"][readable], table["height"][readable]
    stats = {
        "readable": int(readable.sum()),
        "unreadable": int((~readable).sum()),
        "class_counts": class_counts(index, labels, readable),
        "split": split_info,
        "layout": index.layout,
        "exact_duplicate_groups": len(exact),
        "near_duplicate_groups": len(near),
        "grayscale": int(gray.sum()),
        "bytes": int(table["bytes"].sum()),
        "formats": dict(Counter(table["format"][readable])),
        "modes": dict(Counter(table["mode"][readable])),
        "width": _summary(widths),
        "height": _summary(heights),
        "image_size": image_size,
        "fingerprint": index.fingerprint,
        "cached": cached,
        "seconds": round(time.perf_counter() - started, 3),
    }
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings = sorted(checker.findings, key=lambda f: order[f.severity])
    report = HealthReport(index.name, index.root, len(index.entries), len(index.classes), findings, stats, table)
    target = cache_file(cache_root, index, f"report-{image_size}", "json")
    if target is not None:
        write_json_atomic(target, {**report.to_dict(), "checked_at": time.time()})
    return report


def saved_report(
    path_or_index: DatasetIndex | str | os.PathLike, cache_root: str | os.PathLike, image_size: int | None = None
) -> HealthReport | None:
    """The last report of this exact dataset content (its fingerprint), if a check was run; else None."""
    index = as_index(path_or_index)
    image_size = image_size or TrainConfig().image_size
    data = read_json(cache_file(cache_root, index, f"report-{image_size}", "json"))
    try:
        return HealthReport.from_dict(data) if data else None
    except (KeyError, TypeError):
        return None


def _summary(values: pd.Series) -> dict[str, int] | None:
    if len(values) == 0:
        return None
    return {"min": int(values.min()), "median": int(values.median()), "max": int(values.max())}

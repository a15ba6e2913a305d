"""Prediction sets' coverage over many random halvings of the test split (docs/PERFORMANCE.md, issue 31).

    python docs/bench/conformal_coverage.py [RUN_DIR ...]

For each run folder given: sets at 80, 90 and 95 % (RAPS, a threshold per class where each class has enough
photos, and one threshold for all), fitted on half the test split and counted on the other, 200 halvings.
Then Oxford 102's layout: the official split's class counts (../shared/data/oxford102: 1,020 validation and
6,149 test photos over 102 classes) with the probabilities of a simulated calibrated model (no Oxford photos
reach these machines), once as sure as an ImageNet start makes it (about 75% top-1) and once as lost as a
random start (about 8%).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.results.probabilities import conformal  # noqa: E402
from core.runs.analysis import softmax  # noqa: E402

LEVELS = (0.8, 0.9, 0.95)


def describe(fitted: conformal.ConformalSets) -> str:
    held, spread = fitted.held_out, fitted.spread
    covered = [c.coverage for c in held.by_class if c.coverage is not None]
    low = min(spread.class_coverage_low.values())
    high = max(spread.class_coverage_high.values())
    means = spread.class_coverage_mean.values()
    return (
        f"level {fitted.level:.2f} {'by class' if fitted.by_class else 'overall '}: held-out coverage "
        f"{held.coverage:.3f} (classes {min(covered):.2f}-{max(covered):.2f}), size {held.mean_size:.2f}; "
        f"{spread.splits} halvings {spread.coverage_mean:.3f} +/- {spread.coverage_sd:.3f} "
        f"[{spread.coverage_low:.3f}, {spread.coverage_high:.3f}], per-class mean {min(means):.3f}-{max(means):.3f} "
        f"(95% range {low:.2f}-{high:.2f}), "
        f"size {spread.size_mean:.2f}"
    )


def runs(run_dirs: list[str]) -> None:
    from core.results.probabilities.tta import served_probabilities
    from core.runs.analysis import RunAnalysis

    for run_dir in run_dirs:
        analysis = RunAnalysis.load(run_dir)
        val, test, views = served_probabilities(run_dir, analysis)
        accuracy = float((test.argmax(axis=1) == analysis.test.labels).mean())
        print(f"\nrun {Path(run_dir).name}: {len(test)} test photos, {views} view(s), top-1 {accuracy:.3f}")
        for level in LEVELS:
            for by_class in (True, False):
                started = time.perf_counter()
                fitted = conformal.fit(
                    test, analysis.test.labels, analysis.test.paths, analysis.classes, val, analysis.val.labels,
                    level, by_class=by_class,
                )  # fmt: skip
                print(f"  {describe(fitted)} ({time.perf_counter() - started:.2f} s)")


def oxford_layout() -> None:
    from scipy.io import loadmat

    folder = ROOT.parent / "shared" / "data" / "oxford102"
    labels = loadmat(folder / "imagelabels.mat")["labels"].ravel() - 1
    split = loadmat(folder / "setid.mat")
    val_labels = labels[split["valid"].ravel() - 1]
    test_labels = labels[split["tstid"].ravel() - 1]
    classes = [f"class {i + 1}" for i in range(102)]
    for name, signal in (("ImageNet-like start", 3.2), ("random start", 0.6)):
        rng = np.random.default_rng(0)

        def probabilities(y, rng=rng, signal=signal):
            logits = rng.normal(size=(len(y), 102))
            logits[np.arange(len(y)), y] += signal
            return softmax(logits).astype(np.float64)

        val, test = probabilities(val_labels), probabilities(test_labels)
        accuracy = float((test.argmax(axis=1) == test_labels).mean())
        print(f"\nOxford 102 layout, {name}: {len(test_labels)} test photos, top-1 {accuracy:.3f}")
        paths = [f"jpg/image_{i:05d}.jpg" for i in range(len(test_labels))]
        for level in LEVELS:
            started = time.perf_counter()
            fitted = conformal.fit(test, test_labels, paths, classes, val, val_labels, level)
            print(f"  {describe(fitted)} ({time.perf_counter() - started:.2f} s)")


if __name__ == "__main__":
    runs(sys.argv[1:])
    oxford_layout()

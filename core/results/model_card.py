"""A model card for every run, written from what the run stored, in Hugging Face's layout: YAML metadata with a
`model-index` of results, then the card's sections (`core.results.model_card_text`).

Nothing is computed again here except two intervals from the stored test probabilities (Wilson's for accuracy, a
seeded bootstrap for macro F1): the metrics are the run's own (`Evaluation.summary()`), to the last digit, and
what the run has not computed yet (prediction sets, selective answers, robustness, data issues) is said to be
missing with the command that computes it. `core card RUN` writes it into the run folder (`model_card.md`), every
export bundle carries it as README.md, and Evaluate shows it.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core import __version__
from core.fileio import read_json, write_bytes_atomic
from core.results.model_card_text import body
from core.runs.files import run_files
from core.runs.record import Run

BOOTSTRAP = 1000
EXPORT_CARD = "README.md"  # the name Hugging Face and code hosts show a folder's card by


def facts(run: Run) -> dict[str, Any]:
    """Everything the card says, read from the run's files (missing parts None)."""
    # heavy: scipy, scikit-learn and pandas (data issues, the evaluation, the reference, robustness): for the card only
    from core.results.data_issues.report import load as load_issues
    from core.results.evaluation import robustness  # heavy: scipy
    from core.results.evaluation.metrics import Evaluation
    from core.results.probabilities import calibration_words, class_thresholds, conformal, selective  # heavy: scipy
    from core.results.probabilities.calibration import load as load_calibration
    from core.results.probabilities.reference import Reference

    evaluation = Evaluation.load(run.directory)
    summary = evaluation.summary()
    reference = Reference.load(run.directory)
    calibration = load_calibration(run.directory)
    issues = load_issues(run.directory)
    return {
        "run": run,
        "config": run.train_config,
        "record": read_json(run_files(run).config) or {},
        "status": run.status,
        "evaluation": evaluation,
        "summary": summary,
        "intervals": intervals(evaluation),
        "calibration": calibration.summary() if calibration is not None else None,
        "calibration_words": calibration_words.bound_words(calibration) if calibration is not None else None,
        "calibration_promise": calibration_words.promise_words(calibration) if calibration is not None else None,
        "sets": conformal.load(run.directory),
        "selective": selective.load(run.directory),
        "selective_saved_at": _saved_at(run_files(run).selective),
        "class_thresholds": class_thresholds.load(run.directory),
        "robustness": robustness.load(run.directory),
        "ood": reference.detector if reference is not None else None,
        "train_counts": reference.train_counts.astype(int).tolist() if reference is not None else None,
        "data_issues": issues.summary() if issues is not None else None,
        "groups": issues.underperforming_groups if issues is not None else None,
        "overlaps": issues.overlapping_classes if issues is not None else None,
    }


def intervals(evaluation, seed: int = 0) -> dict[str, list[float]]:
    """95% intervals: accuracy (Wilson) and macro F1 (bootstrap over the test photos, seeded)."""
    from scipy.stats import binomtest  # heavy: scipy

    labels = np.asarray(evaluation.labels)
    predicted = np.asarray(evaluation.probabilities).argmax(axis=1)
    n = len(labels)
    if not n:
        return {}
    right = int((predicted == labels).sum())
    low, high = binomtest(right, n).proportion_ci(0.95, method="wilson")
    present = np.unique(labels)
    rng = np.random.default_rng(seed)
    scores = [macro_f1(labels[rows], predicted[rows], present) for rows in rng.integers(0, n, size=(BOOTSTRAP, n))]
    return {"accuracy": [float(low), float(high)], "macro_f1": [float(q) for q in np.quantile(scores, [0.025, 0.975])]}


def macro_f1(labels: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> float:
    """scikit-learn's f1_score(labels=classes, average='macro', zero_division=0), in three bincounts."""
    size = int(max(labels.max(initial=0), predicted.max(initial=0), classes.max(initial=0))) + 1
    hits = np.bincount(labels[labels == predicted], minlength=size)[classes]
    both = np.bincount(labels, minlength=size)[classes] + np.bincount(predicted, minlength=size)[classes]
    return float(np.mean(np.where(both > 0, 2 * hits / np.maximum(both, 1), 0.0)))


def metadata(found: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML header: Hugging Face's fields and a `model-index` whose values are the run's metrics."""
    run, summary, config = found["run"], found["summary"], found["config"]
    results = [
        {"type": "accuracy", "value": summary["accuracy"], "name": "Accuracy"},
        {"type": "f1", "value": summary["macro"]["f1"], "name": "Macro F1", "args": {"average": "macro"}},
        {"type": "precision", "value": summary["macro"]["precision"], "name": "Macro precision"},
        {"type": "recall", "value": summary["macro"]["recall"], "name": "Macro recall"},
    ]
    if "top5_accuracy" in summary:
        results.append({"type": "top_5_accuracy", "value": summary["top5_accuracy"], "name": "Top-5 accuracy"})
    if found["calibration"] is not None:
        results.append(
            {"type": "ece", "value": found["calibration"]["ece_after"], "name": "Expected calibration error"}
        )
    if found["robustness"] is not None:
        results.append({"type": "mce", "value": found["robustness"].mce, "name": "Mean corruption error (15 x 5)"})
    for entry in results:
        entry["verified"] = False  # Hugging Face's flag for results it evaluated itself
    dataset = run.dataset_name
    return {
        "library_name": "keras",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "flora", "keras", config.backbone, "transfer-learning"],
        "datasets": [dataset],
        "metrics": ["accuracy", "f1"],
        "model-index": [
            {
                "name": f"flora-{run.run_id}",
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Image Classification"},
                        "dataset": {"name": dataset, "type": "imagefolder", "split": "test"},
                        "metrics": results,
                    }
                ],
            }
        ],
    }


def render(run: Run) -> str:
    """The card: `---` YAML `---` then Markdown."""
    found = facts(run)
    header = yaml.safe_dump(metadata(found), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body(found, __version__, time.time())}"


def write(run: Run, path: str | os.PathLike | None = None) -> Path:
    """Write the card (default: the run folder's model_card.md); its path."""
    target = Path(path) if path is not None else run_files(run).model_card
    write_bytes_atomic(target, render(run).encode("utf-8"))
    return target


def read_metadata(text: str) -> dict[str, Any]:
    """The YAML header of a card's text ({} without one)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    return yaml.safe_load(text[4:end]) if end > 0 else {}


def _saved_at(path) -> str | None:
    """When a stored file was last written, in UTC ('2026-11-26 08:05 UTC'); None when absent."""
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

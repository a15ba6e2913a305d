"""What a run keeps once its fit has ended: the stage after training, before the run is recorded as done.

  analysis.npz          the validation and test logits and pooled features the fit computed (core.runs.analysis)
  calibration.json      the temperature fitted on the validation logits
  conformal.json        prediction sets at 90% from the same arrays (Predict and the server offer them at once)
  evaluation.*          the test split's probabilities and the metrics derived from them
  ood.*                 the out-of-distribution reference, fitted while the fit's outputs are at hand
  tensorboard/          the test split's confusion matrix and metrics beside the per-epoch scalars

A multi-label run (issue 41) keeps its analysis arrays (with its photos' label rows), its threshold per label tuned
on validation (`label_thresholds.json`) and its test evaluation at those thresholds (`multilabel_evaluation.*`:
mAP, AP and F1 per label with bootstrap intervals); its test mAP is its summary. The single-label stages above
(temperature, prediction sets, the softmax metrics, the reference) do not apply to it as they are.

Each takes milliseconds but the reference (seconds: it passes a sample of training photos through the model
unless the fit's own training features are final). `finish_run` is called by the run's job
(core.run_job.execute) with what the fit handed on (core.train.training.Fit), so training itself only trains.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.datasets import DatasetIndex
from core.network.graph import head_logits_model, inference_model
from core.network.model import head_of
from core.results.evaluation.metrics import Evaluation
from core.results.evaluation.multilabel import MultilabelEvaluation
from core.results.probabilities import calibration, conformal, label_thresholds
from core.results.probabilities.foreign_features import FrozenBackbone
from core.results.probabilities.reference import KnownOutputs, ReferenceUnavailable, ensure_reference
from core.runs.analysis import RunAnalysis
from core.runs.curves import REFERENCE_STAGE
from core.runs.store import RunStore
from core.runtimes.choice import accelerated
from core.tracking.tensorboard import write_evaluation

if TYPE_CHECKING:
    from core.train.training import Fit

log = logging.getLogger("flora")


def finish_run(store: RunStore, run_id: str, fit: Fit, index: DatasetIndex, cache_root: Path, report) -> dict[str, Any]:
    """Write what run `run_id` keeps from `fit`, in the order readers expect; the test split's summary.

    `report(stage, force=True)`: the run's stage, as the pages show it (core.train.trainer.StageReporter).
    """
    run_dir = store.run_dir(run_id)
    fit.analysis.save(run_dir)
    if fit.analysis.test.multilabel:
        return finish_multilabel(store, run_id, fit, index)
    store_calibration(run_dir, fit.analysis)
    evaluation = Evaluation(
        probabilities=fit.analysis.test.probabilities,
        labels=fit.analysis.test.labels,
        classes=index.classes,
        paths=fit.analysis.test.paths,
        cache_positions=fit.analysis.test.positions,
    )
    evaluation.save(run_dir)
    write_evaluation(run_dir, fit.epochs_done, evaluation, calibration.stored_temperature(run_dir))
    summary = evaluation.summary()
    report(REFERENCE_STAGE, force=True)
    fit_reference(store, run_id, fit, index, cache_root, report)
    log.info(
        "test accuracy %.4f on %d images (best epoch %s)",
        summary["accuracy"],
        len(fit.analysis.test.labels),
        fit.best_epoch,
    )
    return summary


def finish_multilabel(store: RunStore, run_id: str, fit: Fit, index: DatasetIndex) -> dict[str, Any]:
    """A multi-label run's threshold per label, tuned on its validation photos, and its test evaluation at them; its
    test mAP as the summary."""
    run_dir = store.run_dir(run_id)
    config = store.get(run_id).train_config
    val, test = fit.analysis.val, fit.analysis.test
    thresholds = label_thresholds.fit(val.probabilities, val.targets, index.classes, config.threshold_precision)
    label_thresholds.save(thresholds, run_dir)
    rule = "best F1" if config.threshold_precision is None else f"precision {config.threshold_precision:g}"
    log.info("thresholds per label tuned on %d validation photos (%s)", thresholds.photos, rule)
    for note in thresholds.notes():
        log.warning("thresholds: %s", note)
    evaluation = MultilabelEvaluation.from_analysis(fit.analysis, thresholds.by_label())
    evaluation.save(run_dir)  # the bootstrap intervals: a second or so on a few thousand photos
    test_map = evaluation.mean_average_precision()
    log.info(
        "test mAP %s on %d photos (best epoch %s)",
        "-" if test_map is None else f"{test_map:.4f}",
        len(test.targets),
        fit.best_epoch,
    )
    return {"task": "multilabel", "map": test_map, "accuracy": None, "macro": {"f1": None}}


def fit_reference(store: RunStore, run_id: str, fit: Fit, index: DatasetIndex, cache_root: Path, report=None) -> None:
    """Fit the run's out-of-distribution reference now, while its images are decoded and at hand.

    It is the run's, not a server's: a server switching to this run then only loads it (a first switch used to
    spend most of its minute here). A run that cannot have one (a stop, a dataset that moved) still finishes;
    a server then fits it in the background on first use. The fit's own model runs the photos still to pass,
    through the runtime chosen here (core.runtimes), instead of model.keras loaded again and traced in Keras.
    """
    started = time.perf_counter()
    known = KnownOutputs(val=fit.outputs["val"], test=fit.outputs["test"], train_features=fit.train_features)
    try:
        run = store.get(run_id)
        make_model, frozen = None, None
        if fit.model is not None:

            def make_model():
                return accelerated(inference_model(fit.model, share_backbone=True), cache_root=cache_root)

            if fit.backbone_key is not None:
                frozen = FrozenBackbone(fit.backbone_key, head_logits(fit.model))
        ensure_reference(
            run,
            cache_root=cache_root,
            index=index,
            known=known,
            progress=report,
            make_model=make_model,
            frozen=frozen,
        )
    except (ReferenceUnavailable, OSError, ValueError) as e:
        log.warning("no out-of-distribution reference for run %s: %s", run_id, e)
        return
    log.info("out-of-distribution reference fitted in %.1fs", time.perf_counter() - started)


def store_calibration(run_dir: Path, analysis: RunAnalysis) -> None:
    """Fit the run's temperature on its validation logits now (milliseconds), so every predictor has it."""

    fitted = calibration.calibrate(analysis)
    calibration.save(fitted, run_dir)
    log.info(
        "calibration: temperature %.3f (test ECE %.3f -> %.3f)", fitted.temperature, fitted.before.ece, fitted.after.ece
    )
    # Prediction sets at 90% from the same arrays (milliseconds): Predict and the server offer them at once.
    try:
        sets = conformal.fit_run(run_dir)
        log.info(
            "prediction sets at 90%%: held-out coverage %.3f, mean size %.2f",
            sets.held_out.coverage,
            sets.held_out.mean_size,
        )
    except conformal.ConformalError as e:
        log.info("no prediction sets: %s", e)


def head_logits(classifier):
    """Pooled features -> logits through the classifier's own head, as the fit computed its splits' logits."""
    model = head_logits_model(head_of(classifier))
    return lambda features: np.asarray(model.predict_on_batch(np.asarray(features, np.float32)), np.float32)

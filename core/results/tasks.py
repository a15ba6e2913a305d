"""Analysis work on a finished run that may take a while, in the foreground (CLI) or as a background job.

  analysis      a run from before analysis.npz existed: rebuild its split, load model.keras, and
                store the validation and test logits and pooled features (once)
  tsne          the t-SNE map of those features (embedding.npz)
  train-features  pooled features of the training split alone (train_features.npz), for "photos like this"
  label-issues  pooled features of the training split (train_features.npz, through the feature
                cache when it has them), cross-validated probabilities, the ranked suspects
  tta           the validation and test photos in test-time augmentation's views (core.results.probabilities.tta), and
                the run's prediction sets again when its predictors now average the views
  label-next    the training split's features and the dataset's unlabelled photos' through the run
                (core.results.label_next.tasks); label-next-simulate: the strategy against random, measured
  data-issues   outliers, overlapping classes, underperforming groups, label health and the health check's
                duplicates, leaks and imbalance in one list (core.results.data_issues.report, data_issues.json)
  robustness    the test photos under the 15 ImageNet-C corruptions at 5 severities (core.results.evaluation.robustness)

Background jobs use the one job layer: `models/<run_id>/tasks/<kind>/` is a job folder (status,
log, stop flag) and `python -m core.results.tasks RUN_DIR KIND --data-dir DATA` is the process.
Decision for "compute the analysis": a background job, not a spinner. It is a forward pass of the
validation and test photos through ResNet-50: seconds at 64 px, but about 90 s for the 1,300 flower
photos at 224 px on this CPU and minutes for Oxford 102's 7,000, too long to hold a page's script.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.datasets import DatasetError
from core.errors import Cancelled
from core.inference import ModelMissing
from core.paths import cache_dir
from core.processes import TASK_LOG, JobFolder, JobState, JobStatus, exit_process
from core.progress import StageCallback
from core.results.dataset_features import DatasetSource, dataset_features
from core.results.evaluation.embedding import run_map
from core.results.label_next import tasks as label_next_tasks
from core.results.labels import issues as label_issues
from core.results.labels import out_of_sample
from core.results.labels import self_test as label_self_test
from core.results.probabilities.calibration import calibrate_run
from core.results.train_features import (  # noqa: F401  TrainFeatures: read by pages and tests through here
    FeaturesStopped,
    TrainFeatures,
    load_model,
    rebuild_data,
    training_features,
)
from core.runs.analysis import RunAnalysis, SplitArrays, softmax
from core.runs.files import run_files
from core.runs.record import Run
from core.runs.store import RunStore
from core.runtimes.choice import accelerated

log = logging.getLogger("flora")
KINDS = (
    *("analysis", "tsne", "train-features", "label-issues", "tta"),
    *("label-next", "label-next-simulate", "data-issues", "robustness"),
)


TaskStopped = FeaturesStopped  # the task was stopped on request (the features' own stop is the same)


@dataclass
class RunTaskStatus(JobStatus):
    """A run task's status: the job fields, what it computes, and where the datasets live."""

    kind: str = ""
    data_root: str = ""


def task_folder(run: Run, kind: str) -> JobFolder:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
    return JobFolder(run_files(run).task(kind), TASK_LOG, RunTaskStatus)


def task_status(run: Run, kind: str) -> RunTaskStatus | None:
    """The task's status (a dead process shown as failed), or None when it was never started."""
    folder = task_folder(run, kind)
    if not folder.status_path.exists():
        return None
    return folder.refresh(what=f"the {kind} task")


def launch(run: Run, kind: str, data_root: str | os.PathLike) -> RunTaskStatus:
    """Start `kind` for `run` in the background; an active one is returned instead of a second."""
    current = task_status(run, kind)
    if current is not None and current.active:
        return current
    folder = task_folder(run, kind)
    folder.directory.mkdir(parents=True, exist_ok=True)
    folder.clear_stop()
    folder.log_path.unlink(missing_ok=True)
    folder.write(
        RunTaskStatus(state=JobState.QUEUED, kind=kind, data_root=str(Path(data_root).resolve()), queued_at=time.time())
    )
    command = [sys.executable, "-m", "core.results.tasks", str(run.directory), kind, "--data-dir", str(data_root)]
    return folder.launch(command)


def stop(run: Run, kind: str) -> None:
    task_folder(run, kind).request_stop()


# ----------------------------------------------------------------------------- the run's data again


def compute_analysis(
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """Rebuild a run's split, load its model, and store analysis.npz (what newer runs store as they end).

    Raises:
        ModelMissing-like FileNotFoundError: the run has no model.
        DatasetError: the dataset changed.
    """
    from core.network.graph import features_and_logits_model  # heavy: keras
    from core.results.evaluation.metrics import Evaluation  # heavy: sklearn
    from core.train.batches import ExtractionBatches  # heavy: keras

    if not run.has_model:
        raise ModelMissing(run.run_id, run.state)
    data = rebuild_data(run, data_root, progress)
    positions = np.concatenate([data.split.val, data.split.test])
    if run.has_evaluation:
        stored = Evaluation.load(run.directory).paths
        rebuilt = [data.cache.paths[i] for i in data.split.test]
        if sorted(stored) != sorted(rebuilt):
            raise DatasetError(
                f"the rebuilt test split of run {run.run_id} is not the one it was evaluated on "
                f"({len(rebuilt)} photos vs {len(stored)}): the split rules changed since; retrain the run"
            )
    size = run.train_config.image_size
    batch = 32
    batches = ExtractionBatches(data.cache, positions, size, batch)
    sample = batches[0][0] if len(batches) else None
    model = accelerated(
        features_and_logits_model(load_model(run)), cache_root=cache_dir(data_root), sample=sample, batch=batch
    )
    pooled, logits = [], []
    for i in range(len(batches)):
        if should_stop and should_stop():
            raise TaskStopped("stopped on request")
        x = batches[i]
        x = x[0] if isinstance(x, tuple) else x
        f, z = model.predict_on_batch(x.astype("float32"))
        pooled.append(np.asarray(f, dtype=np.float32))
        logits.append(np.asarray(z, dtype=np.float32))
        if progress:
            progress("computing logits and features", min((i + 1) * batch, len(positions)), len(positions))
    pooled_all = np.concatenate(pooled)[: len(positions)]
    logits_all = np.concatenate(logits)[: len(positions)]
    n_val = len(data.split.val)
    parts = []
    for _name, rows, where in (("val", data.split.val, slice(0, n_val)), ("test", data.split.test, slice(n_val, None))):
        parts.append(
            SplitArrays(
                logits=logits_all[where],
                features=pooled_all[where],
                labels=data.cache.labels[rows],
                paths=[data.cache.paths[i] for i in rows],
                positions=rows,
            )
        )
    analysis = RunAnalysis(data.classes, *parts)
    analysis.save(run.directory)
    return analysis


def compute_label_issues(
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """Out-of-sample probabilities for every image of the run and the ranked suspects (label_issues.json)."""
    analysis = RunAnalysis.load(run.directory)
    temperature = calibrate_run(run.directory).temperature
    train = training_features(run, data_root, progress, should_stop)
    classes = len(analysis.classes)
    train_labels, train_paths = train.labels, train.paths
    # Reduced once, for both the cross-validation and the self-test; the 2,048-wide features are let go
    # (300k photos: 1 GB of float16 no longer held while the probabilities are made).
    x = out_of_sample.reduce(train.features, out_of_sample.dimensions(classes))
    del train
    if progress:
        progress("cross-validating the training split", 0, 2)
    scored = out_of_sample.out_of_sample(x, train_labels, classes, reduced=True)
    if progress:
        progress("measuring the ranking on planted label flips", 1, 2)
    trust = label_self_test.self_test(x, train_labels, classes, reduced=True)
    parts = {"train": (scored.probabilities, train_labels, train_paths)}
    for name in ("val", "test"):
        part = analysis.split(name)
        parts[name] = (softmax(part.logits, temperature), part.labels, part.paths)
    result = label_issues.review(
        parts,
        analysis.classes,
        f"{out_of_sample.FOLDS}-fold cross-validated Gaussian classes with a shared covariance on the pooled "
        f"features ({scored.fit.words()})"
        if scored.fit
        else "the training labels (too few photos to cross-validate)",
        scored=scored,
        trust=trust,
    )
    label_issues.save(result, run.directory)
    return result


def dataset_label_issues(source: DatasetSource, progress: StageCallback | None = None):
    """Suspected label errors of a dataset without a run: pooled features of every photo through a
    ResNet-50 with `weights` (the feature cache's, when it has them), cross-validated probabilities,
    the confident-learning rule. The labels are the folders' (corrections are not applied)."""
    found = dataset_features(source, progress)
    seed, weights = source.seed, source.weights
    index, cache, features = found.index, found.cache, found.features
    if progress:
        progress("cross-validating", 0, 1)
    x = out_of_sample.reduce(features, out_of_sample.dimensions(len(index.classes)), seed)
    scored = out_of_sample.out_of_sample(x, cache.labels, len(index.classes), seed=seed, reduced=True)
    trust = label_self_test.self_test(x, cache.labels, len(index.classes), seed=seed, reduced=True)
    return label_issues.review(
        {"all": (scored.probabilities, cache.labels, list(cache.paths))},
        index.classes,
        f"{out_of_sample.FOLDS}-fold cross-validated Gaussian classes with a shared covariance on ResNet-50 "
        f"({weights}) features",
        scored=scored,
        trust=trust,
    )


def compute(kind: str, run: Run, data_root, progress=None, should_stop=None):
    """Do task `kind` in this process."""
    if kind == "analysis":
        return compute_analysis(run, data_root, progress, should_stop)
    if kind == "tsne":
        if progress:
            progress("t-SNE", 0, 1)
        return run_map(run.directory, "tsne")
    if kind == "train-features":
        return training_features(run, data_root, progress, should_stop)
    if kind == "label-issues":
        return compute_label_issues(run, data_root, progress, should_stop)
    if kind == "tta":
        from core.results.probabilities import conformal, tta  # heavy: pandas (tta's McNemar test)

        report = tta.measure(run, data_root, progress, should_stop)
        conformal.run_sets(run.directory)
        return report
    if kind in ("label-next", "label-next-simulate"):
        return label_next_tasks.compute(kind, run, data_root, progress, should_stop)
    if kind == "robustness":
        from core.results.evaluation import robustness  # heavy: the corruptions' scipy and OpenCV, only for this task

        try:
            return robustness.measure(run, data_root, progress, should_stop)
        except robustness.RobustnessStopped as e:
            raise TaskStopped(str(e)) from None
    if kind == "data-issues":
        from core.results.data_issues import report as data_issues  # heavy: scipy, pandas (only for this task)

        return data_issues.for_run_saved(run, data_root, progress, should_stop)
    raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind!r}")


def main(argv: list[str] | None = None) -> int:
    """The background process: claim the task folder, compute, record how it ended."""
    parser = argparse.ArgumentParser(prog="python -m core.results.tasks")
    parser.add_argument("run_dir")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s flora: %(message)s")
    run_dir = Path(args.run_dir)
    run = RunStore(run_dir.parent).get(run_dir.name)
    folder = task_folder(run, args.kind)
    folder.claim(state=JobState.RUNNING, started_at=time.time(), stage="starting")
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or (total and done >= total):
            last[0] = now
            folder.update(stage=stage, stage_progress=(int(done), int(total)))

    try:
        compute(args.kind, run, args.data_dir, progress, folder.stop_requested)
    except Cancelled as e:  # every stop on request, however deep it was noticed
        folder.update(state=JobState.STOPPED, note=str(e), finished_at=time.time(), stage=None)
        return 0
    except Exception as e:
        log.exception("%s task of run %s failed", args.kind, run.run_id)
        folder.update(state=JobState.FAILED, error=f"{type(e).__name__}: {e}", finished_at=time.time(), stage=None)
        return 1
    folder.update(state=JobState.DONE, finished_at=time.time(), stage=None, stage_progress=None)
    return 0


if __name__ == "__main__":
    exit_process(main())

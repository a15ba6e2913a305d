"""Log a finished run, or a sweep and its trials, to an MLflow tracking server (`core train --track URI`).

A run becomes one MLflow run in the experiment `flora-<dataset>`: its settings as parameters, every epoch's
loss, accuracy, validation loss and accuracy and learning rate as metrics stepped by epoch (at the times they
were measured), the test figures (accuracy, macro F1, each class's F1, the temperature) as final metrics, the
confusion matrix and the curves as PNG artifacts beside evaluation.json and metrics.jsonl, and the model as an
MLflow pyfunc model (core.tracking.pyfunc). A sweep becomes a parent run with its trials as child runs
(their settings, validation figures and per-epoch curves), and the run promoted from its best trial a child too.

Logging happens once the run has ended, from what the run store holds: a tracking server that is down or slow
never costs a training run, and the run says so in its log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from core.fileio import read_jsonl
from core.processes import JobState
from core.results.probabilities.calibration import stored_temperature
from core.runs.files import run_files
from core.runs.record import Run
from core.runs.store import RunStore
from core.tracking import run_url
from core.tracking.pictures import confusion_png, curves_png

log = logging.getLogger("flora")
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "duration", "val_map")  # val_map: multi-label
STATUS = {JobState.DONE: "FINISHED", JobState.STOPPED: "KILLED", JobState.FAILED: "FAILED"}
MODEL_NAME = "model"
# what the pyfunc model needs installed to load (the same versions as here), not inferred by loading it again
REQUIREMENTS = ("keras", "tensorflow", "numpy", "pandas", "pillow", "simplejpeg", "opencv-python-headless", "scipy")


def experiment_name(run: Run) -> str:
    return f"flora-{run.dataset_name or 'runs'}"


def metric_name(text: str) -> str:
    """MLflow keeps letters, digits, _ - . / and spaces in a metric's name."""
    return re.sub(r"[^\w\-./ ]", "_", text)


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


def track_run(store: RunStore, run_id: str, uri: str) -> dict[str, Any]:
    """Log the ended run `run_id` to `uri` once, and keep the MLflow run's id in its status (`mlflow`, by URI):
    a run already logged there is not logged again. What `core train --json` says under "mlflow": the tracking
    URI, the MLflow run and experiment ids, `already_logged`, the MLflow page's `url` (an http server), or the
    `error` that kept it from being logged (logged as a warning: tracking never fails a run)."""
    run = store.get(run_id)
    known = (run.status.mlflow or {}).get(uri)
    if known:
        log.info("MLflow: run %s was already logged at %s as %s: not logged again", run_id, uri, known["run_id"])
        return tracked(uri, known, already=True)
    try:
        mlflow_id, experiment_id = _log_run(run, uri)
    except Exception as e:  # a server down, refused, or an MLflow error: the run itself is fine
        error = f"{type(e).__name__}: {e}"
        log.warning("MLflow: could not log run %s: %s (the same command with --track logs it later)", run_id, error)
        return {"tracking_uri": uri, "run_id": None, "already_logged": False, "error": error}
    entry = {"run_id": mlflow_id, "experiment_id": experiment_id}
    store.set_status(run_id, mlflow={**(store.get(run_id).status.mlflow or {}), uri: entry})
    return tracked(uri, entry, already=False)


def tracked(uri: str, entry: dict[str, Any], already: bool) -> dict[str, Any]:
    result = {"tracking_uri": uri, "run_id": entry["run_id"], "experiment_id": entry.get("experiment_id")}
    result["already_logged"] = already
    url = run_url(uri, entry)
    if url:
        result["url"] = url
    return result


def log_run(run: Run, uri: str, parent_run_id: str | None = None) -> str:
    """Log `run` (ended: done, stopped or failed) to the tracking server at `uri`; the MLflow run id."""
    return _log_run(run, uri, parent_run_id)[0]


class TrackingServerDown(ConnectionError):
    """No MLflow tracking server answers at the URI (refused, no such host, no answer in time)."""


def answering(uri: str, timeout: float = 10) -> None:
    """Raise TrackingServerDown at once where nothing answers an http(s) tracking URI at all. MLflow's own client
    retries each request 7 times with growing waits (minutes per request): `core train --track` on a server that
    is down sat that long after its run had ended. Any HTTP answer (an error, a sign-in asked by a proxy) is a
    server there: MLflow's client then goes on with its own retries and messages."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingServerDown(f"no MLflow tracking server answers at {uri} ({reason})") from None


@contextlib.contextmanager
def tracking_at(uri: str):
    """MLflow's fluent calls (an active run, `log_artifact`, `pyfunc.log_model`) go to `uri` inside this block only.
    `mlflow.set_tracking_uri` alone is process-wide and also sets $MLFLOW_TRACKING_URI: in a long-lived process (the
    app, a test worker) every later `core train` in it would then log to that server, and wait out its retries
    once it is gone. Both are put back as they were, an unset variable unset."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    answering(uri)
    before, variable = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable


def _log_run(run: Run, uri: str, parent_run_id: str | None = None) -> tuple[str, str]:
    """`log_run`: the MLflow run id and its experiment's id."""
    with tracking_at(uri):
        return _log_run_at(run, uri, parent_run_id)


def _log_run_at(run: Run, uri: str, parent_run_id: str | None) -> tuple[str, str]:
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(uri)
    experiment = mlflow.set_experiment(experiment_name(run))
    tags = {"flora.run_id": run.run_id, "flora.dataset": run.dataset_path, "flora.state": str(run.state.value)}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=run.run_id, tags=tags) as active:
        mlflow_id = active.info.run_id
        mlflow.log_params(flat_settings(run.train_config.to_dict()))
        epochs = [row for row in read_jsonl(run_files(run).metrics) if row.get("kind") == "epoch"]
        metrics = [
            Metric(name, float(row[name]), int(float(row.get("time", 0)) * 1000), int(row["epoch"]))
            for row in epochs
            for name in EPOCH_METRICS
            if isinstance(row.get(name), int | float)
        ]
        for start in range(0, len(metrics), 900):  # the server takes at most 1000 metrics a batch
            client.log_batch(mlflow_id, metrics=metrics[start : start + 900])
        if run.status.map is not None:  # a multi-label run's test figure (it has no accuracy)
            mlflow.log_metric("test_map", run.status.map)
        temperature = stored_temperature(run.directory)
        if temperature:
            mlflow.log_metric("temperature", temperature)
        with tempfile.TemporaryDirectory(prefix="flora-mlflow-") as scratch:
            folder = Path(scratch)
            curves = {
                name: [(int(r["epoch"]), float(r[name])) for r in epochs if r.get(name) is not None]
                for name in EPOCH_METRICS[:4]
            }
            (folder / "curves.png").write_bytes(curves_png(curves, f"run {run.run_id}"))
            mlflow.log_artifact(str(folder / "curves.png"))
            mlflow.log_artifact(str(run_files(run).metrics))
            if run.has_evaluation:
                _log_evaluation(run, folder)
            if run.has_model:
                _log_model(run, folder)
        mlflow.set_tag("flora.finished", str(run.state.value))
    client.set_terminated(mlflow_id, STATUS.get(run.state, "FINISHED"))
    log.info("MLflow: run %s logged as %s at %s", run.run_id, mlflow_id, uri)
    return mlflow_id, str(experiment.experiment_id)


def _log_evaluation(run: Run, folder: Path) -> None:
    import mlflow

    from core.results.evaluation.metrics import Evaluation  # heavy: sklearn

    evaluation = Evaluation.load(run.directory)
    summary = evaluation.summary()
    figures = {"test_accuracy": summary["accuracy"], "test_macro_f1": summary["macro"]["f1"]}
    figures.update({metric_name(f"f1/{name}"): row["f1"] for name, row in summary["per_class"].items()})
    mlflow.log_metrics(figures)
    (folder / "confusion_matrix.png").write_bytes(confusion_png(evaluation.confusion_matrix(), evaluation.classes))
    mlflow.log_artifact(str(folder / "confusion_matrix.png"))
    (folder / "evaluation.json").write_text(json.dumps(summary, indent=1))
    mlflow.log_artifact(str(folder / "evaluation.json"))


def _log_model(run: Run, folder: Path) -> None:
    """The run as a pyfunc model: its folder's model, settings and temperature, and Flora's core package."""
    import importlib.metadata

    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from core.tracking.pyfunc import RUN_ARTIFACT, RUN_FILES, FloraModel  # heavy: mlflow

    staged = folder / "run" / run.run_id
    staged.mkdir(parents=True)
    for name in RUN_FILES:
        if run.path(name).exists():
            shutil.copy2(run.path(name), staged / name)
    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema(
            [
                *(ColSpec("double", name) for name in run.classes),
                ColSpec("string", "labels" if run.multilabel else "label"),
            ]
        ),
    )
    requirements = [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]
    mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=FloraModel(),
        artifacts={RUN_ARTIFACT: str(staged)},
        code_paths=[str(Path(__file__).resolve().parents[1])],
        pip_requirements=requirements,
        signature=signature,
    )


def log_sweep(result: dict[str, Any], trials: list[dict[str, Any]], uri: str, promoted: Run | None = None) -> str:
    """A sweep as a parent MLflow run and each trial as a child (`result`: what `core sweep --json` prints;
    `trials`: its trial rows with their curves); the promoted run, when there is one, as a child too."""
    with tracking_at(uri):
        return _log_sweep_at(result, trials, uri, promoted)


def _log_sweep_at(result: dict[str, Any], trials: list[dict[str, Any]], uri: str, promoted: Run | None) -> str:
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(uri)
    name = f"flora-{Path(result['dataset']).name}"
    experiment = mlflow.set_experiment(name)
    tags = {"flora.sweep_id": result["sweep_id"], "flora.dataset": result["dataset"]}
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"sweep {result['sweep_id']}", tags=tags):
        parent = mlflow.active_run().info.run_id
        mlflow.log_params(flat_settings(result.get("fixed") or {}, "fixed."))
        mlflow.log_dict(result.get("space") or {}, "space.json")
        best = result.get("best") or {}
        if best.get("val_loss") is not None:
            mlflow.log_metrics({"best_val_loss": best["val_loss"], "best_trial": best.get("number", -1)})
        for trial in trials:
            with mlflow.start_run(
                experiment_id=experiment.experiment_id,
                run_name=f"trial {trial['number']}",
                nested=True,
                tags={"flora.sweep_id": result["sweep_id"], "flora.trial_state": str(trial["state"])},
            ) as child:
                mlflow.log_params({k: str(v) for k, v in trial["params"].items()})
                figures = {k: trial[k] for k in ("val_loss", "val_accuracy", "best_epoch", "seconds")}
                mlflow.log_metrics({k: float(v) for k, v in figures.items() if isinstance(v, int | float)})
                points = [
                    Metric(key, float(point[key]), int(1000 * (trial.get("started_at") or 0)), int(point["epoch"]))
                    for point in trial.get("curve") or []
                    for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                    if isinstance(point.get(key), int | float)
                ]
                if points:
                    client.log_batch(child.info.run_id, metrics=points[:900])
    if promoted is not None:
        log_run(promoted, uri, parent_run_id=parent)
    log.info("MLflow: sweep %s logged as %s with %d trials at %s", result["sweep_id"], parent, len(trials), uri)
    return parent


def log_quietly(what: str, call, *args, **kwargs) -> str | None:
    """Log, and on any failure say so in the log and carry on: tracking never fails a run or a sweep."""
    try:
        return call(*args, **kwargs)
    except Exception as e:  # a server down, refused, or an MLflow error: the run itself is fine
        log.warning("MLflow: could not log %s: %s: %s", what, type(e).__name__, e)
        return None

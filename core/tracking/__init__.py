"""A run seen from the tools people already use: TensorBoard event files in every run's folder, and MLflow.

- `tensorboard`: `<run>/tensorboard/` event files, per-epoch scalars as each epoch ends and the test
  confusion matrix as an image when the run is evaluated (`tensorboard --logdir models/` shows every run).
- `mlflow_log`: `core train --track URI` (or `MLFLOW_TRACKING_URI`, or the Train form's field) logs a finished
  run to an MLflow tracking server: settings, per-epoch curves, final metrics, the confusion matrix and curves
  as artifacts, and the model as an MLflow pyfunc model (`pyfunc`) that answers as `core predict` does;
  a sweep logs itself as a parent run and its trials as child runs.
- `pictures`: the confusion matrix and the curves as PNG images (Pillow), for both.
"""

from __future__ import annotations

import os

TRACKING_ENV = "MLFLOW_TRACKING_URI"


def tracking_uri(explicit: str | None = None) -> str | None:
    """Where to log: `explicit` (--track), else $MLFLOW_TRACKING_URI, else None (no tracking)."""
    value = explicit if explicit is not None else os.environ.get(TRACKING_ENV)
    return value.strip() or None if value else None


def run_url(uri: str, entry: dict) -> str | None:
    """The MLflow web page of a logged run (`entry`: {"run_id", "experiment_id"}, as a run's status keeps it
    under its tracking URI), for a tracking server reached over http(s); None for a local store."""
    if not uri.startswith(("http://", "https://")) or not entry.get("run_id") or not entry.get("experiment_id"):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{entry['experiment_id']}/runs/{entry['run_id']}"

"""The Train form's MLflow field: where a run is logged when it ends (core.tracking), empty for nowhere."""

from __future__ import annotations

import streamlit as st

from core.tracking import TRACKING_ENV, tracking_uri


def track_choice() -> str | None:
    """The MLflow tracking URI the run will be logged to (default $MLFLOW_TRACKING_URI), or None."""
    value = st.text_input(
        "MLflow tracking URI (optional)",
        value=tracking_uri() or "",
        key="train_track",
        placeholder="http://127.0.0.1:5000",
        help="When the run ends, Flora logs it to this MLflow tracking server: its settings, per-epoch curves, test "
        "figures, the confusion matrix and curves as images, and the model (an MLflow pyfunc model that answers as "
        f"Flora's predict does). Empty: not logged (${TRACKING_ENV} fills it in). Every run also writes TensorBoard "
        "files in its folder: `tensorboard --logdir models/`.",
    )
    return tracking_uri(value) if value.strip() else None

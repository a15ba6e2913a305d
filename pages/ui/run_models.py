"""One cached model per run for every page: the Grad-CAM explainer and the served model (with its out-of-distribution
reference), each loaded once per process (st.cache_resource, shared by every session).

Both are keyed by a `ModelKey`: the run store, the run id and its model file's time, so the same run in another
store is another model, and a run trained again loads its new model. Keras is imported when a model is first
needed, never when a page is imported.
"""

from __future__ import annotations

from typing import NamedTuple

import streamlit as st

from core.runs.record import Run
from core.runs.store import RunStore


class ModelKey(NamedTuple):
    """What names one loaded model of a run (hashable: cached functions take it as an argument)."""

    models_root: str
    run_id: str
    model_mtime: float | None


def key_of(run: Run) -> ModelKey:
    return ModelKey(str(run.directory.parent), run.run_id, run.model_mtime)


def _run(key: ModelKey) -> Run:
    return RunStore(key.models_root).get(key.run_id)


@st.cache_resource(show_spinner="Loading the run's model for the heatmaps (first time only)…", max_entries=3)
def explainer(key: ModelKey):
    """The run's model split for Grad-CAM (core.results.evaluation.explain.Explainer); maps cached in the run folder."""
    from core.results.evaluation.explain import Explainer

    return Explainer(_run(key))


@st.cache_resource(
    show_spinner="Loading the model and its out-of-distribution reference (first time only)…", max_entries=3
)
def served_model(key: ModelKey, data_root: str):
    """The run's model as the server runs it (core.serving.engine.ServedModel): calibrated, with its OOD check."""
    from core.serving.engine import ServedModel

    return ServedModel(_run(key), data_root)

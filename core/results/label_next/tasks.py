"""Label-next as background work on a run: prepare the features it ranks on, and measure its saving against random.

label-next            the training split's features (core.results.train_features) and the unlabelled photos'
                      through the run (core.results.label_next.data), stored in the run folder
label-next-simulate   the training split's labels hidden and labelled again batch by batch with each strategy,
                      scored on the validation split (core.results.label_next.simulation); label_next_simulation.json
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from core.fileio import read_json, write_json_atomic
from core.progress import StageCallback
from core.results.label_next import data as label_next_data
from core.results.train_features import training_features
from core.runs.analysis import RunAnalysis
from core.runs.files import run_files
from core.runs.record import Run

SIMULATION_VERSION = 1


def compute(
    kind: str,
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    if kind == "label-next":
        training_features(run, data_root, progress, should_stop)
        return label_next_data.prepare_run(run, data_root, progress, should_stop)
    if kind == "label-next-simulate":
        return simulate_run(run, data_root, progress=progress, should_stop=should_stop)
    raise ValueError(f"kind must be label-next or label-next-simulate. Received: kind={kind!r}")


def simulate_run(
    run: Run,
    data_root: str | os.PathLike,
    seeds: int = 3,
    batch: int | None = None,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """The saving measured on the run's own photos: its training split as the pool, its validation split to score."""
    train = training_features(run, data_root, progress, should_stop)
    analysis = RunAnalysis.load(run.directory)
    val = analysis.split("val")
    result = label_next_data.simulate_features(
        train.features, train.labels, val.features, val.labels, len(analysis.classes), seeds, batch,
        progress, should_stop,
    )  # fmt: skip
    result = {
        "version": SIMULATION_VERSION,
        "run_id": run.run_id,
        "source": "the run's training split",
        "measured_at": time.time(),
        **result,
    }
    write_json_atomic(run_files(run).label_next_simulation, result)
    return result


def stored_simulation(run_dir: str | os.PathLike) -> dict | None:
    data = read_json(run_files(run_dir).label_next_simulation)
    return data if isinstance(data, dict) and data.get("version") == SIMULATION_VERSION else None

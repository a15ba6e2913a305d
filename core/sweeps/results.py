"""What a sweep shows: its trials as rows, the best with its settings, and which settings mattered.

`Publisher` rewrites the sweep folder's trials.json (and the status's counts) at the start and end
of every trial, so the page and `python -m core sweeps --show` read one small file instead of
opening Optuna's study while the sweep writes to it.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from core.settings.config import TrainConfig
from core.sweeps.space import SearchSpace, config_for, display_value
from core.sweeps.store import SweepStore

log = logging.getLogger("flora")
MIN_TRIALS_FOR_IMPORTANCE = 3  # completed trials before Optuna's importance says anything
STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.RUNNING: "running",
    TrialState.FAIL: "failed",
    TrialState.WAITING: "waiting",
}


class Publisher:
    """Writes trials.json (every trial, the best, the importances) and the status's counts."""

    def __init__(self, store: SweepStore, sweep_id: str, fixed: TrainConfig, space: SearchSpace):
        self.store, self.sweep_id, self.fixed, self.space = store, sweep_id, fixed, space
        self.importance: dict[str, float] = {}

    def publish(self, study: optuna.Study, importance: bool = False) -> None:
        if importance:
            self.importance = param_importance(study)
        snapshot = study_snapshot(study, self.fixed, self.importance)
        self.store.write_trials(self.sweep_id, snapshot)
        best = snapshot["best"] or {}
        rows = snapshot["trials"]
        self.store.update(
            self.sweep_id,
            trials_done=sum(r["state"] in ("complete", "pruned") for r in rows),
            trials_pruned=sum(r["state"] == "pruned" for r in rows),
            best_trial=best.get("number"),
            best_val_loss=best.get("val_loss"),
            best_val_accuracy=best.get("val_accuracy"),
            best_val_map=best.get("val_map"),
            **({} if any(r["state"] == "running" for r in rows) else {"trial_running": None}),
        )


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as the CLI and the page show it (raw params, and their display form in `shown`)."""
    attrs = trial.user_attrs
    value = trial.value if trial.state is TrialState.COMPLETE else attrs.get("val_loss")
    if attrs.get("val_map") is not None:  # a multi-label trial: its objective is 1 - mAP, its loss is its own
        value = attrs.get("val_loss")
    return {
        "number": trial.number,
        "state": STATES.get(trial.state, trial.state.name.lower()),
        "params": dict(trial.params),
        "shown": {name: display_value(name, raw) for name, raw in trial.params.items()},
        "val_loss": value,
        "val_accuracy": attrs.get("val_accuracy"),
        "val_map": attrs.get("val_map"),  # a multi-label trial's (what it is chosen by)
        "best_epoch": attrs.get("best_epoch"),
        "epochs_run": attrs.get("epochs_run"),
        "seconds": attrs.get("seconds"),
        "started_at": trial.datetime_start.timestamp() if trial.datetime_start else None,
        "finished_at": trial.datetime_complete.timestamp() if trial.datetime_complete else None,
        "note": attrs.get("note"),
        "worker": attrs.get("worker"),  # the Ray worker that ran it; None: the sweep's own process
        "curve": attrs.get("curve", []),
    }


def study_snapshot(study: optuna.Study, fixed: TrainConfig, importance: dict[str, float]) -> dict[str, Any]:
    """{"trials": [rows, in order], "best": the best complete trial with its TrainConfig, "importance": ...}."""
    trials = study.get_trials(deepcopy=False)
    rows = [trial_row(t) for t in trials if t.state is not TrialState.WAITING]
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    best = None
    if complete:
        chosen = min(complete, key=lambda t: t.value)
        best = {**trial_row(chosen), "config": config_for(fixed, chosen.params).to_dict()}
    return {"trials": rows, "best": best, "importance": importance, "updated_at": time.time()}


def most_accurate(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The complete trial with the highest validation accuracy (the best trial is chosen by loss, not by this)."""
    complete = [r for r in rows if r["state"] == "complete" and r.get("val_accuracy") is not None]
    return max(complete, key=lambda r: (r["val_accuracy"], -r["number"])) if complete else None


def param_importance(study: optuna.Study) -> dict[str, float]:
    """Optuna's importance of each searched setting for the validation loss (empty until it can be told)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as e:
        log.debug("importance not computed: %s", e)
        return {}
    return {name: float(value) for name, value in found.items() if math.isfinite(value)}

"""Hyperparameter sweeps on cached features: Optuna searches head settings, the best becomes a run.

A sweep is a dataset, fixed settings (image size, weights, augmentation, epochs...) and a search
space over the head phase's settings (`space`). Its process (`search.run_sweep`, started by
`launch`) decodes the images and extracts the backbone's features once, through the feature cache,
then runs Optuna trials that each fit only a new head on them: seconds per trial. The validation
split chooses; the test split is never used to choose. `launch.promote` trains the best trial's
settings as an ordinary run, which is evaluated on the test split like any other.

Sweeps are background jobs of `core.processes`: a folder per sweep under `models/.sweeps/`
(`store`), stoppable, and resumable from Optuna's SQLite study in that folder.

  space.py    the search space: what may vary, its JSON form, its checks
  store.py    sweep folders, SweepStatus, the trials snapshot the page reads
  launch.py   submit / launch / stop / promote (no Keras, no Optuna: the page imports it)
  search.py   the sweep process: features once, then the Optuna study
  results.py  trials.json: the trials, the best and the importances, written after each trial
"""

from core.sweeps.launch import (
    ACTIVE,
    FINISHED,
    NEW,
    SweepSubmission,
    best_config,
    check_request,
    launch,
    promote,
    resubmit,
    stop,
    submit,
    sweep_command,
)
from core.sweeps.space import DEFAULT_SPACE, SEARCHABLE, SearchSpace, SpaceError, default_space, parse_space
from core.sweeps.store import Sweep, SweepStatus, SweepStore

__all__ = [
    "ACTIVE",
    "DEFAULT_SPACE",
    "FINISHED",
    "NEW",
    "SEARCHABLE",
    "SearchSpace",
    "SpaceError",
    "Sweep",
    "SweepStatus",
    "SweepStore",
    "SweepSubmission",
    "best_config",
    "check_request",
    "default_space",
    "launch",
    "parse_space",
    "promote",
    "resubmit",
    "stop",
    "submit",
    "sweep_command",
]

"""Item 8: a hyperparameter sweep on cached features against ordinary runs of the plain way.

Ours: `python -m core sweep`'s engine (`core.sweeps.search.run_sweep`) from a cold feature cache:
decode (cached, not timed, as for item 1), extract the features once (clean + every augmented view
the space may use), then N Optuna trials of the default space, each fitting only a head, with the
median pruner and early stopping on. Timed end to end.

Baselines, in the same process on the same decoded images:
  * the plain way: an ordinary run per trial with `feature_cache=False` (augmentation inside the
    model, a full forward pass through the frozen ResNet-50 every epoch), trained with the settings
    the sweep's first trials drew. Only `scale.plain_runs` of them are timed; the N-run figure is
    their mean times N (said so in the row's notes): at full scale each takes minutes on a CPU.
  * one ordinary Flora run (feature cache on, cold), end to end: the sweep should cost at most 3x it.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

from core import run_job
from core.bench.cached_training import _warm_up
from core.bench.common import BACKBONE, Row, Scale, link_subset, remove, time_row, timed
from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from core.paths import cache_dir, features_dir
from core.processes import JobState
from core.runs.store import RunStore
from core.settings.config import AUGMENT_PRESETS, TrainConfig
from core.sweeps import SweepStore, default_space, submit
from core.sweeps.space import config_for
from core.train import jobs

log = logging.getLogger("flora")
ITEM = "8 hyperparameter sweep"
VIEWS = 2  # cached augmented views per training image in the fixed settings
MAX_SWEEP_VS_RUN = 3.0  # the whole sweep should take at most this many cold ordinary runs


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    from core.sweeps.search import run_sweep  # heavy: keras

    data = dataset
    if scale.train_per_class is not None:
        data = link_subset(dataset, workdir / "photos", scale.train_per_class)
    data_root = workdir / "data"
    models = workdir / "models"
    runs = RunStore(models)
    fixed = TrainConfig(
        image_size=scale.train_size,
        weights="none",  # a frozen forward pass costs the same whatever the weights' values
        epochs=scale.epochs,
        augment=AUGMENT_PRESETS["standard"],
        augmented_views=VIEWS,
        backbone=BACKBONE,
    )
    index = scan_dataset(data)
    ingest(index, fixed.cache_size, cache_dir(data_root))  # the decoded images every side reads; not timed
    _warm_up(fixed.image_size)
    features = features_dir(cache_dir(data_root))

    def ordinary(config: TrainConfig):
        submission = jobs.submit(runs, data, config, force=True)
        with timed() as timing:
            status = run_job.execute(runs, submission, data_root, console=False)
        if status.state is not JobState.DONE:
            raise RuntimeError(f"run {submission.run_id} ended {status.state}: {status.error}")
        return timing, status

    remove(features)
    one_run, one_status = ordinary(fixed)
    log.info("bench: one cold ordinary run in %.1f s", one_run.wall)

    remove(features)
    space = default_space(fixed)
    submission = submit(models, data, fixed, space, trials=scale.sweep_trials)
    sweeps = SweepStore(models)
    with timed() as sweep_time:
        status = run_sweep(sweeps, submission.sweep.sweep_id, data_root, console=False)
    if status.state is not JobState.DONE:
        raise RuntimeError(f"sweep ended {status.state}: {status.error}")
    snapshot = sweeps.get(submission.sweep.sweep_id).trials()
    trials = [row for row in snapshot["trials"] if row["state"] in ("complete", "pruned")]
    log.info("bench: %d-trial sweep in %.1f s", len(trials), sweep_time.wall)

    plain = []
    for row in trials[: scale.plain_runs]:  # the trials' own settings, the plain way
        config = config_for(fixed, row["params"]).replace(feature_cache=False)
        timing, plain_status = ordinary(config)
        plain.append((timing, plain_status, row))
        log.info("bench: plain run of trial %d's settings in %.1f s", row["number"], timing.wall)
    per_run = statistics.mean(t.wall for t, _, _ in plain)
    per_run_cpu = statistics.mean(t.cpu for t, _, _ in plain)
    n = len(trials)
    baseline = per_run * n
    split = one_status.split
    what = (
        f"{len(index.entries)} photos ({split['train']} train / {split['val']} val / {split['test']} test) at "
        f"{fixed.image_size} px, weights none, augmentation 'standard', up to {fixed.epochs} epochs per trial "
        f"(early stopping patience {fixed.early_stopping_patience}), default space ({', '.join(space)})"
    )
    best = snapshot["best"] or {}
    extrapolated = len(plain) < n
    baseline_note = (
        f"the plain-way baseline is {n} x the mean of {len(plain)} plain run(s) actually timed "
        f"({', '.join(f'{t.wall:.0f} s' for t, _, _ in plain)}, with the settings of trial(s) "
        f"{', '.join(str(r['number']) for *_, r in plain)}, feature cache off), EXTRAPOLATED to {n} runs"
        if extrapolated
        else f"the plain-way baseline is {n} plain runs timed one by one"
    )
    sweep_notes = (
        f"{what}; {n} trials ({status.trials_pruned or 0} pruned), features once in "
        f"{status.features_seconds or 0:.0f} s, {sweep_time.wall - (status.features_seconds or 0):.0f} s of trials; "
        f"best validation accuracy {best.get('val_accuracy', 0):.3f}"
    )
    vs_plain = time_row(
        "sweep.vs_plain_runs",
        ITEM,
        f"{n}-trial sweep vs {n} ordinary runs the plain way",
        sweep_time.wall,
        baseline,
        f"{n} runs with feature_cache=False (a full frozen ResNet-50 forward every epoch)",
        target_ratio=20,
        notes=f"{sweep_notes}; {baseline_note}",
        cpu_seconds=sweep_time.cpu,
        baseline_cpu_seconds=per_run_cpu * n,
        plain_runs_timed=len(plain),
        plain_run_seconds=[t.wall for t, _, _ in plain],
        extrapolated=extrapolated,
        trials=n,
        trials_pruned=status.trials_pruned,
        features_seconds=status.features_seconds,
        best_val_accuracy=best.get("val_accuracy"),
    )
    vs_run = time_row(
        "sweep.vs_one_run",
        ITEM,
        f"the whole {n}-trial sweep vs one cold ordinary Flora run",
        sweep_time.wall,
        one_run.wall,
        "one ordinary run (feature cache on, extracted from cold), end to end",
        notes=f"ratio = run / sweep; the target is a sweep of at most {MAX_SWEEP_VS_RUN:g} runs, i.e. a ratio "
        f">= {1 / MAX_SWEEP_VS_RUN:.2f}x (the sweep took {sweep_time.wall / one_run.wall:.2f} runs); "
        f"the run: the fixed settings, test accuracy {one_status.accuracy:.3f}",
        sweep_in_runs=sweep_time.wall / one_run.wall,
        cpu_seconds=sweep_time.cpu,
        baseline_cpu_seconds=one_run.cpu,
    )
    vs_run.target = f"sweep <= {MAX_SWEEP_VS_RUN:g} runs"
    vs_run.met = bool(sweep_time.wall <= MAX_SWEEP_VS_RUN * one_run.wall)
    return [vs_plain, vs_run]

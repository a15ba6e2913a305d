"""What a run looks like from outside: its curves, its progress and an ETA, read from its files.

The Train page and the sidebar poll these every second or two; nothing here imports Keras.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.processes import JobState
from core.runs.record import Run
from core.settings.config import TrainConfig

CURVE_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy", "val_map")  # val_map: a multi-label run's


def epoch_curves(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished epoch: epoch, phase, loss, val_loss, accuracy, val_accuracy, val_map, lr, duration.

    A single-label run has no val_map (None), a multi-label one no accuracy (its measure is the validation mAP).

    A retrained epoch number (a resumed or restarted run) keeps its last record.
    """
    rows = [m for m in metrics if m.get("kind") == "epoch" and "epoch" in m]
    columns = ["epoch", "phase", *CURVE_METRICS, "lr", "duration", "time"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = None
    frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
    return frame[columns].reset_index(drop=True)


def batch_curve(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """Training loss/accuracy within epochs, x in fractional epochs (epoch 1 half done = 0.5)."""
    rows = []
    for m in metrics:
        if m.get("kind") == "batch" and m.get("steps"):
            rows.append(
                {
                    "x": m["epoch"] - 1 + m["batch"] / m["steps"],
                    "phase": m.get("phase"),
                    "loss": m.get("loss"),
                    "accuracy": m.get("accuracy"),
                }
            )
    return pd.DataFrame(rows, columns=["x", "phase", "loss", "accuracy"])


def phase_boundary(metrics: list[dict[str, Any]]) -> float | None:
    """The epoch after which phase 2 (fine-tuning) began, or None when it has not."""
    phase1 = [m["epoch"] for m in metrics if m.get("kind") == "epoch" and m.get("phase") == 1]
    started_phase2 = any(m.get("phase") == 2 for m in metrics)
    if not started_phase2:
        return None
    return float(max(phase1)) if phase1 else 0.0


# Relative cost of one image through each kind of stage, to weigh the stages of a run into one
# progress bar: decoding is cheap; a forward pass through ResNet-50 is the unit; a training step
# on images costs a forward and a backward pass; an epoch of the head on cached features is nearly free.
_DECODE_COST, _FORWARD_COST, _TRAIN_STEP_COST, _HEAD_EPOCH_COST = 0.05, 1.0, 3.0, 0.01
EXTRACTING = "extracting features"
REFERENCE_STAGE = "fitting the out-of-distribution reference"  # training's last step (core.train.training)
# training photos the OOD reference passes through the model (core.results.probabilities.reference)
REFERENCE_TRAIN_SAMPLE = 2000
AFTER_EPOCHS = ("saving", "evaluating", REFERENCE_STAGE)  # the steps after the fit, as the run reports them
MIN_PACE_SECONDS = 1.0  # a stage's pace from less than this is no pace: no time left is given yet


@dataclass(frozen=True)
class Stage:
    """One step of a run's plan: its name (as the run reports it) and its relative cost."""

    name: str
    cost: float


def plan(run: Run) -> list[Stage]:
    """The stages a run goes through, in order, with their relative costs (from its config and split)."""
    split = run.status.split or {}
    total = run.dataset_images or sum(int(split.get(k, 0)) for k in ("train", "val", "test"))
    return plan_of(run.train_config, total, split)


def plan_of(config: TrainConfig, total: int, split: dict | None = None) -> list[Stage]:
    """The stages of a run of `config` on `total` photos (its split's counts when known, else its fractions)."""
    split = split or {}
    val = int(split.get("val", round(total * config.val_fraction)))
    test = int(split.get("test", round(total * config.test_fraction)))
    train = int(split.get("train", max(0, total - val - test)))
    stages = [Stage("decoding images", _DECODE_COST * total)]
    if config.epochs and config.feature_cache:
        clean = train + val + (test if not config.fine_tune_epochs else 0)
        stages.append(Stage(EXTRACTING, _FORWARD_COST * clean))
        if config.augment.enabled:
            stages += [
                Stage(f"{EXTRACTING}: train (augmented view {v})", _FORWARD_COST * train)
                for v in range(1, config.augmented_views + 1)
            ]
        stages.append(Stage("phase 1", _HEAD_EPOCH_COST * (train + val) * config.epochs))
    elif config.epochs:
        stages.append(Stage("phase 1", (_TRAIN_STEP_COST * train + _FORWARD_COST * val) * config.epochs))
    if config.fine_tune_epochs:
        stages.append(Stage("phase 2", (_TRAIN_STEP_COST * train + _FORWARD_COST * val) * config.fine_tune_epochs))
    cheap_test = config.feature_cache and config.epochs and not config.fine_tune_epochs
    stages.append(Stage("evaluating on the test split", (_HEAD_EPOCH_COST if cheap_test else _FORWARD_COST) * test))
    stages.append(Stage(REFERENCE_STAGE, _FORWARD_COST * (min(train, REFERENCE_TRAIN_SAMPLE) + val + test)))
    return stages


@dataclass
class RunProgress:
    """How far a run is and how long it may take; fractions in [0, 1]."""

    state: JobState
    stage: str | None
    fraction: float  # of the whole run: decoding, feature extraction, epochs and evaluation weighed by cost
    epochs_done: int
    epochs_total: int
    stage_fraction: float | None  # of the current stage (decoding, extracting), when it reports one
    eta_seconds: float | None
    elapsed_seconds: float | None
    stage_eta_seconds: float | None = None  # time left in the current stage, from its own pace
    stage_counts: tuple[int, int] | None = None  # (done, total) of the current stage
    stopping: bool = False  # asked to stop, not ended yet
    stage_seconds: float | None = None  # time in the current stage so far, for a step nothing times (see `text`)

    @property
    def preparing(self) -> bool:
        """True while the run is decoding images or extracting features, before its first epoch."""
        return self.state.active and self.epochs_done == 0 and self.stage_fraction is not None

    @property
    def state_label(self) -> str:
        """'stopping' from the moment a stop is asked for, else the state."""
        return "stopping" if self.stopping else self.state.value

    @property
    def stage_text(self) -> str:
        """'extracting features: train · 1200 / 3019 · about 40 s left'."""
        parts = [self.stage or ""]
        if self.stage_counts:
            parts.append(f"{self.stage_counts[0]} / {self.stage_counts[1]}")
        if self.stage_counts and self.stage_counts[0] >= self.stage_counts[1] and self.state.active:
            # every item counted but the step not over (the reference fits its checks after its forward passes): no
            # "about 0 s left" for seconds on end (walk 41)
            if self.stage_seconds is not None:
                parts.append(f"finishing ({format_duration(self.stage_seconds)} in this step so far)")
        elif self.stage_eta_seconds is not None:
            parts.append(f"about {format_duration(self.stage_eta_seconds)} left")
        return " · ".join(p for p in parts if p)

    @property
    def text(self) -> str:
        """One line for people: "epoch 3/10 · about 2 min left"."""
        parts = []
        if self.stopping:
            parts.append("stopping: finishing the batch, then saving the best weights and evaluating")
        elif self.stage:
            parts.append(self.stage)
        if self.epochs_total and not self.preparing and self.state is not JobState.QUEUED:
            parts.append(self.epoch_label)  # a queued run has no epoch in progress yet
        if self.eta_seconds is not None and self.state.active and not self.stopping:
            # the ETA is the epochs' (their measured pace); what follows them (saving, the test split, the
            # out-of-distribution reference) is not timed and can take longer than the epochs on cached features
            parts.append(f"about {format_duration(self.eta_seconds)} of epochs left, then testing and saving")
        elif self.stage_counts and self.epochs_done and self.state.active and not self.stopping:
            # a step after the epochs that counts its photos (the out-of-distribution reference): how far, how long
            parts.append(self.stage_text.removeprefix(self.stage or "").lstrip(" ·"))
        elif self.state is JobState.QUEUED and not self.stage and self.stage_seconds is not None:
            # the walk: ~29 s at "queued · 0%" with nothing said: the new process loads the framework first
            parts.append(
                f"starting the training process: it loads TensorFlow before it can report "
                f"({format_duration(self.stage_seconds)} so far)"
            )
        elif self.untimed_step and self.stage_seconds is not None:
            # the walk: 'whole run 29%' sat still for 16 s across the phase change and the reference took 25 s with
            # nothing said: a step without a pace shows that it is alive and how long it has taken so far
            parts.append(f"{format_duration(self.stage_seconds)} in this step so far (not timed in advance)")
        return " · ".join(parts)

    @property
    def untimed_step(self) -> bool:
        """A step of an active run that neither counts items nor runs epochs with a pace: building the model,
        fine-tuning's compile before its first batches, saving, the test split, the out-of-distribution reference."""
        if not self.state.active or self.stopping or self.stage_counts or self.eta_seconds is not None:
            return False
        stage = self.stage or ""
        return stage.startswith(("building", "saving", "evaluating", "fine-tuning")) or stage == REFERENCE_STAGE

    @property
    def short_text(self) -> str:
        """For a table cell: 'extracting features 40%', 'epoch 3/10', 'stopping'."""
        if self.stopping:
            return "stopping…"
        if not self.state.active:
            return ""
        if self.preparing and self.stage:
            return f"{self.stage.split(':')[0]} {self.stage_fraction:.0%}"
        if self.state is JobState.QUEUED:
            return self.stage or "starting"
        if self.epochs_total and self.epochs_done < self.epochs_total:
            return self.epoch_label
        return self.stage or ""

    @property
    def epoch_label(self) -> str:
        """'4/10 epochs done': the epochs finished, as many as the curves plot (the header, the runs table and the
        chart say the same; "epoch 5/10" beside 4 plotted points read as one lost)."""
        done = min(self.epochs_done, self.epochs_total)
        if self.ended_early:  # the walk: "7/10 epochs done" sat there through testing, the 3 never to come unsaid
            return f"{done}/{self.epochs_total} epochs: early stopping ended the fit (validation loss stopped falling)"
        return f"{done}/{self.epochs_total} epochs done" if self.state.active else f"{done}/{self.epochs_total} epochs"

    @property
    def ended_early(self) -> bool:
        """Early stopping ended the epochs before their number (a stop asked for is not this)."""
        if self.stopping or self.state is JobState.STOPPED or not self.epochs_total:
            return False
        if self.epochs_done >= self.epochs_total:
            return False
        if self.state is JobState.DONE:
            return True
        return self.state.active and (self.stage or "").startswith(AFTER_EPOCHS)


def progress(run: Run, metrics: list[dict[str, Any]], now: float | None = None) -> RunProgress:
    """Progress and ETA of `run` from its status and metrics."""
    now = now or time.time()
    status = run.status
    total = int(status.epochs_total or run.train_config.total_epochs or 0)
    curves = epoch_curves(metrics)
    done = len(curves)
    batch_part = 0.0
    if run.active and status.steps and (status.epoch or 0) > done:
        batch_part = min(1.0, float(status.batch or 0) / float(status.steps))
    stage_fraction = stage_eta = stage_counts = None
    if status.stage_progress and status.stage_progress[1]:
        done_items, total_items = status.stage_progress
        stage_counts = (done_items, total_items)
        stage_fraction = min(1.0, done_items / total_items)
        stage_started = status.stage_started_at
        measured = float(status.updated_at or now) - float(stage_started) if stage_started is not None else 0.0
        if measured >= MIN_PACE_SECONDS and done_items > 0 and run.active:  # a pace needs time to measure
            stage_eta = max(0.0, measured / done_items * (total_items - done_items))
    stage_seconds = None
    stage_since = status.stage_started_at
    if run.state is JobState.QUEUED and not status.stage:  # the process is starting: since it was launched
        stage_since = status.launched_at or status.queued_at
    if run.active and stage_since is not None:
        stage_seconds = max(0.0, float(now) - float(stage_since))
    started = status.started_at
    finished = status.finished_at
    elapsed = (float(now if finished is None else finished) - float(started)) if started is not None else None
    if run.state is JobState.DONE:
        fraction = 1.0
    elif run.active:  # never "100%" while it runs: the last step still has its end to write
        fraction = min(0.99, _whole_run_fraction(run, done, batch_part, stage_fraction))
    else:
        fraction = min(1.0, done / total) if total else 0.0
    return RunProgress(
        state=run.state,
        stage=status.stage,
        fraction=fraction,
        epochs_done=done,
        epochs_total=total,
        stage_fraction=stage_fraction,
        eta_seconds=_eta(run, curves, batch_part, total, now),
        elapsed_seconds=elapsed,
        stage_eta_seconds=stage_eta,
        stage_counts=stage_counts,
        stopping=run.stopping,
        stage_seconds=stage_seconds,
    )


def _whole_run_fraction(run: Run, epochs_done: int, batch_part: float, stage_fraction: float | None) -> float:
    """Cost of the finished stages, plus the finished part of the current one, over the whole plan."""
    stages = plan(run)
    costs = [stage.cost for stage in stages]
    whole = sum(costs)
    config = run.train_config
    if whole <= 0:  # nothing known of the dataset's size: count epochs alone
        return min(1.0, (epochs_done + batch_part) / max(1, config.total_epochs))
    stage = run.status.stage or ""
    # in the epochs (or past them); a phase's first epoch announces itself by its stage before any epoch ends
    # (at "training the head" the line fell from 56% back to the decoding's 1%, then jumped to 70%)
    if epochs_done or run.status.phase or stage.startswith(("training", "fine-tuning")):
        index = next(i for i, s in enumerate(stages) if s.name.startswith("phase"))
        phase1 = config.epochs
        if epochs_done + batch_part <= phase1 or not config.fine_tune_epochs:
            part = (epochs_done + batch_part) / max(1, phase1)
            position = index
        else:
            position = index + 1 if stages[index].name == "phase 1" else index
            part = (epochs_done + batch_part - phase1) / max(1, config.fine_tune_epochs)
        if stage.startswith(("saving", "evaluating")):
            position, part = len(stages) - 2, 0.5
        elif stage == REFERENCE_STAGE:
            position, part = len(stages) - 1, stage_fraction if stage_fraction is not None else 0.5
        return min(1.0, (sum(costs[:position]) + min(1.0, part) * costs[position]) / whole)
    names = [s.name for s in stages]
    if stage.startswith(EXTRACTING):
        matches = [i for i, name in enumerate(names) if name.startswith(EXTRACTING) and _same_view(name, stage)]
        position = matches[0] if matches else names.index(EXTRACTING) if EXTRACTING in names else 1
    elif stage.startswith("decoding"):
        position = 0
    elif stage.startswith(("saving", "evaluating")):
        position = len(stages) - 2
    elif stage == REFERENCE_STAGE:
        position = len(stages) - 1
    else:  # building the model, waiting for the device: between decoding and the next stage
        return min(1.0, costs[0] / whole) if stage and not stage.startswith("waiting") else 0.0
    return min(1.0, (sum(costs[:position]) + (stage_fraction or 0.0) * costs[position]) / whole)


def _same_view(planned: str, reported: str) -> bool:
    """'extracting features: train (augmented view 2)' is the same stage as planned; the clean pass is view 0."""
    view = reported.rsplit("augmented view ", 1)[-1].rstrip(")") if "augmented view" in reported else None
    planned_view = planned.rsplit("augmented view ", 1)[-1].rstrip(")") if "augmented view" in planned else None
    return view == planned_view


def _eta(run: Run, curves: pd.DataFrame, batch_part: float, total: int, now: float) -> float | None:
    """Time left in the epochs: the rest of the current phase at its own pace. What follows the epochs (saving, the
    test split, the out-of-distribution reference) is not in it: nothing measured says how long it takes, and on
    cached features it can take longer than the epochs (the walk: "about 14 s left" for about 50 s), so the words
    say the ETA is the epochs' and None is given once they are over.

    A phase's pace is the mean of its last epochs, or, before its first epoch ends, the pace of the batches
    the epoch in progress has done after its first (the first fine-tuning epoch on images is far slower than
    the head's epochs on cached features: at their pace, it said "3 s left" for a minute; and its first
    batch traces and compiles the model: counting it, it said "about 6 min" for a run that took 30 s).
    Unknown (None) until a pace can be measured. Early stopping may end a phase sooner.
    """
    if not run.active or not total:
        return None
    status, config = run.status, run.train_config
    if (status.stage or "").startswith(("saving", "evaluating")) or status.stage == REFERENCE_STAGE:
        return None  # the epochs are over: what is left is not timed
    phase = int(status.phase or (curves["phase"].iloc[-1] if not curves.empty else 1))
    if (status.stage or "").startswith("fine-tuning"):
        phase = 2  # the stage says so before the first batch of phase 2 writes its phase
    in_phase = curves[curves["phase"] == phase] if not curves.empty else curves
    durations = in_phase["duration"].dropna() if not in_phase.empty else pd.Series(dtype=float)
    phase_epochs = config.epochs if phase == 1 else config.fine_tune_epochs
    if len(durations) == 1 and not batch_part:
        # its first epoch traces and compiles the steps: its length is no pace (walk 51: "about 41 s of epochs
        # left" after the first of 12 head epochs, the other 11 took 8 s); the second epoch gives one
        return None
    if not durations.empty:
        # the phase's first epoch left out once others ended, for the same reason
        per_epoch = float((durations.iloc[1:] if len(durations) > 1 else durations).tail(3).mean())
        epochs_left = max(0.0, phase_epochs - len(in_phase) - batch_part)
        remaining = epochs_left * per_epoch
        ended = in_phase["time"].dropna()
        if not batch_part and epochs_left and not ended.empty:
            # no batch counts within the epoch (head epochs on cached features): count down from the last epoch's
            # end instead of standing still and jumping at each epoch (the walk: "27 s" then "41 s" left)
            remaining -= min(per_epoch, max(0.0, float(now) - float(ended.iloc[-1])))
    else:
        batch, steps = int(status.batch or 0), int(status.steps or 0)
        if batch < 2 or not steps or status.first_batch_at is None or int(status.phase or 1) != phase:
            return None  # no pace yet (or the batch counts are still the last phase's): no guess
        until = float(status.updated_at or now)
        per_batch = max(0.0, until - float(status.first_batch_at)) / (batch - 1)
        per_epoch = per_batch * steps
        remaining = max(0, steps - batch) * per_batch + max(0.0, phase_epochs - len(in_phase) - 1) * per_epoch
    if phase == 1 and config.fine_tune_epochs:
        # Fine-tuning follows, on images: nothing measured yet says how long its epochs take (a head epoch on
        # cached features is mostly fixed overhead, so scaling it said "about 7 min" for a 35 s run). Say nothing
        # rather than guess; the time shows from fine-tuning's second batch on.
        return None
    return remaining


def format_duration(seconds: float) -> str:
    """'45 s', '3 min', '1 h 5 min'."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"

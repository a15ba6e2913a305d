"""What a run looks like from outside: its curves, its progress and an ETA, read from its files.

The Train page and the sidebar poll these every second or two; nothing here imports Keras.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.runs import Run, RunState

CURVE_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")


def epoch_curves(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished epoch: epoch, phase, loss, val_loss, accuracy, val_accuracy, lr, duration.

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


@dataclass
class Progress:
    """How far a run is and how long it may take; fractions in [0, 1]."""

    state: RunState
    stage: str | None
    fraction: float  # of all epochs, counting the current epoch's batches
    epochs_done: int
    epochs_total: int
    stage_fraction: float | None  # of the current stage (decoding, extracting), when it reports one
    eta_seconds: float | None
    elapsed_seconds: float | None
    stage_eta_seconds: float | None = None  # time left in the current stage, from its own pace
    stage_counts: tuple[int, int] | None = None  # (done, total) of the current stage

    @property
    def preparing(self) -> bool:
        """True while the run is decoding images or extracting features, before its first epoch."""
        return self.state.active and self.epochs_done == 0 and self.stage_fraction is not None

    @property
    def stage_text(self) -> str:
        """'extracting features: train · 1200 / 3019 · about 40 s left'."""
        parts = [self.stage or ""]
        if self.stage_counts:
            parts.append(f"{self.stage_counts[0]} / {self.stage_counts[1]}")
        if self.stage_eta_seconds is not None:
            parts.append(f"about {format_duration(self.stage_eta_seconds)} left")
        return " · ".join(p for p in parts if p)

    @property
    def text(self) -> str:
        """One line for people: "epoch 3/10 · about 2 min left"."""
        parts = []
        if self.stage:
            parts.append(self.stage)
        if self.epochs_total:
            parts.append(f"epoch {min(self.epochs_done, self.epochs_total)}/{self.epochs_total}")
        if self.eta_seconds is not None and self.state.active:
            parts.append(f"about {format_duration(self.eta_seconds)} left")
        return " · ".join(parts)


def progress(run: Run, metrics: list[dict[str, Any]], now: float | None = None) -> Progress:
    """Progress and ETA of `run` from its status and metrics."""
    now = now or time.time()
    status = run.status
    total = int(status.epochs_total or run.train_config.total_epochs or 0)
    curves = epoch_curves(metrics)
    done = len(curves)
    batch_part = 0.0
    if run.active and status.steps and (status.epoch or 0) > done:
        batch_part = min(1.0, float(status.batch or 0) / float(status.steps))
    fraction = 1.0 if run.state is RunState.DONE else (min(1.0, (done + batch_part) / total) if total else 0.0)
    stage_fraction = stage_eta = stage_counts = None
    if status.stage_progress and status.stage_progress[1]:
        done_items, total_items = status.stage_progress
        stage_counts = (done_items, total_items)
        stage_fraction = min(1.0, done_items / total_items)
        stage_started = status.stage_started_at
        if stage_started is not None and done_items > 0 and run.active:
            pace = (float(status.updated_at or now) - float(stage_started)) / done_items
            stage_eta = max(0.0, pace * (total_items - done_items))
    started = status.started_at
    finished = status.finished_at
    elapsed = (float(now if finished is None else finished) - float(started)) if started is not None else None
    return Progress(
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
    )


def _eta(run: Run, curves: pd.DataFrame, batch_part: float, total: int, now: float) -> float | None:
    """Remaining epochs x the mean duration of the current phase's epochs (early stopping may end it sooner)."""
    if not run.active or not total or curves.empty:
        return None
    phase = curves["phase"].iloc[-1]
    durations = curves.loc[curves["phase"] == phase, "duration"].dropna()
    if durations.empty:
        return None
    per_epoch = float(durations.tail(3).mean())
    remaining = max(0.0, total - len(curves) - batch_part)
    return remaining * per_epoch


def format_duration(seconds: float) -> str:
    """'45 s', '3 min', '1 h 5 min'."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"

"""Keras callbacks of a training run, one concern each (as in Keras's own `callbacks/`).

  RunLogger         appends metrics to the run store every epoch and every second or so; honours STOP
  BestWeights       keeps the weights of the epoch with the lowest validation loss (a multi-label run's highest
                    validation mAP), across both phases
  EpochProgressBar  a progress bar per epoch on a terminal, a log line per epoch otherwise

None of them knows about Streamlit: the pages read what RunLogger writes.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras

from core.runs.store import RunStore

log = logging.getLogger("flora")
STATUS_INTERVAL = 1.0  # seconds between status/metrics writes within an epoch


@dataclass
class EpochCounter:
    """Epochs and steps done so far, shared by the callbacks of both phases (epochs stay global)."""

    epochs_done: int = 0
    global_step: int = 0
    started: float = field(default_factory=time.time)


class RunLogger(keras.callbacks.Callback):
    """Appends metrics to the run store every epoch and every second or so, and honours STOP."""

    def __init__(self, store: RunStore, run_id: str, phase: int, counter: EpochCounter, epochs_total: int):
        super().__init__()
        self.store, self.run_id, self.phase = store, run_id, phase
        self.counter = counter
        self.epochs_total = epochs_total
        self.stopped = False
        self._last_write = 0.0
        self._epoch_start = time.time()
        self._first_batch_at: float | None = None
        self._epoch = 0
        self._last_batch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1  # Keras counts from 0; fit(initial_epoch=...) keeps phase 2 global
        self._epoch_start = time.time()
        self._first_batch_at = None
        self._last_batch = -1

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution, with its last step, counted as if
        # every call ran all of them: the epoch's last call can say a step past the epoch's end (23 of 17).
        batch = last_step(batch, self.params)
        self.counter.global_step += batch - self._last_batch
        self._last_batch = batch
        if self.store.stop_requested(self.run_id):
            self.model.stop_training = True
            self.stopped = True
        now = time.time()
        if self._first_batch_at is None:
            self._first_batch_at = now  # the pace is measured from here: the first batch traces and compiles
        steps = self.params.get("steps") or 0
        if now - self._last_write >= STATUS_INTERVAL or batch + 1 == steps:
            self._last_write = now
            record = {
                "kind": "batch",
                "phase": self.phase,
                "epoch": self._epoch,
                "batch": batch + 1,
                "steps": steps,
                "step": self.counter.global_step,
                "time": now,
                **scalars(logs),
            }
            self.store.append_metrics(self.run_id, record)
            self.store.set_status(
                self.run_id,
                phase=self.phase,
                epoch=self._epoch,
                batch=batch + 1,
                steps=steps,
                epochs_total=self.epochs_total,
                epoch_started_at=self._epoch_start,
                first_batch_at=self._first_batch_at,
            )

    def on_epoch_end(self, epoch, logs=None):
        self.counter.epochs_done = epoch + 1
        now = time.time()
        record = {
            "kind": "epoch",
            "phase": self.phase,
            "epoch": epoch + 1,
            "step": self.counter.global_step,
            "time": now,
            "duration": now - self._epoch_start,
            "lr": learning_rate(self.model),
            **scalars(logs),
        }
        if self.stopped:
            record["partial"] = True  # cut short by STOP; Keras still validated it
        self.store.append_metrics(self.run_id, record)
        self.store.set_status(
            self.run_id,
            phase=self.phase,
            epoch=epoch + 1,
            epochs_done=epoch + 1,
            epochs_total=self.epochs_total,
            last_epoch=record,
        )


class BestWeights(keras.callbacks.Callback):
    """Keeps the classifier's weights from the epoch with the lowest validation loss (across phases), or the best
    value of another `monitor` (a multi-label run's `val_map`, mode "max").

    It copies only the part that is training (`track`): in phase 1 on features that is the head,
    a few hundred KB, rather than all of ResNet-50 (~100 MB) at every better epoch.
    """

    def __init__(
        self, classifier: keras.Model, checkpoint: Path | None = None, monitor: str = "val_loss", mode: str = "min"
    ):
        super().__init__()
        self.classifier = classifier
        self.tracked = classifier  # the part of the classifier whose weights change now
        self.checkpoint = checkpoint
        self.monitor = monitor
        self.sign = -1.0 if mode == "max" else 1.0  # compared as sign * value, lowest best
        self.best = math.inf
        self.best_epoch: int | None = None
        self._weights: list | None = None
        self._saved_part: keras.Model | None = None  # the part `_weights` belong to

    def track(self, part: keras.Model) -> None:
        """From now on only `part` (the head, or the whole classifier) changes.

        A best snapshot of a smaller part grows into one of `part`: the rest has not changed since.
        """
        saved = self._saved_part or self.tracked
        if self._weights is not None and saved is not part:
            current = saved.get_weights()
            saved.set_weights(self._weights)
            self._weights = part.get_weights()
            saved.set_weights(current)
            self._saved_part = part
        self.tracked = part

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or self.sign * value >= self.best:
            return
        self.best, self.best_epoch = self.sign * float(value), epoch + 1
        self._weights, self._saved_part = self.tracked.get_weights(), self.tracked
        if self.checkpoint is not None:
            self.classifier.save_weights(self.checkpoint)

    def restore(self) -> int | None:
        """Put the best weights back; returns the epoch they came from."""
        if self._weights is not None:
            (self._saved_part or self.tracked).set_weights(self._weights)
        return self.best_epoch


class EpochProgressBar(keras.callbacks.Callback):
    """A progress bar per epoch on stderr (a log line per epoch when stderr is not a terminal)."""

    def __init__(self, phase: int, epochs_total: int):
        super().__init__()
        self.phase, self.epochs_total = phase, epochs_total
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.params.get("steps"),
            desc=f"phase {self.phase} epoch {epoch + 1}/{self.epochs_total}",
            unit="batch",
            file=sys.stderr,
            leave=False,
            disable=not sys.stderr.isatty(),
        )

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(last_step(batch, self.params) + 1 - self.bar.n)  # several steps a call
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in scalars(logs).items()}, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
        text = "  ".join(f"{k} {v:.4f}" for k, v in scalars(logs).items())
        log.info("phase %d epoch %d/%d  %s", self.phase, epoch + 1, self.epochs_total, text)


def last_step(batch: int, params: dict | None) -> int:
    """The last step a train call ran, from the one Keras reports: within the epoch's steps where they are known."""
    steps = (params or {}).get("steps") or 0
    return min(batch, steps - 1) if steps else batch


def scalars(logs) -> dict[str, float]:
    """The numeric entries of a Keras logs dict, as floats."""
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def learning_rate(model) -> float | None:
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:
        return None

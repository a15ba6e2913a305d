"""TensorBoard event files in every run's folder, written with TensorBoard's own writer (no TensorFlow needed,
so a JAX run writes them too): `tensorboard --logdir models/` lists each run by its id.

  epoch/<metric>           per epoch, as each ends: loss, accuracy, val_loss, val_accuracy, learning_rate
  test/accuracy, test/macro_f1, calibration/temperature   once, when the run is evaluated (at its last epoch)
  test/confusion_matrix    the test split's confusion matrix as an image (rows true, columns predicted)
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import types

import keras
import numpy as np
from PIL import Image

from core.runs.files import run_files
from core.tracking.pictures import confusion_png
from core.train.callbacks import learning_rate

log = logging.getLogger("flora")


def _stand_in_for_tensorflow_unless_loaded() -> None:
    """TensorBoard's writer reaches its files through TensorFlow's file API wherever TensorFlow can be imported, and
    so imported all of it in a JAX run of Flora's CPU build, where TensorFlow is installed. Its own stand-in
    for that API writes local files alike: where TensorFlow is not loaded already, TensorBoard is told to use it
    (`tensorboard.compat.notf`, TensorBoard's own switch), before it first looks."""
    if sys.modules.get("tensorflow") is None:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class EventWriter:
    """Scalars and PNG images into `<run>/tensorboard/` (one events file per writer)."""

    def __init__(self, run_dir: str | os.PathLike):
        _stand_in_for_tensorflow_unless_loaded()
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        folder = run_files(run_dir).tensorboard
        folder.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(folder))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary()
        for tag, value in values.items():
            if value is not None and math.isfinite(float(value)):
                summary.value.add(tag=tag, simple_value=float(value))
        self._add(summary, step)

    def image(self, step: int, tag: str, png: bytes) -> None:
        import io

        from tensorboard.compat.proto import summary_pb2

        with Image.open(io.BytesIO(png)) as opened:
            width, height = opened.size
        picture = summary_pb2.Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, image=picture)
        self._add(summary, step)

    def _add(self, summary, step: int) -> None:
        from tensorboard.compat.proto import event_pb2

        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class TensorBoardLogger(keras.callbacks.Callback):
    """Per-epoch scalars into the run's event files as each epoch ends (epochs counted across both phases)."""

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__()
        self.run_dir = run_dir
        self._writer: EventWriter | None = None

    def on_epoch_end(self, epoch, logs=None):
        try:
            if self._writer is None:
                self._writer = EventWriter(self.run_dir)
            values = {f"epoch/{name}": value for name, value in (logs or {}).items() if _number(value)}
            values["epoch/learning_rate"] = learning_rate(self.model)
            self._writer.scalars(epoch + 1, values)
        except (OSError, ValueError, TypeError) as e:  # a full disk must not end the run
            log.warning("TensorBoard: could not write epoch %d: %s", epoch + 1, e)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_evaluation(run_dir: str | os.PathLike, step: int, evaluation, temperature: float | None) -> None:
    """The run's test figures and confusion matrix, at its last epoch."""
    try:
        writer = EventWriter(run_dir)
        summary = evaluation.summary()
        writer.scalars(
            step,
            {
                "test/accuracy": summary["accuracy"],
                "test/macro_f1": summary["macro"]["f1"],
                "calibration/temperature": temperature,
            },
        )
        writer.image(step, "test/confusion_matrix", confusion_png(evaluation.confusion_matrix(), evaluation.classes))
        writer.close()
    except (OSError, ValueError, TypeError) as e:
        log.warning("TensorBoard: could not write the evaluation: %s", e)


def _number(value) -> bool:
    try:
        return math.isfinite(float(np.asarray(value)))
    except (TypeError, ValueError):
        return False

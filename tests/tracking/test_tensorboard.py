"""Every run writes TensorBoard event files: per-epoch scalars and the test confusion matrix, read back with
TensorBoard's own event reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.results.evaluation.metrics import Evaluation
from core.runs.record import TENSORBOARD_DIR
from core.tracking.pictures import confusion_png, curves_png


@pytest.mark.backend_agnostic
def test_a_trained_run_has_its_epochs_and_confusion_matrix_in_tensorboard(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = trained_run["store"].run_dir(trained_run["run_id"])
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    epochs = trained_run["config"].epochs
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        steps = [e.step for e in events.Scalars(f"epoch/{name}")]
        assert steps == list(range(1, epochs + 1)), name
    losses = [e.value for e in events.Scalars("epoch/loss")]
    assert all(np.isfinite(losses))
    evaluation = Evaluation.load(run_dir)
    (accuracy,) = events.Scalars("test/accuracy")
    assert accuracy.value == pytest.approx(evaluation.accuracy(), abs=1e-6) and accuracy.step == epochs
    assert "test/confusion_matrix" in tags["images"]
    (picture,) = events.Images("test/confusion_matrix")
    with Image.open(io.BytesIO(picture.encoded_image_string)) as image:
        assert image.size == (picture.width, picture.height) and image.mode == "RGB"


def test_pictures_are_pngs_that_show_the_counts():
    matrix = np.array([[5, 1], [0, 6]])
    png = confusion_png(matrix, ["daisy", "rose"])
    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] == pixels.shape[1] and (pixels != 255).any()
    chart = curves_png({"loss": [(1, 1.2), (2, 0.8), (3, 0.5)], "val_loss": [(1, 1.3), (2, float("nan"))]})
    with Image.open(io.BytesIO(chart)) as image:
        assert image.format == "PNG" and image.size == (640, 360)

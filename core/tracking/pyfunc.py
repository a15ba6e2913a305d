"""A Flora run as an MLflow pyfunc model: `mlflow.pyfunc.load_model(uri).predict(frame)` answers as
`python -m core predict` does (the same decoding, model and temperature).

Input: a DataFrame with a column `image` of encoded image files (bytes; base64 text through `mlflow models
predict`'s JSON), or of file paths. Output: one column per class (the calibrated probabilities), `label` (the
top class) and `error` (why a photo could not be read; empty otherwise). A multi-label run's: one column per label
(its sigmoid) and `labels` instead of `label` (those at or above their thresholds joined by "|"; empty: none of these),
as `core predict --csv` gives them. The model carries the run's folder
(its Keras model, settings and temperature) and Flora's `core` package, so it loads wherever Flora's
requirements are installed.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from core.data.imaging import ImageError
from core.data.multilabel import text_of
from core.results.probabilities import label_thresholds
from core.runs.store import RunStore

RUN_ARTIFACT = "run"
# what a pyfunc model needs of a run's folder (the rest of it stays in the run store)
RUN_FILES = ("config.json", "status.json", "model.keras", "calibration.json", "label_thresholds.json")


class FloraModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from core.inference import Predictor  # heavy: keras

        folder = Path(context.artifacts[RUN_ARTIFACT])
        run = RunStore(folder.parent).get(folder.name)
        self.predictor = Predictor(run)
        self.classes = run.classes

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd

        column = model_input["image"] if hasattr(model_input, "columns") else model_input
        rows = []
        for item in list(column):
            row: dict[str, Any] = dict.fromkeys(self.classes, np.nan)
            try:
                pixels = self.predictor.preprocess(_source(item))
            except (ImageError, OSError, ValueError) as e:
                rows.append({**row, ("labels" if self.predictor.multilabel else "label"): None, "error": str(e)})
                continue
            probabilities = self.predictor.predict_batch(pixels[None])[0]
            row.update({name: float(p) for name, p in zip(self.classes, probabilities, strict=True)})
            if self.predictor.multilabel:  # each label against its threshold, as every predictor reads it
                found = label_thresholds.present(probabilities, self.classes, self.predictor.thresholds)[0]
                rows.append({**row, "labels": text_of(found), "error": ""})
            else:
                rows.append({**row, "label": self.classes[int(np.argmax(probabilities))], "error": ""})
        answer = "labels" if self.predictor.multilabel else "label"
        return pd.DataFrame(rows, columns=[*self.classes, answer, "error"])


def _source(item: Any) -> bytes | str:
    """Bytes as they are; text that is a file path, else base64 of a file."""
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    text = str(item)
    if Path(text).is_file():
        return text
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not a file path nor base64 image data: {text[:40]!r}") from None

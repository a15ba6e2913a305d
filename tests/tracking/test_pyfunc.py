"""The MLflow pyfunc model of a multi-label run answers each photo's labels as `core predict` does (in-process: the
tracking server's round trip is tests/tracking/test_mlflow_log.py's)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pandas as pd

from core.serving.batch_predict import label_rows, predict_many
from core.serving.engine import ServedModel
from core.tracking.pyfunc import RUN_ARTIFACT, RUN_FILES, FloraModel


def test_a_multilabel_run_s_pyfunc_model_gives_core_predict_s_labels(multilabel_run, tmp_path):
    run = multilabel_run["store"].get(multilabel_run["run_id"])
    staged = tmp_path / "run" / run.run_id  # what log_model carries of the run folder
    staged.mkdir(parents=True)
    for name in RUN_FILES:
        if run.path(name).exists():
            shutil.copy2(run.path(name), staged / name)
    model = FloraModel()
    model.load_context(SimpleNamespace(artifacts={RUN_ARTIFACT: str(staged)}))
    photos = sorted((multilabel_run["dataset"] / "images").iterdir())[:6]
    answered = model.predict(None, pd.DataFrame({"image": [p.read_bytes() for p in photos] + [b"not a photo"]}))
    assert list(answered.columns) == [*run.classes, "labels", "error"]
    expected = label_rows(predict_many(ServedModel(run), [(p.name, p) for p in photos], source="cli"), run.classes)
    assert answered["labels"].tolist()[:-1] == [row["labels"] for row in expected]
    assert any(row["labels"] for row in expected) and answered["error"].iloc[-1]

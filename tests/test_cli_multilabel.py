"""A multi-label dataset through the command line: `core train` at 64 px from a random start, its validation mAP
each epoch and its thresholds kept, then `core predict` giving each photo's labels and every label's score."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.test_cli import flora
from tests.train.test_multilabel import COLOURS, make_mosaics

pytestmark = pytest.mark.slow


def test_train_and_predict_a_multilabel_dataset(tmp_path):
    env = {**os.environ, "FLORA_MODELS_DIR": str(tmp_path / "models"), "FLORA_DATA_DIR": str(tmp_path / "data")}
    dataset = make_mosaics(tmp_path / "mosaics", n=80, size=72, seed=2)
    args = ["train", str(dataset), "--weights", "none", "--image-size", "64", "--epochs", "3", "--batch-size", "16"]
    trained = flora(*args, "--threshold-precision", "0.9", "--json", env=env)
    result = json.loads(trained.stdout)
    assert result["state"] == "done" and result["task"] == "multilabel" and 0 <= result["map"] <= 1
    assert result["accuracy"] is None and "test mAP" not in trained.stdout  # stdout: the result alone
    run_dir = Path(result["run_dir"])

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    epochs = [m for m in map(json.loads, lines) if m["kind"] == "epoch"]
    assert len(epochs) >= 1 and all(0 <= m["val_map"] <= 1 for m in epochs)
    thresholds = json.loads((run_dir / "label_thresholds.json").read_text())
    assert thresholds["rule"] == "precision" and thresholds["precision"] == 0.9
    assert set(thresholds["thresholds"]) == set(COLOURS)
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["task"] == "multilabel" and config["threshold_precision"] == 0.9

    photos = sorted((dataset / "images").iterdir())[:3]
    answered = json.loads(flora("predict", result["run_id"], *map(str, photos), "--json", env=env).stdout)
    assert answered["task"] == "multilabel" and answered["thresholds"] == thresholds["thresholds"]
    for item in answered["results"]:
        scores = item["scores"]
        assert set(scores) == set(COLOURS) and all(0 <= p <= 1 for p in scores.values())
        assert item["labels"] == [n for n in COLOURS if scores[n] >= thresholds["thresholds"][n]]

    # what does not read a multi-label run yet says so, and how to get its answers
    refused = flora("evaluate", result["run_id"], env=env, check=False)
    assert refused.returncode != 0 and "is multi-label: its test mAP is" in refused.stderr
    refused = flora("calibrate", result["run_id"], env=env, check=False)
    assert refused.returncode != 0 and "is multi-label" in refused.stderr and "core predict" in refused.stderr

    table = tmp_path / "labels.csv"
    flora("predict", result["run_id"], str(dataset / "images"), "--csv", str(table), env=env)
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 80 and {"path", "labels", "error"} <= set(rows[0])
    for row in rows:
        above = [n for n in COLOURS if float(row[f"score_{n}"]) >= thresholds["thresholds"][n]]
        assert row["labels"] == "|".join(above)
    assert all(not row["error"] for row in rows)  # "none of these" is an empty cell, not an error

"""Monitor page: fills from the prediction log; a statistic over its threshold raises a banner."""

from __future__ import annotations

import shutil
import time

import numpy as np

from core.serving.log import LogRecord, PredictionLog
from tests.pages.conftest import texts


def test_empty_log_says_how_to_fill_it(app, tmp_path):
    at = app("monitor", models_dir=tmp_path / "empty-models")
    assert "Nothing logged yet" in texts(at)


def test_the_log_fills_the_page_and_a_high_ood_rate_raises_a_banner(app, workspace, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    rng = np.random.default_rng(0)
    classes = ["blue", "crimson", "green", "red"]
    records = []
    for i in range(60):
        label = classes[i % 4]
        records.append(
            LogRecord(
                model="production",
                run_id=workspace["run_id"],
                source="api",
                label=label,
                top_k=[(label, 0.7)],
                max_probability=float(rng.uniform(0.4, 0.9)),
                entropy=0.8,
                ood_score=1.0,
                ood_flag=i % 2 == 0,  # 50 % flagged: far over the 15 % alarm
                latency_ms=float(rng.uniform(20, 80)),
                image_sha256=f"{i:064x}",
                time=time.time() - 60 * (60 - i),
            )
        )
    log = PredictionLog.of_store(models)
    ids = log.record(records)
    log.add_feedback("red", prediction_id=ids[0])
    at = app("monitor", models_dir=models)
    shown = texts(at)
    assert "Predictions: 60" in shown
    assert "**out-of-distribution rate: 0.5**" in shown
    assert "Latency p50" in shown
    assert "**Biased**" in shown

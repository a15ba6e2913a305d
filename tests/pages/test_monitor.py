"""Monitor page: fills from the prediction log; a statistic over its threshold raises a banner."""

from __future__ import annotations

import shutil
import time

import numpy as np

from core.serving.log import LogRecord, PredictionLog
from pages.ui.plain import md
from tests.conftest import copy_run
from tests.pages.conftest import table_with, texts


def test_empty_log_says_how_to_fill_it(app, tmp_path):
    at = app("monitor", models_dir=tmp_path / "empty-models")
    assert "Nothing logged yet" in texts(at)


def test_the_log_fills_the_page_and_a_high_ood_rate_raises_a_banner(app, workspace, tmp_path):
    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
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


def _logged(models, run_id: str, classes: list[str], labels, features, hashes=None) -> None:
    log = PredictionLog.of_store(models)
    hashes = hashes or [f"{i:064x}" for i in range(len(labels))]
    now = time.time()
    log.record(
        [
            LogRecord(
                model="production",
                run_id=run_id,
                source="api",
                label=classes[label],
                top_k=[(classes[label], 0.8)],
                max_probability=0.8,
                entropy=0.5,
                ood_score=0.0,
                ood_flag=False,
                latency_ms=30.0,
                image_sha256=hashes[i],
                time=now - 30 * (len(labels) - i),
                features=features[i],
            )
            for i, label in enumerate(labels)
        ]
    )


def test_drift_alarms_show_against_the_runs_reference_and_stay_quiet_without_drift(app, workspace, tmp_path):
    """The run's real reference (fitted from its split): the class mix and the inputs drift, then they do not."""
    from core.results.probabilities.reference import ensure_reference
    from core.runs.store import RunStore

    quiet_models, drifting_models = tmp_path / "quiet", tmp_path / "drifting"
    for models in (quiet_models, drifting_models):
        copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    run = RunStore(quiet_models).get(workspace["run_id"])
    reference = ensure_reference(run, workspace["data"])
    shutil.copy(run.directory / "ood.json", drifting_models / run.run_id)
    shutil.copy(run.directory / "ood.npz", drifting_models / run.run_id)
    rng = np.random.default_rng(3)
    baseline = reference.val_projection
    counts = np.asarray(reference.train_counts)
    mix = counts / counts.sum()
    n = 120
    # quiet: classes in the training mix, inputs like the validation photos (resampled with a little noise)
    quiet_features = baseline[rng.integers(0, len(baseline), n)] + rng.normal(0, 0.01, (n, baseline.shape[1]))
    _logged(quiet_models, run.run_id, run.classes, rng.choice(len(run.classes), n, p=mix), quiet_features)
    # drifting: one class for almost everything, inputs far from the validation photos
    drifting_features = quiet_features + 5 * baseline.std(axis=0)
    _logged(drifting_models, run.run_id, run.classes, np.zeros(n, dtype=int), drifting_features)

    at = app("monitor", models_dir=drifting_models)
    alarms = [e.value for e in at.error]
    assert any(a.startswith("**class mix (chi-square p):") for a in alarms), alarms
    assert any(a.startswith("**input drift (domain classifier AUC):") for a in alarms), alarms
    assert "no reference yet" not in texts(at)

    at = app("monitor", models_dir=quiet_models)
    assert not [w.value for w in at.warning if "repeated inputs" in w.value]
    assert not [e.value for e in at.error if "drift" in e.value or "class mix" in e.value]
    table = table_with(at, "test", "value", "alarm").set_index("test")
    assert table.loc["class mix (chi-square p)", "value"] > 0.05
    assert table.loc["input drift (domain classifier AUC)", "value"] <= 0.55

    # one photo sent 90 times among 30 others (issue 32): the alarms are said to be about that sender
    repeated_models = tmp_path / "repeated"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), repeated_models / workspace["run_id"])
    for name in ("ood.json", "ood.npz"):
        shutil.copy(run.directory / name, repeated_models / run.run_id)
    labels = np.concatenate([rng.choice(len(run.classes), 30, p=mix), np.zeros(90, dtype=int)])
    features = np.concatenate([quiet_features[:30], np.repeat(drifting_features[:1], 90, axis=0)])
    hashes = [f"{i:064x}" for i in range(30)] + ["ab" * 32] * 90
    _logged(repeated_models, run.run_id, run.classes, labels, features, hashes)
    at = app("monitor", models_dir=repeated_models)
    assert not at.exception, [e.value for e in at.exception]
    note = next(w.value for w in at.warning if w.value.startswith("**Mostly repeated inputs.**"))
    assert md("of the 120 predictions in this period are 3 input(s) sent again and again") in note
    assert md("abababababab ×90") in note  # no name was sent with it: the start of its hash
    assert not [e.value for e in at.error if "drift" in e.value or "class mix" in e.value]  # not red: the sender
    assert any("because of the repeated inputs above" in w.value for w in at.warning)
    table = table_with(at, "test", "value", "alarm").set_index("test")
    assert all(note.startswith("mostly repeated inputs") for note in table[table["alarm"]]["note"])


def test_a_multilabel_run_is_said_not_to_be_logged(app, multilabel_run, workspace, tmp_path):
    """Walk 54: the empty page sent a person to classify with a multi-label run and come back; none is logged."""
    models = tmp_path / "models"
    copy_run(multilabel_run["models_root"] / multilabel_run["run_id"], models / multilabel_run["run_id"])
    at = app("monitor", models_dir=models)
    shown = texts(at)
    assert "Nothing logged yet. Only a single-label run's predictions are logged, and there is no such model" in shown
    assert f"A multi-label run's predictions (here: run {multilabel_run['run_id'][:6]}) are not logged" in shown
    assert "Monitor covers single-label runs only" in shown

    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])  # and a single-label one
    at = app("monitor", models_dir=models)
    assert "classify photos on Predict) with a single-label run and come back" in texts(at)

"""A multi-label dataset through the command line: `core train` at 64 px from a random start, its validation mAP
each epoch and its thresholds kept, then `core predict` giving each photo's labels and every label's score; and
mosaics of real photos imported from a table, trained, and `core evaluate` giving per test photo what scikit-learn
needs to find the same mAP, F1 and the rest."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core.bench.mosaics import draw_mosaics, photos_by_kind, write_tables
from core.cli import main as cli
from core.importers.csv_labels import import_csv
from core.results.evaluation import multilabel_words as words
from core.results.probabilities import label_thresholds
from tests.conftest import copy_run, multilabel_every_photo, multilabel_pair, require_flowers
from tests.test_cli import flora
from tests.train.test_multilabel import COLOURS, make_mosaics


@pytest.mark.slow
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
    refused = flora("calibrate", result["run_id"], env=env, check=False)
    assert refused.returncode != 0 and "is multi-label" in refused.stderr and "core predict" in refused.stderr
    assert "core evaluate" in refused.stderr

    table = tmp_path / "labels.csv"
    flora("predict", result["run_id"], str(dataset / "images"), "--csv", str(table), env=env)
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 80 and {"path", "labels", "error"} <= set(rows[0])
    for row in rows:
        above = [n for n in COLOURS if float(row[f"score_{n}"]) >= thresholds["thresholds"][n]]
        assert row["labels"] == "|".join(above)
    assert all(not row["error"] for row in rows)  # "none of these" is an empty cell, not an error


@pytest.mark.slow
def test_evaluate_a_multilabel_run_on_mosaics_of_real_photos(tmp_path):
    """The issue's Done-when: mosaics of four kinds of flower (a label per kind shown, some with none), imported
    from a delimited table, trained at 64 px from a random start; `core evaluate --json` gives mAP, AP and threshold
    per label and per test photo its path, labels and scores, from which scikit-learn finds the same figures."""
    kinds = ["daisy", "dandelion", "rose", "tulip"]
    made = draw_mosaics(photos_by_kind(require_flowers(), kinds), tmp_path / "mosaics", 120, cell=32)
    data = tmp_path / "data"
    import_csv(write_tables(made, kinds, tmp_path / "tables")["delimited"], tmp_path / "mosaics", "flowers", data)
    env = {**os.environ, "FLORA_MODELS_DIR": str(tmp_path / "models"), "FLORA_DATA_DIR": str(data)}
    args = ["train", str(data / "flowers"), "--weights", "none", "--image-size", "64", "--epochs", "2"]
    run_id = json.loads(flora(*args, "--batch-size", "16", "--json", env=env).stdout)["run_id"]

    found = json.loads(flora("evaluate", run_id, "--json", env=env).stdout)
    assert found["task"] == "multilabel" and found["labels"] == kinds
    photos = found["photos"]
    assert len(photos) == found["test_images"] > 0 and {"path", "labels", "predicted", "scores"} <= set(photos[0])
    truth = np.array([[int(k in p["labels"]) for k in kinds] for p in photos])
    scores = np.array([[p["scores"][k] for k in kinds] for p in photos])
    said = np.array([[int(k in p["predicted"]) for k in kinds] for p in photos])
    tested = truth.any(axis=0)
    assert found["map"] == pytest.approx(skm.average_precision_score(truth[:, tested], scores[:, tested]), abs=1e-4)
    assert found["map_micro"] == pytest.approx(skm.average_precision_score(truth, scores, average="micro"), abs=1e-4)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(truth, said, average=None, zero_division=0)
    for j, name in enumerate(kinds):
        entry = found["per_label"][name]
        assert said[:, j].tolist() == (scores[:, j] >= entry["threshold"]).astype(int).tolist()
        assert (entry["precision"], entry["recall"], entry["f1"]) == pytest.approx((precision[j], recall[j], f1[j]))
        assert entry["frequency"] == pytest.approx(truth[:, j].mean()) and 0 <= entry["ece"] <= 1
        if tested[j]:
            assert entry["ap"] == pytest.approx(skm.average_precision_score(truth[:, j], scores[:, j]), abs=1e-4)
            low, high = entry["ap_interval"]
            assert low <= entry["ap"] <= high
    assert found["exact_match"] == pytest.approx(skm.accuracy_score(truth, said))
    assert found["hamming_loss"] == pytest.approx(skm.hamming_loss(truth, said))
    suspected = found["suspected_label_errors"]  # validation and test photos whose lists the model doubts
    assert isinstance(suspected, list) and all({"path", "split", "missing", "wrong"} <= set(s) for s in suspected)
    assert all(set(s["missing"]).isdisjoint(s["labels"]) and set(s["wrong"]) <= set(s["labels"]) for s in suspected)
    thresholds = json.loads((tmp_path / "models" / run_id / "label_thresholds.json").read_text())["thresholds"]
    assert {k: found["per_label"][k]["threshold"] for k in kinds} == pytest.approx(thresholds)

    text = flora("evaluate", run_id, env=env).stdout
    assert "a random scorer gets" in text and "bootstrap resamples" in text and "label list the model doubts" in text
    table = text[text.index("LABEL") :].splitlines()[1 : 1 + len(kinds)]
    listed = [line.split()[0] for line in table]
    aps = {k: found["per_label"][k]["ap"] for k in kinds}
    assert listed == sorted(kinds, key=lambda k: (aps[k] is None, aps[k] or 0, k))  # worst AP first


def _predict(run: dict, *argv: str) -> tuple[int, str]:
    where = ["--models-dir", str(run["models_root"]), "--data-dir", str(run["data_root"])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli(["predict", run["run_id"], *argv, *where])
    return code, out.getvalue()


def test_predict_s_table_has_a_labels_column_and_every_score_and_its_lines_say_none_of_these(multilabel_run, tmp_path):
    images = multilabel_run["dataset"] / "images"
    (tmp_path / "notes.png").write_bytes(b"shopping list")
    code, out = _predict(multilabel_run, str(images), str(tmp_path / "notes.png"), "--json")
    assert code != 0  # one file is no image: the others still answered
    answered = json.loads(out)["results"]
    thresholds = label_thresholds.load(multilabel_run["store"].run_dir(multilabel_run["run_id"]))
    table = tmp_path / "labels.csv"
    _predict(multilabel_run, str(images), str(tmp_path / "notes.png"), "--csv", str(table))
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == len(answered) == 61 and list(rows[0])[:3] == ["path", "labels", "none_of_these"]
    assert [c for c in rows[0] if c.startswith("score_")] == [f"score_{n}" for n in COLOURS]
    for row, item in zip(rows[:-1], answered[:-1], strict=True):
        assert row["labels"] == "|".join(item["labels"])
        assert row["labels"] == "|".join(n for n in COLOURS if float(row[f"score_{n}"]) >= thresholds[n])
        assert row["none_of_these"] == str(not item["labels"]) and not row["error"]
    assert rows[-1]["error"] and not rows[-1]["labels"]  # the unreadable file: its reason, no labels
    parquet = tmp_path / "labels.parquet"
    _predict(multilabel_run, str(images), "--parquet", str(parquet))
    assert pd.read_parquet(parquet)["labels"].fillna("").tolist() == [r["labels"] for r in rows[:-1]]
    photo = next(item for item in answered if "labels" in item)
    _, line = _predict(multilabel_run, photo["image"])
    if photo["labels"]:
        assert f"(threshold {words.threshold_text(thresholds[photo['found'][0]['label']])})" in line
    else:
        assert line.strip().endswith("none of these")
    refused, _ = _predict(multilabel_run, photo["image"], "--max-error", "0.05")
    assert refused != 0
    refused, _ = _predict(multilabel_run, photo["image"], "--set-level", "0.8")  # said, not silently ignored
    assert refused != 0


def _compare(models_root: Path, data_root: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    where = ["--models-dir", str(models_root), "--data-dir", str(data_root)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["compare", *argv, *where])
    return code, out.getvalue(), err.getvalue()


def test_compare_two_multilabel_runs_per_label_ap_the_map_interval_and_the_paired_test(multilabel_run, tmp_path):
    from core.results.evaluation import multilabel_compare
    from core.runs.store import RunStore

    models = tmp_path / "models"
    first = multilabel_pair(multilabel_run, models)
    second = "b" * 12
    code, out, _ = _compare(models, multilabel_run["data_root"], first, second, "--json")
    assert code == 0
    found = json.loads(out)
    store = RunStore(models)
    expected = multilabel_compare.compare([multilabel_compare.load_side(store.get(r)) for r in (first, second)])
    assert found == json.loads(json.dumps(expected))  # the figures core computes, seeded: the same every time
    pair = found["pairs"][0]
    scores = {}
    for run_id in (first, second):
        evaluation = multilabel_compare.load_side(store.get(run_id)).evaluation
        targets, scores[run_id] = evaluation.targets, evaluation.probabilities
    tested = targets.any(axis=0)
    for run_id, side in (("map_a", first), ("map_b", second)):
        assert pair[run_id] == pytest.approx(
            skm.average_precision_score(targets[:, tested], scores[side][:, tested], average="macro")
        )
    low, high = pair["map_interval"]
    assert low <= pair["map_difference"] <= high and 0 < pair["p_value"] <= 1
    assert found["same_split"].startswith("Same split, another random start")
    differences = [row["difference"] for row in pair["per_label"]]
    measured = [d for d in differences if d is not None]
    assert len(measured) == tested.sum() and measured == sorted(measured) == differences[: len(measured)]

    code, out, _ = _compare(models, multilabel_run["data_root"], first, second)
    assert code == 0
    assert f"2 multi-label runs on the same {found['test_images']} test photos" in out
    assert pair["verdict"] in out and found["scope"] in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("LABEL"))
    shown = [line.split()[0] for line in lines[header + 1 : header + 1 + len(COLOURS)]]
    assert shown == [row["label"] for row in pair["per_label"]]  # worst first, as --json has them


def test_compare_refuses_a_multilabel_run_beside_a_single_label_one(multilabel_run, trained_run, tmp_path):
    models = tmp_path / "models"
    first = multilabel_pair(multilabel_run, models)
    copy_run(trained_run["models_root"] / trained_run["run_id"], models / trained_run["run_id"])
    for order in ((first, trained_run["run_id"]), (trained_run["run_id"], first)):
        code, out, err = _compare(models, multilabel_run["data_root"], *order)
        assert code != 0 and not out
        assert f"run {first[:6]} is multi-label" in err and f"run {trained_run['run_id'][:6]} single-label" in err


def test_a_threshold_that_answers_every_photo_is_said_by_predict_and_evaluate(multilabel_run, tmp_path):
    run_dir, (zero, tiny) = multilabel_every_photo(multilabel_run, tmp_path / "models")
    run = {**multilabel_run, "models_root": tmp_path / "models"}
    photo = sorted((multilabel_run["dataset"] / "images").iterdir())[0]
    code, out = _predict(run, str(photo))
    assert code == 0
    assert f"{zero} " in out and "(threshold 0)" in out and "(threshold 1.0e-07)" in out and "0.000" not in out
    assert "\nnote: '" in out and f"'{zero}' (" in out and f"'{tiny}' (" in out
    assert "answered for (nearly) every photo at their tuned threshold" in out
    out, err = io.StringIO(), io.StringIO()
    where = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(multilabel_run["data_root"])]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli(["evaluate", multilabel_run["run_id"], *where]) == 0
    text = out.getvalue()
    n = json.loads((run_dir / "multilabel_evaluation.json").read_text())["test_images"]
    table = {line.split()[0]: line for line in text[text.index("LABEL") :].splitlines()[1:5]}
    assert table[zero].rstrip().endswith(f"answered for {n} of {n}") and " 0 " in table[zero]
    assert "1.0e-07" in table[tiny]
    assert f"Threshold 0, tuned on validation: '{zero}' is answered for {n} of {n} test photos (every photo" in text
    assert "answering every label for every photo:" in text


def test_runs_lists_a_multilabel_run_with_its_kind_and_test_map(multilabel_run):
    """Walk 55: `core runs` said CLASSES 4, ACCURACY - of a multi-label run, with no mAP."""
    where = ["--models-dir", str(multilabel_run["models_root"]), "--data-dir", str(multilabel_run["data_root"])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["runs", "--json", *where]) == 0
    (row,) = [r for r in json.loads(out.getvalue()) if r["run_id"] == multilabel_run["run_id"]]
    assert row["kind"] == "multi-label" and row["map"] is not None and 0 <= row["map"] <= 1
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["runs", *where]) == 0
        assert cli(["runs", "--show", multilabel_run["run_id"], *where]) == 0
    assert "multi-label" in text.getvalue() and f"map        {row['map']:.4f}"[:14] in text.getvalue()

"""Compare page on multi-label runs: listed (no "not listed" caption), the mAP difference with its paired interval,
p-value and core's verdict, the per-label AP differences worst first with their intervals as a table and as bars;
a multi-label run picked beside a single-label one refused with the reason."""

from __future__ import annotations

import pytest

from core.results.evaluation import multilabel_compare
from core.results.evaluation import multilabel_compare_words as words
from core.runs.store import RunStore
from pages.ui.navigation import page_file
from pages.ui.plain import md
from tests.conftest import copy_run, multilabel_pair
from tests.pages.conftest import table_with, texts

SECOND = "b" * 12


def open_compare(app, monkeypatch, multilabel_run, models, runs: str):
    monkeypatch.setenv("FLORA_DATA_DIR", str(multilabel_run["data_root"]))
    at = app("home", models_dir=models)
    at.query_params["runs"] = runs
    at.switch_page(page_file("compare"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_two_multilabel_runs_map_difference_verdict_and_ap_per_label(app, monkeypatch, multilabel_run, tmp_path):
    models = tmp_path / "models"
    first = multilabel_pair(multilabel_run, models, SECOND)
    at = open_compare(app, monkeypatch, multilabel_run, models, "")  # two runs of one dataset: picked
    assert sorted(at.multiselect(key="compare_runs").value) == sorted([first, SECOND])
    at.multiselect(key="compare_runs").set_value([first, SECOND]).run()
    assert not at.exception and not at.error
    store = RunStore(models)
    expected = multilabel_compare.compare([multilabel_compare.load_side(store.get(r)) for r in (first, SECOND)])
    pair = expected["pairs"][0]
    shown = texts(at)
    assert "not listed" not in shown
    assert md(pair["verdict"]) in shown and md(expected["scope"]) in shown
    assert md(words.labels_words(pair, first[:6], SECOND[:6])) in shown
    alert = at.success if pair["shown"] else at.info
    assert any(a.value == md(pair["verdict"]) for a in alert)
    assert f"mAP difference: {words.signed(pair['map_difference'])}" in shown
    low, high = pair["map_interval"]
    assert f"95% interval: {low:+.3f} to {high:+.3f}" in shown
    assert expected["same_split"] is not None and "Same split, another random start" in shown

    maps = table_with(at, "run", "mAP", "random scorer's mAP")
    assert maps["mAP"].tolist() == pytest.approx([pair["map_a"], pair["map_b"]])
    table = table_with(at, "label", "change", "change low", "change high")
    assert table["label"].tolist() == [row["label"] for row in pair["per_label"]]  # worst first, as core
    measured = table.dropna(subset=["change"])
    assert measured["change"].tolist() == sorted(measured["change"].tolist())
    assert table["change low"].tolist() == pytest.approx([row["interval"][0] for row in pair["per_label"]])
    assert (measured["change low"] <= measured["change"]).all() and (
        measured["change"] <= measured["change high"]
    ).all()
    bars = next(c for c in at.get("plotly_chart") if "compare_ml_bars" in str(c.proto.id))
    assert '"error_x"' in bars.proto.spec


def test_a_multilabel_run_beside_a_single_label_one_is_refused(app, monkeypatch, multilabel_run, workspace, tmp_path):
    models = tmp_path / "models"
    first = multilabel_pair(multilabel_run, models, SECOND)
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    at = open_compare(app, monkeypatch, multilabel_run, models, f"{first},{workspace['run_id']}")
    assert at.multiselect(key="compare_runs").value == [first, workspace["run_id"]]
    errors = [e.value for e in at.error]
    said = md(f"run {first[:6]} is multi-label")
    assert any("cannot be compared" in e and said in e and md("single-label") in e for e in errors), errors
    assert table_with_or_none(at, "change") is None


def table_with_or_none(at, column: str):
    return next((f.value for f in at.dataframe if column in f.value.columns), None)

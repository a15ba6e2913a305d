"""The Vega-Lite specs the pages write out (pages/ui/vega.py) are the specs Altair wrote for the same charts: the
same marks, encodings, sizes and data, so the browser draws the same chart (tests/pages/altair_reference.py keeps
the Altair builders the pages used before)."""

from __future__ import annotations

import copy

import altair as alt
import numpy as np
import pandas as pd
import pytest

from core.results.evaluation import multilabel_calibration, robustness
from core.results.evaluation.corruptions import CORRUPTIONS
from core.results.evaluation.multilabel import MultilabelEvaluation
from core.results.label_next.picking import RANDOM, STRATEGY
from pages.ui.evaluate import multilabel
from pages.ui.evaluate import robustness as robustness_tab
from pages.ui.explore import label_next
from tests.pages import altair_reference as altair


def comparable(spec: dict) -> dict:
    """`spec` with its named datasets inlined where they are used, its views numbered in order, no empty encoding
    channel and no schema address (Altair names the exact Vega-Lite version): two specs that compare equal draw
    the same chart."""
    spec = copy.deepcopy(spec)
    datasets = spec.pop("datasets", {})
    spec.pop("$schema", None)
    views: dict[str, str] = {}

    def walk(node):
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key == "data" and isinstance(value, dict) and value.get("name") in datasets:
                value = {"values": datasets[value["name"]]}
            elif key == "name" and "mark" in node:
                value = views.setdefault(value, f"view {len(views)}")
            elif key == "views":
                value = [views.setdefault(v, f"view {len(views)}") for v in value]
            elif key == "encoding":
                value = {channel: v for channel, v in value.items() if v != {}}
            out[key] = walk(value)
        return out

    return walk(spec)


def same_chart(written: dict, chart: alt.TopLevelMixin) -> None:
    reference = chart.to_dict()
    assert comparable(written) == comparable(reference)
    type(chart).from_dict({k: v for k, v in written.items() if k != "$schema"})  # valid by Vega-Lite's schema


def _report(run_id: str, seed: int, intervals: bool = False) -> robustness.RobustnessReport:
    rng = np.random.default_rng(seed)
    accuracy = {c: [float(a) for a in rng.uniform(0.2, 0.9, len(robustness.SEVERITIES))] for c in CORRUPTIONS}
    accuracy[CORRUPTIONS[0]][2] = float("nan")  # a severity not measured: null in both
    report = robustness.RobustnessReport(
        run_id, ["daisy", "rose"], 32, 40, 40, "digest", 0.8, accuracy, 1.0, 0.01, "cpu", 0.0
    )
    if intervals:
        right = {"clean": "1" * 32 + "0" * 8}
        for c in CORRUPTIONS:
            right[c] = ["".join(rng.choice(["0", "1"], 40)) for _ in robustness.SEVERITIES]
        report.right = right
    return report


@pytest.mark.parametrize("intervals", [False, True])
def test_the_robustness_charts_are_altairs(intervals):
    one = _report("r1", 1, intervals)
    if intervals:
        assert all(row["drop low"] is not None for row in one.rows()), "the whiskers' case"
    same_chart(robustness_tab.drop_chart([one], ["this run (r1)"]), altair.drop_chart([one], ["this run (r1)"]))
    pair = [one, _report("r2", 2)]
    same_chart(
        robustness_tab.drop_chart(pair, ["this run (r1)", "r2"]), altair.drop_chart(pair, ["this run (r1)", "r2"])
    )
    same_chart(robustness_tab.severity_chart(one), altair.severity_chart(one))


def test_the_multilabel_charts_are_altairs():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(30, 3)).astype(np.float32)
    scores[:4, 0] = 0.5  # ties: one threshold for several photos
    targets = rng.integers(0, 2, (30, 3))
    targets[:, 2] = 0  # a label no test photo has: recall 0 throughout
    evaluation = MultilabelEvaluation(scores, targets, ["daisy", "rose", "tulip"], [f"p{i}.png" for i in range(30)],
                                      np.array([0.5, 0.4, 0.6]))  # fmt: skip
    for label in evaluation.classes:
        counts = {"recall": 0.5, "precision": float("nan")}
        same_chart(
            multilabel._curve_chart(evaluation, label, 0.4, counts, 0.3),
            altair._curve_chart(evaluation, label, 0.4, counts, 0.3),
        )
        j = evaluation.classes.index(label)
        table = multilabel_calibration.reliability(evaluation.truth[:, j], evaluation.probabilities[:, j])
        same_chart(multilabel._reliability_chart(table), altair._reliability_chart(table))
    for columns in (2, 21):  # numbers in the cells up to 20 columns
        labels = [f"label {i}" for i in range(columns)]
        matrix = pd.DataFrame(rng.integers(0, 9, (columns + 1, columns)), index=[*labels, "(no label)"], columns=labels)
        same_chart(multilabel._matrix_chart(matrix), altair._matrix_chart(matrix))


def test_the_label_next_curves_are_altairs():
    result = {
        "strategies": {STRATEGY: {"curve": [[4, 0.5], [8, 0.7]]}, RANDOM: {"curve": [[4, 0.4], [8, float("nan")]]}},
        "target_accuracy": 0.65,
    }
    same_chart(label_next.curves_chart(result), altair.curves_chart(result))

"""`python -m core bench`: at the tiny test scale every item runs and reports ours, a baseline, a ratio.

Structure, not speed: no assertion here depends on how fast this machine is.
"""

from __future__ import annotations

import json

import pytest

from core import cli
from core.bench import ITEMS, format_report
from core.bench.common import Row, rate_row, time_row
from tests.conftest import require_flowers

# The figures each item reports. The suite runs a subset end to end (SUBSET, on ResNet-50 at the tiny scale);
# the whole bench stays a command: `python -m core bench --tiny` checks them all in a few minutes.
ROWS_BY_ITEM = {
    "train": {"train.cached_cold", "train.cached_reuse"},
    "ingest": {"ingest.photos128", "ingest.large128", "ingest.large224"},
    "gpu": {"gpu.full_finetune", "gpu.real_batches", "gpu.frozen_backbone", "gpu.head_on_features", "gpu.extraction"},
    "inference": {"inference.p50", "inference.p95", "inference.batch"},
    "memory": {"memory.peak_rss"},
    "ui": {"ui.server_cpu_run", "ui.server_cpu_quiet"},
    "serve": {
        "serve.batched_vs_bare",
        "serve.batched_vs_off",
        "serve.p50",
        "serve.p95",
        "serve.p99",
        "serve.first_switch",
        "serve.grpc_vs_http",
        "serve.grpc_p50",
        "serve.grpc_p95",
    },
    "sweep": {"sweep.vs_plain_runs", "sweep.vs_one_run"},
    "attack": {
        "attack.healthz",
        "attack.peak_rss",
        "attack.normal_throughput",
        "attack.jpeg_healthz",
        "attack.jpeg_peak_rss",
    },
    "cache": {"cache.disk", "cache.read", "cache.accuracy"},
    "concurrency": {
        f"concurrency.{key}" for key in __import__("core.bench.concurrency", fromlist=["STORES"]).STORES.values()
    },
    "runtime": {"runtime.32.keras", "runtime.32.onnxruntime", "runtime.32.openvino", "runtime.ceiling"},
    "multilabel": {"multilabel.cost"},
    "multilabel_memory": {"multilabel.memory"},
    "scale": {f"scale.{name}" for name in ("peak_rss", "disk")}
    | {f"scale.{name}" for name, _ in __import__("core.bench.scale", fromlist=["STAGES"]).STAGES}
    | {f"scale.page_{page}" for page in __import__("core.bench.scale", fromlist=["PAGES"]).PAGES},
}
SUBSET = ("ingest", "inference", "cache")  # a figure judged against a target, a rate and a time, for a few seconds each


def test_every_item_says_which_figures_it_reports():
    assert set(ROWS_BY_ITEM) == set(ITEMS)


@pytest.mark.slow
def test_bench_json_reports_every_figure_with_baseline_and_ratio(tmp_path, capsys):
    dataset = require_flowers()
    output = tmp_path / "bench.json"
    args = ["--tiny", "--json", "--only", ",".join(SUBSET), "--dataset", str(dataset)]
    code = cli.main(["bench", *args, "--workdir", str(tmp_path / "w"), "--output", str(output)])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0, printed
    assert printed == json.loads(output.read_text())
    meta = printed["meta"]
    assert meta["scale"] == "tiny" and meta["cores"] >= 1 and meta["device"] and meta["versions"]["keras"]
    rows = {row["key"]: row for row in printed["rows"]}
    assert set(rows) == set().union(*(ROWS_BY_ITEM[item] for item in SUBSET))
    for key, row in rows.items():
        if key == "cache.accuracy":  # a handful of test photos at the tiny scale: 0 is a possible accuracy
            assert 0 <= row["ours"] <= 1 and 0 <= row["baseline"] <= 1 and row["notes"], row
            continue
        assert row["ours"] is not None and row["ours"] > 0, key
        assert row["baseline"] is not None and row["baseline"] > 0, key
        assert row["baseline_label"], key
        assert row["ratio"] is not None and row["ratio"] > 0, key
        assert row["unit"] and row["figure"] and row["notes"], key
    # a stated target is judged where this machine can judge it
    assert rows["ingest.photos128"]["target"] and isinstance(rows["ingest.photos128"]["met"], bool)
    assert meta["backbone"] == "ResNet-50"  # the bench measures ResNet-50 even under the test suite's tiny backbone


def test_ratios_point_the_same_way_for_times_and_rates():
    assert time_row("t", "i", "f", 2.0, 10.0, "b", target_ratio=4).to_dict()["ratio"] == 5.0
    slow = time_row("t", "i", "f", 10.0, 2.0, "b", target_ratio=4)
    assert slow.ratio == 0.2 and slow.met is False and slow.target == ">= 4x"
    fast = rate_row("r", "i", "f", "img/s", 300.0, 100.0, "b", target_ratio=2)
    assert fast.ratio == 3.0 and fast.met is True
    assert rate_row("r", "i", "f", "img/s", 300.0, None, "b", target_ratio=2).met is None


def test_report_is_a_table_with_notes():
    row = Row("gpu.full_finetune", "3", "ResNet-50", "img/s", 2950.0, 3080.0, "published", 0.96, ">= 3000", False)
    meta = {
        "scale": "full",
        "started": "2026-01-01 00:00 UTC",
        "device": "GPU: NVIDIA H200 (jax)",
        "cores": 16,
        "memory_gb": 128,
        "versions": {"keras": "3", "backend": "jax"},
        "load_average_start": [0.1],
        "load_average_end": [0.2],
    }
    text = format_report({"meta": meta, "rows": [row.to_dict()]})
    assert "2,950 img/s" in text and "3,080 img/s" in text and "0.96x" in text and "NO" in text
    assert text.splitlines()[-1].startswith("gpu.full_finetune: ")


def test_unknown_items_are_refused(capsys):
    assert cli.main(["bench", "--only", "train,warp"]) == 1
    assert "unknown bench item" in capsys.readouterr().err


def test_markdown_report_has_one_table_row_per_figure():
    from core.bench import format_markdown

    rows = [
        time_row("train.cached_cold", "1", "train", 100.0, 400.0, "plain", target_ratio=2.5, notes="n"),
        Row("gpu.full_finetune", "3", "ResNet-50", "img/s", 12.0, 11.0, "plain | defaults", 1.09, ">= 3,000", None),
    ]
    meta = {
        "scale": "full",
        "started": "2026-01-01 00:00 UTC",
        "device": "CPU: x (tensorflow)",
        "cores": 2,
        "memory_gb": 24,
        "versions": {"keras": "3", "backend": "tensorflow", "tensorflow": "2.21"},
        "load_average_start": [1.0],
    }
    text = format_markdown({"meta": meta, "rows": [row.to_dict() for row in rows]})
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(table) == 2 and all(line.count(" | ") == 6 for line in table)
    assert "4.00x" in table[0] and "yes" in table[0] and "tensorflow 2.21" in text


def test_growth_exponent_is_the_slope_between_the_two_largest_sizes():
    from core.bench.scale import exponent

    assert exponent({1_000: 1.0, 10_000: 10.0, 100_000: 100.0}) == pytest.approx(1.0)
    assert exponent({1_000: 5.0, 10_000: 1.0, 100_000: 100.0}) == pytest.approx(2.0)  # only the last two count
    assert exponent({10_000: 2.0, 100_000: None}) is None


@pytest.mark.slow
def test_scale_item_measures_every_stage_and_page_at_two_sizes(tmp_path, capsys):
    """The whole scale item at the tiny sizes: every stage in its own process, every page drawn without an error."""
    from core.bench.scale import SIZES

    code = cli.main(["bench", "--tiny", "--json", "--only", "scale", "--workdir", str(tmp_path / "w")])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0, printed
    rows = {row["key"]: row for row in printed["rows"]}
    assert set(rows) == ROWS_BY_ITEM["scale"]
    sizes = [str(n) for n in SIZES["tiny"].sizes]
    for key, row in rows.items():
        if key in ("scale.disk", "scale.peak_rss"):
            continue
        seconds = row["extra"]["seconds"]
        assert sorted(seconds) == sorted(sizes) and all(seconds[n] is not None for n in sizes), (key, seconds)
        assert all(rss > 0.05 for rss in row["extra"]["rss_gb"].values()), key
        assert "growth_exponent" in row["extra"] and "Error" not in row["notes"], (key, row["notes"])
    assert rows["scale.train"]["extra"]["seconds"][sizes[-1]] > rows["scale.head"]["extra"]["seconds"][sizes[-1]]
    disk = rows["scale.disk"]["extra"]["disk"][sizes[-1]]
    assert disk["dataset_bytes"] > 0 and disk["cache_bytes"] >= SIZES["tiny"].sizes[-1] * 32 * 32 * 3

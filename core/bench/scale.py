"""Bench item `scale`: how each stage's cost grows with the dataset, at 1,000 classes, 1k -> 100k photos.

For each N it draws a synthetic dataset of small JPEGs (48 px, 1,000 classes: each class its own colours
and stripes, each photo its own noise and shift, so nothing is a duplicate and the classes can be
learnt), then runs every stage in a process of its own, as a user would: the CLI where there is a
command, the core function where there is none. Each stage's wall time is measured inside its
process (imports excluded: they do not grow with N), its peak RSS by the parent (`os.wait4`). Then
the app: the run store gets 499 copies of the run (hard links, no disk) and the prediction log
1,000,000 rows, and the Dataset, Train, Evaluate, Explore, Compare and Monitor pages are drawn
through Streamlit's AppTest.

The network is ResNet-50 at 32 px (`weights=none`: no download), so its own cost, which grows
linearly by nature, does not drown what Flora adds around it. The growth exponent of a stage is
log(t[N2] / t[N1]) / log(N2 / N1) between the two largest sizes: 1.0 is linear.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.bench.common import Row, Scale
from core.bench.scale_data import copy_runs, draw_dataset, fill_log, remove_heavy
from core.bench.scale_stages import PAGE_BENCH, StageWorker, run_stage
from core.health.caches import folder_bytes
from core.paths import cache_dir

log = logging.getLogger("flora")

CLASSES = 1_000
TRAIN_PX = 32
RUN_COPIES = 499  # with the run itself: 500 runs in the store
LOG_ROWS = 1_000_000
PAGES = ("dataset", "train", "evaluate", "explore", "compare", "monitor")
EXPONENT_TARGET = 1.15
RSS_TARGET_GB = 4.0
PAGE_TARGET_S = 3.0
PROJECT_N = 300_000  # the size the memory target is about, projected from the measured growth


@dataclass(frozen=True)
class ScaleSizes:
    sizes: tuple[int, ...]
    classes: int
    log_rows: int
    run_copies: int
    one_process: bool = False  # every stage of a size in one child (StageWorker): the suite's tiny scale


SIZES = {
    "full": ScaleSizes((1_000, 10_000, 100_000), CLASSES, LOG_ROWS, RUN_COPIES),
    "quick": ScaleSizes((2_000, 5_000, 20_000), CLASSES, 200_000, 99),
    "tiny": ScaleSizes((60, 120), 6, 500, 3, one_process=True),  # the test suite's: every code path, seconds
}

# (stage, what it is): in the order they run. Train's own stages are read from its status.
STAGES = (
    ("scan", "scan the folder (core.data.datasets.scan_dataset)"),
    ("health", "health check: headers, hashes, duplicates and leakage (`core data check --no-cache`)"),
    ("ingest", "decode into the cache (train's 'decoding images' stage)"),
    ("features", "ResNet-50 features of every photo at 32 px (train's 'extracting features' stages)"),
    ("head", "head training on cached features, 2 epochs (train's own stage)"),
    ("train_evaluate", "the test split evaluated and the analysis stored (train's last stage)"),
    ("train", "`core train` as a whole"),
    ("evaluate", "`core evaluate`: metrics, per-class table and confusion matrix from the stored run"),
    ("analysis", "the stored analysis read back (RunAnalysis.load) and the evaluation summary"),
    ("calibrate", "`core calibrate --refit`"),
    ("label_issues", "`core label-issues`: cross-validated on the stored features"),
    ("map_pca", "the embedding map, PCA, of the validation and test photos"),
    ("map_tsne", "the embedding map, t-SNE"),
    ("compare", "`core compare` of the run and a copy of it"),
    ("sweep", "`core sweep`: 3 trials of 1 epoch on cached features, bookkeeping included"),
)


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    sizes = SIZES[scale.name]
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for n in sizes.sizes:
        log.info("scale: N = %d photos in %d classes", n, sizes.classes)
        results[n] = measure_size(n, sizes, workdir / f"n{n}")
        remove_heavy(workdir / f"n{n}")
    return rows_of(results, sizes)


def measure_size(n: int, sizes: ScaleSizes, work: Path) -> dict[str, dict[str, Any]]:
    data = work / "data"
    models = work / "models"
    dataset = data / "synthetic"
    if not (dataset / ".complete").exists():
        shutil.rmtree(dataset, ignore_errors=True)
        started = time.perf_counter()
        draw_dataset(dataset, n, sizes.classes)
        (dataset / ".complete").touch()
        log.info("scale: drew %d photos in %.0f s", n, time.perf_counter() - started)
    remove_heavy(work)  # a --workdir used again: train, ingest and the rest from nothing, as measured
    disk = folder_bytes(dataset)
    env = {"FLORA_DATA_DIR": str(data), "FLORA_MODELS_DIR": str(models), "FLORA_DATA_ROOTS": str(work)}
    worker = StageWorker(env, work / "stages.log") if sizes.one_process else None
    try:
        out = _measure_stages(n, sizes, work, env, worker)
    finally:
        if worker is not None:
            worker.close()
    out["disk"]["dataset_bytes"] = disk
    return out


def _measure_stages(
    n: int, sizes: ScaleSizes, work: Path, env: dict[str, str], worker: StageWorker | None
) -> dict[str, dict[str, Any]]:
    data, models = Path(env["FLORA_DATA_DIR"]), Path(env["FLORA_MODELS_DIR"])
    dataset = data / "synthetic"
    common = ["--models-dir", str(models), "--data-dir", str(data)]
    out: dict[str, dict[str, Any]] = {}

    def stage(name: str, *argv: str, call: str | None = None) -> dict[str, Any]:
        result = run_stage(work / f"{name}.json", argv, call, env, worker=worker)
        out[name] = result
        log.info("scale: N=%d %s %s s, peak RSS %.2f GB", n, name, result["seconds"], result["rss_gb"])
        return result

    stage("scan", str(dataset), call="scan")
    stage("health", "data", "check", str(dataset), "--no-cache", "--image-size", str(TRAIN_PX), *common)
    train_args = [str(dataset), "--image-size", str(TRAIN_PX), "--epochs", "2", "--weights", "none"]
    train_args += ["--augment", "none", "--batch-size", "64", "--json", *common]
    trained = stage("train", "train", *train_args)
    if trained["rc"] != 0:
        raise RuntimeError(f"core train failed at N={n}: {trained.get('tail', '')}")
    run_id = json.loads(trained["stdout"])["run_id"]
    for name, parts in (
        ("ingest", ("decoding images",)),
        ("features", ("extracting features",)),
        ("head", ("training the head",)),
        ("train_evaluate", ("evaluating on the test split",)),
    ):
        seconds = sum(t for label, t in trained.get("stages", {}).items() if label.startswith(parts))
        out[name] = {"seconds": seconds, "rss_gb": trained["rss_gb"], "rc": 0, "within": "train"}
    out["train"]["cache_bytes"] = folder_bytes(cache_dir(data))
    run_dir = models / run_id
    stage("evaluate", "evaluate", run_id, "--json", *common)
    stage("analysis", str(run_dir), call="analysis")
    stage("calibrate", "calibrate", run_id, "--refit", "--json", *common)
    stage("label_issues", "label-issues", run_id, "--json", *common)
    stage("map_pca", str(run_dir), "pca", call="map")
    stage("map_tsne", str(run_dir), "tsne", call="map")
    copies = copy_runs(models, run_id, sizes.run_copies)
    stage("compare", "compare", run_id, copies[0], "--json", *common)
    stage("sweep", "sweep", str(dataset), "--trials", "3", "--epochs", "1", "--image-size", str(TRAIN_PX),
          "--weights", "none", "--augment", "none", "--json", *common)  # fmt: skip
    fill_log(models, run_id, sizes.log_rows, sizes.classes)
    pages = run_stage(work / "pages.json", list(PAGES), "pages", env, script=PAGE_BENCH)
    for page in PAGES:
        seconds = pages.get("pages", {}).get(page)
        error = pages.get("errors", {}).get(page)
        drawn = pages.get("drawn", {}).get(page, {})
        out[f"page_{page}"] = {
            "seconds": seconds,
            "rss_gb": pages["rss_gb"],
            "rc": pages["rc"],
            "error": error,
            "drawn": drawn,
        }
    out["disk"] = {"seconds": None, "rss_gb": None, "cache_bytes": out["train"]["cache_bytes"]}
    return out


# --- the figures -------------------------------------------------------------------------------------


def exponent(times: dict[int, float | None]) -> float | None:
    """Growth exponent between the two largest sizes: log(t2/t1) / log(n2/n1)."""
    points = sorted((n, t) for n, t in times.items() if t)
    if len(points) < 2:
        return None
    (n1, t1), (n2, t2) = points[-2], points[-1]
    return math.log(t2 / t1) / math.log(n2 / n1)


def rows_of(results: dict[int, dict[str, dict[str, Any]]], sizes: ScaleSizes) -> list[Row]:
    ns = sorted(results)
    rows = []
    names = [name for name, _ in STAGES] + [f"page_{page}" for page in PAGES]
    described = dict(STAGES) | {f"page_{p}": f"the {p.title()} page's first draw (AppTest)" for p in PAGES}
    for name in names:
        times = {n: results[n].get(name, {}).get("seconds") for n in ns}
        rss = {n: results[n].get(name, {}).get("rss_gb") for n in ns}
        growth = exponent(times)
        last = times[ns[-1]]
        projected = None if growth is None or last is None else last * (PROJECT_N / ns[-1]) ** growth
        per_n = ", ".join(f"{n:,}: {'-' if times[n] is None else f'{times[n]:.2f} s'}" for n in ns)
        rss_text = ", ".join(f"{n:,}: {'-' if rss[n] is None else f'{rss[n]:.2f} GB'}" for n in ns)
        page = name.startswith("page_")
        met = None
        target = ""
        if page:
            target = f"<= {PAGE_TARGET_S:g} s at N={ns[-1]:,}"
            met = None if last is None else bool(last <= PAGE_TARGET_S)
        elif growth is not None:
            target = f"exponent <= {EXPONENT_TARGET}"
            met = bool(growth <= EXPONENT_TARGET)
        errors = [results[n].get(name, {}).get("error") for n in ns]
        note = f"{described[name]}. Seconds per N: {per_n}. Peak RSS: {rss_text}"
        if not page and projected is not None:
            note += f". At {PROJECT_N:,}: about {projected:.0f} s (projected)"
        note += "".join(f". Error: {e}" for e in errors if e)
        drawn = results[ns[-1]].get(name, {}).get("drawn")
        if drawn:
            note += ". Drew " + ", ".join(f"{count} {kind}" for kind, count in drawn.items())
        rows.append(
            Row(
                f"scale.{name}",
                "scale",
                f"{name} at {ns[-1]:,} photos, {sizes.classes:,} classes",
                "s",
                last,
                target=target,
                met=met,
                notes=note,
                extra={"seconds": times, "rss_gb": rss, "growth_exponent": growth, "projected_300k_s": projected},
            )
        )
    peak = {n: max((v.get("rss_gb") or 0) for v in results[n].values()) for n in ns}
    growth = exponent(peak)
    projected = peak[ns[-1]] * (PROJECT_N / ns[-1]) ** max(growth or 0, 0) if growth is not None else None
    rows.append(
        Row(
            "scale.peak_rss",
            "scale",
            f"peak RSS of any stage at {ns[-1]:,} photos",
            "GB",
            peak[ns[-1]],
            target=f"<= {RSS_TARGET_GB:g} GB at {PROJECT_N:,} (projected)",
            met=None if projected is None else bool(projected <= RSS_TARGET_GB),
            notes=", ".join(f"{n:,}: {peak[n]:.2f} GB" for n in ns)
            + ("" if projected is None else f"; at {PROJECT_N:,} about {projected:.2f} GB (projected)"),
            extra={"rss_gb": peak, "growth_exponent": growth, "projected_300k_gb": projected},
        )
    )
    disk = {n: results[n].get("disk", {}) for n in ns}
    rows.append(
        Row(
            "scale.disk",
            "scale",
            f"disk of the photos and the decoded cache at {ns[-1]:,} photos",
            "MB",
            (disk[ns[-1]].get("cache_bytes") or 0) / 1e6,
            notes=", ".join(
                f"{n:,}: photos {_mb(disk[n], 'dataset_bytes')}, cache {_mb(disk[n], 'cache_bytes')}" for n in ns
            ),
            extra={"disk": disk},
        )
    )
    return rows


def _mb(disk: dict[str, Any], key: str) -> str:
    return f"{(disk.get(key) or 0) / 1e6:,.0f} MB"

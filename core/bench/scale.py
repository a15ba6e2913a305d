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
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.bench.common import Row, Scale
from core.bench.scale_data import copy_runs, draw_dataset, fill_log, remove_heavy
from core.cli import build_parser
from core.data.datasets import scan_dataset
from core.health.caches import folder_bytes
from core.paths import PROJECT_ROOT, cache_dir
from core.results.evaluation.embedding import compute_map, save_map
from core.runs.analysis import RunAnalysis

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


# --- one stage in a process of its own -------------------------------------------------------------


def run_stage(
    result_file: Path,
    argv,
    call: str | None,
    env: dict[str, str],
    script: Path | None = None,
    worker: StageWorker | None = None,
) -> dict[str, Any]:
    """Run a stage in a child process; its seconds come from inside it, its peak RSS from os.wait4. `script`: a
    script of its own writing the result file (the pages' first draw), instead of this module's `child`.
    `worker`: the tiny scale's one child for every stage of a size (its peak RSS so far, not the stage's)."""
    result_file.unlink(missing_ok=True)
    if worker is not None and script is None:
        return worker.run(result_file, call or "cli", list(argv))
    if script is not None:
        command = [sys.executable, str(script), str(result_file), *argv]
    else:
        command = [sys.executable, "-m", "core.bench.scale", str(result_file), call or "cli", *argv]
    with open(result_file.with_suffix(".log"), "wb") as stderr:
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, **env}, cwd=str(PROJECT_ROOT)
        )
        stdout = child.stdout.read() if child.stdout else b""
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(result_file.read_text()) if result_file.exists() else {"seconds": None}
    result["rc"] = child.returncode
    result["rss_gb"] = usage.ru_maxrss * 1024 / 1e9
    result["stdout"] = stdout.decode(errors="replace")
    if child.returncode != 0:
        result["tail"] = result_file.with_suffix(".log").read_text(errors="replace")[-2000:]
        log.warning("scale: stage %s exited %s: %s", call or argv[0], child.returncode, result["tail"][-500:])
    return result


class StageWorker:
    """One child process that runs the stages it is sent one after another, as `child` would each in a process of
    its own. The tiny scale (the test suite's) uses it: there, importing TensorFlow for each of a size's dozen stages
    cost more than the stages; the seconds are still measured inside the child, imports excluded."""

    def __init__(self, env: dict[str, str], log_file: Path):
        read_end, self._reply_fd = os.pipe()
        self._replies = os.fdopen(read_end, "r")
        self._log = open(log_file, "wb")  # noqa: SIM115 (open for the worker's lifetime)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "core.bench.scale", "--serve", str(self._reply_fd)],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **env},
            cwd=str(PROJECT_ROOT),
            pass_fds=(self._reply_fd,),
            text=True,
        )
        os.close(self._reply_fd)

    def run(self, result_file: Path, kind: str, argv: list[str]) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps([str(result_file), kind, *argv]) + "\n")
        self._process.stdin.flush()
        reply = self._replies.readline()
        if not reply:
            raise RuntimeError(
                f"the scale bench's stage worker died (exit {self._process.wait()}): see {self._log.name}"
            )
        result = json.loads(result_file.read_text()) if result_file.exists() else {"seconds": None}
        result.update(json.loads(reply))
        if result["rc"] != 0:
            log.warning("scale: stage %s exited %s: %s", kind, result["rc"], result.get("tail", "")[-500:])
        return result

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=120)
        self._replies.close()
        self._log.close()

    def __enter__(self) -> StageWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def child(argv: list[str]) -> int:
    if argv[0] == "--serve":
        return _serve(int(argv[1]))
    _start_child()
    return _run_one(Path(argv[0]), argv[1], argv[2:])


def _start_child() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s flora: %(message)s")
    import keras  # noqa: F401  imports are not the stage's cost


def _serve(reply_fd: int) -> int:
    """A StageWorker's child: a stage per line of stdin ([result file, kind, *argv]); each answered on `reply_fd`
    with its exit code, the stdout it printed and the process's peak RSS so far."""
    import contextlib
    import io
    import resource
    import traceback

    _start_child()
    with os.fdopen(reply_fd, "w") as replies:
        for line in sys.stdin:
            result_file, kind, *rest = json.loads(line)
            printed = io.StringIO()
            tail = ""
            try:
                with contextlib.redirect_stdout(printed):
                    rc = _run_one(Path(result_file), kind, rest)
            except BaseException:  # a failed stage (SystemExit included) is reported; the next one still runs
                rc, tail = 1, traceback.format_exc()[-2000:]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
            reply = {"rc": rc, "stdout": printed.getvalue(), "rss_gb": peak}
            replies.write(json.dumps(reply | ({"tail": tail} if tail else {})) + "\n")
            replies.flush()
    return 0


def _run_one(result_file: Path, kind: str, rest: list[str]) -> int:
    result: dict[str, Any] = {}
    if kind == "cli":
        from core.train import trainer  # heavy: keras

        stages: dict[str, float] = {}
        current: list[Any] = [None, 0.0]
        original = trainer.StageReporter.__call__

        def timing(self, name, done=None, total=None, force=False):
            now = time.perf_counter()
            if name != current[0]:
                if current[0] is not None:
                    stages[current[0]] = stages.get(current[0], 0.0) + now - current[1]
                current[:] = [name, now]
            return original(self, name, done, total, force)

        trainer.StageReporter.__call__ = timing
        try:
            args = build_parser().parse_args(rest)
            started = time.perf_counter()
            rc = args.handler(args)
            result["seconds"] = time.perf_counter() - started
        finally:
            trainer.StageReporter.__call__ = original
        if current[0] is not None:
            stages[current[0]] = stages.get(current[0], 0.0) + time.perf_counter() - current[1]
        result["stages"] = stages
    else:
        started = time.perf_counter()
        extra = CALLS[kind](*rest)
        result["seconds"] = time.perf_counter() - started
        result.update(extra or {})
        rc = 0
    result_file.write_text(json.dumps(result))
    return rc or 0


def _scan(dataset: str) -> dict[str, Any]:

    index = scan_dataset(dataset)
    return {"photos": len(index.entries), "classes": len(index.classes)}


def _analysis(run_dir: str) -> dict[str, Any]:
    from core.results.evaluation.metrics import Evaluation  # heavy: sklearn

    analysis = RunAnalysis.load(run_dir)
    summary = Evaluation.load(run_dir).summary()
    return {"test_photos": len(analysis.test.labels), "accuracy": summary["accuracy"]}


def _map(run_dir: str, method: str) -> dict[str, Any]:

    points = compute_map(RunAnalysis.load(run_dir), method)
    save_map(run_dir, method, points)
    return {"points": len(points.xy) if hasattr(points, "xy") else None}


CALLS = {"scan": _scan, "analysis": _analysis, "map": _map}
# The pages are drawn by a script beside the app, run as a process like `streamlit_app.py` (core never imports
# the UI): it writes the same result file as a stage.
PAGE_BENCH = PROJECT_ROOT / "page_bench.py"


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


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))

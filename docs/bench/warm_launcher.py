"""Background runs launched as the Train page launches them, each a new process against forked from the warm
launcher (core.processes.launcher): the time from Launch to the first epoch logged and to the run done, and each
run process's CPU time.

    python docs/bench/warm_launcher.py DATASET [--runs 4] [--image-size 32] [--epochs 2]

Both ways in one run, alternating (plain, warm, plain, warm, ...), each run a distinct seed on the same data, so
every run trains (none is cached). The launcher is started first and waited for (the Train page starts it on
its first visit, before anyone presses Launch); its own import is printed apart. A run process's CPU is its
last reading in /proc before it ended (polled every 20 ms: a detached run is not this process's child).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.processes import keep_warm_launcher, launcher  # noqa: E402
from core.runs.store import RunStore  # noqa: E402
from core.settings.config import TrainConfig  # noqa: E402
from core.train import jobs  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def one_run(dataset: str, models: Path, data: Path, config: TrainConfig) -> dict:
    started = time.perf_counter()
    submission = jobs.launch(dataset, config, models, data)
    store = RunStore(models)
    pid, cpu, first_epoch = submission.run.status.pid, 0.0, None
    while True:
        cpu = cpu_seconds(pid) or cpu
        run = store.get(submission.run_id)
        if first_epoch is None and any(r.get("kind") == "epoch" for r in store.read_metrics(run.run_id)):
            first_epoch = time.perf_counter() - started
        if not run.active:
            break
        time.sleep(0.02)
    done = time.perf_counter() - started
    return {"state": run.state.value, "first_epoch_s": first_epoch, "done_s": done, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--runs", type=int, default=4, help="runs each way")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flora-launcher-bench-"))
    began = time.perf_counter()
    keep_warm_launcher()
    (warm,) = launcher._launchers.values()
    while not warm.ready():
        time.sleep(0.02)
    print(f"launcher ready in {time.perf_counter() - began:.1f} s (its import, once)", file=sys.stderr)
    results: dict[str, list[dict]] = {"new process": [], "warm launcher": []}
    try:
        for i in range(2 * args.runs):
            way = "new process" if i % 2 == 0 else "warm launcher"
            saved = dict(launcher._launchers)
            if way == "new process":
                launcher._launchers.clear()  # spawn finds no launcher: the plain way
            config = TrainConfig(image_size=args.image_size, weights="none", epochs=args.epochs, seed=100 + i)
            result = one_run(args.dataset, work / "models", work / "data", config)
            launcher._launchers.update(saved)
            results[way].append(result)
            print(way, json.dumps(result), file=sys.stderr)
    finally:
        launcher.stop_all()
    print(f"{'':14} {'Launch -> 1st epoch':>20} {'Launch -> done':>15} {'run CPU-s':>10}")
    for way, rows in results.items():
        first = statistics.median(r["first_epoch_s"] or float("nan") for r in rows)
        done = statistics.median(r["done_s"] for r in rows)
        cpu = statistics.median(r["cpu_s"] for r in rows)
        print(f"{way:14} {first:20.2f} {done:15.2f} {cpu:10.2f}   (median of {len(rows)})")


if __name__ == "__main__":
    main()

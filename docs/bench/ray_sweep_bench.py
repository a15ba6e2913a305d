"""A sweep's trials on 1 and 2 Ray workers against the same sweep on this machine: time and the best found.

    python docs/bench/ray_sweep_bench.py DATASET [--trials 12] [--epochs 8] [--image-size 64] [--cpus 2]

Starts a one-node Ray cluster on this machine (`core.bench.ray_local`, all `--cpus`) and runs the same sweep (same
data, fixed settings, default space, seed and trial count) three times, each in a run store of its own and
all sharing one data folder: `python -m core sweep` on this machine, then with `--ray ADDRESS --ray-workers
1` and `--ray-workers 2`. Prints, per path, the whole command's wall time, the features' share (the same
extraction on every path, on this machine) and the trials' share (Ray's: joining the cluster, starting its
workers, each worker loading the features and the split, the trials), and the best trial's validation loss
and accuracy with its settings: parallel TPE is not the serial one, so the best can differ (said, not hidden).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.bench.ray_local import LocalRayCluster  # noqa: E402
from core.sweeps import SweepStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flora-ray-sweep-"))
    cluster = LocalRayCluster().start(nodes=1, cpus=args.cpus)
    env = {**os.environ}
    env.pop("FLORA_RAY_ADDRESS", None)
    rows = []
    try:
        paths = (("this machine", []), ("Ray, 1 worker", ["1"]), ("Ray, 2 workers", ["2"]))
        for name, workers in paths:
            models = work / f"models-{len(rows)}"
            command = [sys.executable, "-m", "core", "sweep", args.dataset, "--trials", str(args.trials)]
            command += ["--weights", args.weights, "--image-size", str(args.image_size), "--epochs", str(args.epochs)]
            command += ["--models-dir", str(models), "--data-dir", str(work / "data")]
            if workers:
                command += ["--ray", cluster.address, "--ray-workers", workers[0]]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
            sweep = SweepStore(models).list()[0]
            best = sweep.trials()["best"] or {}
            features = sweep.status.features_seconds or 0.0
            rows.append((name, wall, features, wall - features, best))
            print(f"{name}: {wall:.1f} s", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.trials} trials, {args.epochs} epochs each, {args.image_size} px, {args.cpus} CPUs, one node")
    print("| path | whole command (s) | features (s) | the rest: trials (s) | best trial | best val loss | val acc |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, wall, features, trials, best in rows:
        loss, accuracy = best.get("val_loss"), best.get("val_accuracy")
        print(
            f"| {name} | {wall:.1f} | {features:.1f} | {trials:.1f} | {best.get('number', '-')} | "
            f"{loss if loss is None else f'{loss:.4f}'} | {accuracy if accuracy is None else f'{accuracy:.3f}'} |"
        )
    local_trials = rows[0][3]
    for name, _wall, _features, trials, best in rows[1:]:
        print(f"{name}: trials {local_trials / trials:.2f}x this machine's pace; best settings {best.get('shown')}")
    print(f"this machine: best settings {rows[0][4].get('shown')}")


if __name__ == "__main__":
    main()

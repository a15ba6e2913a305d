"""`predict --ray` against the local path on one node: the same photos, the same run, each command's wall time.

    python docs/bench/ray_predict_bench.py RUN_ID FOLDER [--models-dir M] [--data-dir D] [--cpus 2]

Starts a one-node Ray cluster on this machine (`core.bench.ray_local`, all `--cpus`), runs `python -m core predict
RUN FOLDER --csv` without and with `--ray`, twice each in turn, and prints photos/s and the ratio (Ray over
local; the issue's target is >= 0.8). Both include starting Python and loading the model; Ray's also joining
the cluster and starting its actors: its whole overhead, measured.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.bench.ray_local import LocalRayCluster  # noqa: E402
from core.serving.batch_predict import expand_sources  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_id")
    parser.add_argument("folder")
    parser.add_argument("--models-dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    photos = len(expand_sources([args.folder]))
    cluster = LocalRayCluster().start(nodes=1, cpus=args.cpus)
    out = Path(tempfile.mkdtemp())
    extra = [f"--models-dir={args.models_dir}"] if args.models_dir else []
    extra += [f"--data-dir={args.data_dir}"] if args.data_dir else []
    seconds: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for _ in range(args.repeats):
            for name, flags in (("local", []), ("ray", ["--ray", cluster.address])):
                command = [sys.executable, "-m", "core", "predict", args.run_id, args.folder, *extra, *flags]
                command += ["--csv", str(out / f"{name}.csv")]
                started = time.perf_counter()
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
                seconds[name].append(time.perf_counter() - started)
                if done.returncode not in (0, 1):
                    raise SystemExit(done.stderr[-2000:])
    finally:
        cluster.stop()
    best = {name: min(values) for name, values in seconds.items()}
    for name in ("local", "ray"):
        print(
            f"{name:5s} {photos} photos: best {best[name]:.1f} s of {seconds[name]}, {photos / best[name]:.1f} photos/s"
        )
    print(f"ray / local throughput: {best['local'] / best['ray']:.2f}x ({args.cpus} CPUs, one node)")


if __name__ == "__main__":
    main()

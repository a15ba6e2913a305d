"""Batch prediction on a Ray cluster: Ray Data's `map_batches` with one model actor per device.

    python -m core predict RUN FOLDER --csv OUT.csv --ray ADDRESS     (or FLORA_RAY_ADDRESS)

The photos' paths go out in the local path's chunks (its first 32 photos, the next 32, ...); each actor
loads the run's served model once (the same `ServedModel` as the local path: calibration, the
out-of-distribution flag), reads its chunks' photos from disk itself (in parallel across actors) and returns
the same table rows as the local path; the driver puts the chunks back in path order. Labels and
probabilities come out the same as the local path's; the out-of-distribution score can differ in its 7th
digit (Ray gives an actor of 1 CPU one math thread, which sums in another order), so a photo whose score
sits right at the threshold may be flagged on one path and not the other. The paths must mean the
same on every node (shared storage), as must Flora's folder: the actors import it from `PYTHONPATH`.

Ray is the engine here, never a home-made scheduler: it places the actors (one per GPU, or per `cpus`
CPUs on a CPU cluster), streams the batches, and retries a failed task.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from core.cluster import ADDRESS_ENV, connect
from core.runs.store import RunStore


class _Classifier:
    """A Ray Data actor: the run's served model, loaded once, classifying batches of paths."""

    def __init__(self, models_root: str, run_id: str, data_root: str, top_k: int, raw: bool):
        from core.serving.engine import ServedModel  # heavy: sklearn

        run = RunStore(models_root).get(run_id)
        self.model = ServedModel(run, data_root)
        if raw:
            self.model.temperature = 1.0
        self.top_k = top_k
        self.image_size = run.train_config.image_size
        self.width = max(1, min(top_k, len(run.classes)))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One chunk of the local path's (its first 64 photos, the next 64, ...): the same batches through the
        model, so the same numbers to the last digit."""
        from core.serving.batch_predict import predict_many, table_rows  # heavy: sklearn

        tables = []
        for paths in batch["paths"]:
            items = predict_many(self.model, [(p, Path(p)) for p in json.loads(paths)], self.top_k)
            tables.append(json.dumps(table_rows(items, self.width, self.image_size)))
        return {"chunk": batch["chunk"], "rows": tables}


def predict_on_ray(
    address: str | None,
    models_root: str | os.PathLike,
    run_id: str,
    data_root: str | os.PathLike,
    files: list[Path],
    top_k: int = 3,
    raw: bool = False,
    actors: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The local path's table rows for `files`, in their order, classified by actors on the cluster; and what
    ran where (actors, GPUs or CPUs each, seconds)."""
    import ray

    from core.serving.batch_predict import CHUNK  # heavy: sklearn

    connect(address)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        per_actor, count = {"num_gpus": 1}, gpus  # one model actor per device
    else:
        cpus = max(1, int(resources.get("CPU", 1)))
        per_actor, count = {"num_cpus": 1}, cpus  # a CPU cluster: one actor per core
    count = max(1, min(actors or count, -(-len(files) // CHUNK) or 1))
    started = time.perf_counter()
    chunks = [
        {"chunk": k, "paths": json.dumps([str(p) for p in files[start : start + CHUNK]])}
        for k, start in enumerate(range(0, len(files), CHUNK))
    ]
    dataset = ray.data.from_items(chunks, override_num_blocks=max(1, min(len(chunks), count * 4)))
    out = dataset.map_batches(
        _Classifier,
        fn_constructor_args=(str(models_root), run_id, str(data_root), top_k, raw),
        batch_size=1,  # one chunk of paths per call: the actor reads its photos itself
        batch_format="numpy",
        concurrency=count,
        **per_actor,
    )
    results = sorted(out.take_all(), key=lambda r: int(r["chunk"]))  # back in path order
    seconds = time.perf_counter() - started
    table = [row for r in results for row in json.loads(r["rows"])]
    where = {"address": address or os.environ.get(ADDRESS_ENV), "actors": count, **per_actor, "seconds": seconds}
    where["nodes"] = len([n for n in ray.nodes() if n.get("Alive")])
    return table, where

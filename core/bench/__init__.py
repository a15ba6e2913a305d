"""`python -m core bench`: Flora's fast paths against the plain way, both measured in this run.

Items (each a module here):
  train      1  frozen-backbone training on cached features vs the plain Keras way, end to end
  ingest     2  decoding photos into the cache vs a plain PIL loop
  gpu        3  ResNet-50 training throughput: synthetic vs real-cache batches, frozen, head only
  inference  4  one-photo latency p50/p95 and batch throughput vs plain `model.predict`
  memory     5  peak RSS of a training process on a large dataset at 224 px
  ui         6  the app server's CPU while a browser tab watches a training run (needs chromium)
  serve      7  the model server under 32 concurrent clients (batching on/off, vs bare batch
                throughput) and onnxruntime / LiteRT vs Keras
  sweep      8  a 20-trial sweep on cached features vs 20 runs the plain way, and vs one ordinary run
  attack     9  the model server while 32 clients send 100-megapixel PNG bombs: /healthz latency, peak
                memory, and the normal clients' throughput against without the attack
  cache     10  the compact cache (each square a q95 JPEG) against the raw one: disk, read throughput against
                training's need, and test accuracy of the same run on each
  concurrency   every shared store (names, sessions, marks, presets, workspaces, labelled photos, feedback,
                aliases, sign-in failures) written by 2 processes x 16 threads at once: writes kept of attempted,
                and writes per second
  scale     11  how every stage's time and memory grow at 1,000 classes, 1k -> 100k photos, and the pages'
                first draw at 500 runs and 1,000,000 logged predictions (only with --only scale: it takes
                about an hour at full scale, minutes with --quick)
  runtime   12  the frozen backbone's forward pass in Keras (TensorFlow), ONNX Runtime and OpenVINO at 64 / 128 /
                224 px: images per CPU-second against TensorFlow and this CPU's float32 matmul ceiling, and the
                levers (graph optimisation, threads, layout, hints, batch size)
  multilabel    a 20-label run against a single-label one on the same mosaics of real photos (cold `core train`,
                target within 10%; only with --only multilabel)
  multilabel_memory   peak memory of training on 1,000 labels x 100k photos against the scale bench's budget
                (only with --only multilabel_memory: it draws 100k photos and trains twice on them)

Results go to stdout (a table, or JSON with --json); progress and logs to stderr. The bench works
in a scratch folder of its own and never touches the run store or data/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.bench.common import BACKBONE, DEFAULT_DATASET, SCALES, Row, remove
from core.device import cpu_name, describe
from core.errors import EXIT_BUG, FloraError, InvalidInput
from core.network.backbones import BACKBONES
from core.paths import PROJECT_ROOT
from core.runs.record import package_versions

log = logging.getLogger("flora")
ITEMS = (
    "train",
    "ingest",
    "gpu",
    "inference",
    "memory",
    "ui",
    "serve",
    "sweep",
    "attack",
    "cache",
    "concurrency",
    "scale",
    "runtime",
    "multilabel",
    "multilabel_memory",
)
BY_NAME = ("scale", "multilabel", "multilabel_memory")  # long: asked for by name only
DEFAULT_ITEMS = tuple(item for item in ITEMS if item not in BY_NAME)
ALIASES = {"training": "train"}  # --only training: the cold frozen training item
_MODULES = {
    "train": "core.bench.cached_training",
    "ingest": "core.bench.decode",
    "gpu": "core.bench.throughput",
    "inference": "core.bench.latency",
    "memory": "core.bench.memory",
    "ui": "core.bench.server_cpu",
    "serve": "core.bench.serve",
    "sweep": "core.bench.sweep",
    "attack": "core.bench.attack",
    "cache": "core.bench.cache_format",
    "concurrency": "core.bench.concurrency",
    "scale": "core.bench.scale",
    "runtime": "core.bench.runtime",
    "multilabel": "core.bench.multilabel",
    "multilabel_memory": "core.bench.multilabel:run_memory",
}


def register(sub, common) -> None:
    """Add the `bench` subcommand to the CLI's subparsers."""
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="measure the fast paths against the plain way, both in this run",
        description=__doc__.split("\n\n")[0],
    )
    bench.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes on 2 cores (says so)")
    bench.add_argument(
        "--gpu",
        action="store_true",
        help="only the GPU item (ResNet-50 224 px training throughput), e.g. KERAS_BACKEND=jax on an H200",
    )
    bench.add_argument("--only", help=f"comma-separated items to run: {','.join(ITEMS)} (default: all but scale)")
    bench.add_argument("--dataset", help=f"a folder of class folders of photos (default: {DEFAULT_DATASET})")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    bench.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs/PERFORMANCE.md)")
    bench.add_argument("--output", help="also write the JSON result to this file")
    bench.add_argument("--workdir", help="scratch folder (default: a temporary one, removed afterwards)")
    bench.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's scale
    bench.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    scale = SCALES["tiny" if args.tiny else "quick" if args.quick else "full"]
    items = _items(args)
    dataset = Path(args.dataset).expanduser().resolve() if args.dataset else DEFAULT_DATASET
    if not dataset.is_dir() and not set(items) <= {
        "gpu",
        "scale",
        "concurrency",
        "multilabel_memory",
    }:  # these make their own data
        print(f"error: no photos at {dataset}; pass --dataset DIR (a folder of class folders)", file=sys.stderr)
        return 2
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="flora-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    meta = machine(scale.name, items, dataset)
    rows: list[Row] = []
    code = 0
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints; stdout is for the result
            for item in items:
                log.info("bench: %s (%s scale)", item, scale.name)
                started = time.perf_counter()
                try:
                    name, _, function = _MODULES[item].partition(":")
                    module = __import__(name, fromlist=["run"])
                    rows += getattr(module, function or "run")(scale, dataset, workdir / item)
                except Exception as e:  # one broken item must not hide the others' figures
                    log.exception("bench: %s failed", item)
                    note = f"{type(e).__name__}: {e}"
                    rows.append(Row(f"{item}.error", item, f"{item} failed", "", None, notes=note))
                    code = max(code, e.exit_code if isinstance(e, FloraError) else EXIT_BUG)
                log.info("bench: %s took %.0f s", item, time.perf_counter() - started)
    finally:
        if not args.workdir:
            remove(workdir)
    meta["finished"] = _now()
    meta["load_average_end"] = _load()
    result = {"meta": meta, "rows": [row.to_dict() for row in rows]}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif args.markdown:
        print(format_markdown(result))
    else:
        print(format_report(result))
    return code


def _items(args: argparse.Namespace) -> list[str]:
    if args.gpu:
        return ["gpu"]
    if not args.only:
        return list(DEFAULT_ITEMS)
    chosen = [ALIASES.get(name.strip(), name.strip()) for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ITEMS))
    if unknown:
        raise InvalidInput(f"unknown bench item(s) {unknown}: choose from {', '.join(ITEMS)}")
    return [name for name in ITEMS if name in chosen]


def machine(scale: str, items: list[str], dataset: Path) -> dict[str, Any]:
    """Date, machine, backend and versions: what the figures depend on."""

    return {
        "started": _now(),
        "scale": scale,
        "backbone": BACKBONES[BACKBONE].title,
        "items": items,
        "dataset": str(dataset),
        "device": describe().label,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "commit": _commit(),
        "load_average_start": _load(),
    }


def format_report(result: dict[str, Any]) -> str:
    """The result as a table a person reads, then the notes of each row."""
    meta = result["meta"]
    lines = [
        f"Flora bench ({meta['scale']} scale), {meta['started']}",
        f"{meta['device']}; {meta['cores']} cores, {meta['memory_gb']} GB RAM; keras "
        f"{meta['versions'].get('keras', '?')} on {meta['versions'].get('backend', '?')}; load average "
        f"{meta['load_average_start']} at start, {meta.get('load_average_end')} at end",
        "",
    ]
    headers = ["item", "figure", "ours", "baseline", "ratio", "target", "met"]
    table = []
    for row in result["rows"]:
        table.append(
            [
                row["key"],
                row["figure"],
                _value(row["ours"], row["unit"]),
                _value(row["baseline"], row["unit"]),
                "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
                row["target"] or "-",
                {True: "yes", False: "NO", None: "-"}[row["met"]],
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(headers)]
    lines.append("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.append("")
    for row in result["rows"]:
        baseline = f" Baseline: {row['baseline_label']}." if row["baseline_label"] else ""
        lines.append(f"{row['key']}: {row['notes']}.{baseline}")
    return "\n".join(lines)


def format_markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table with its notes, as docs/PERFORMANCE.md records it."""
    meta = result["meta"]
    versions = meta["versions"]
    framework = versions.get(versions.get("backend", ""), "?")
    lines = [
        f"Measured {meta['started']} ({meta['scale']} scale) on {meta['device']}, {meta['cores']} cores, "
        f"{meta['memory_gb']} GB RAM; Keras {versions.get('keras', '?')} on {versions.get('backend', '?')} "
        f"{framework}, NumPy {versions.get('numpy', '?')}, Pillow {versions.get('pillow', '?')}; commit "
        f"{meta.get('commit') or '?'}; load average {meta['load_average_start']} at start, "
        f"{meta.get('load_average_end')} at end.",
        "",
        "| item | figure | ours | baseline | ratio | target | met |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in result["rows"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        cells = [
            f"`{row['key']}`",
            row["figure"],
            _value(row["ours"], row["unit"]),
            _value(row["baseline"], row["unit"]),
            ratio,
            row["target"] or "-",
            met,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines.append("")
    for row in result["rows"]:
        baseline = f" Baseline: {row['baseline_label']}." if row["baseline_label"] else ""
        lines.append(f"- `{row['key']}`: {row['notes']}.{baseline}")
    return "\n".join(lines)


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) * 1024 / 1e9, 1)
    except OSError:
        pass
    return None


def _commit() -> str | None:

    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

"""Item 6: what the app's own server costs while a person watches a run.

A `streamlit run` server on a scratch workspace, one headless Chromium tab on the Train page, and a
real training run launched from the CLI beside it (as a user would: the page must notice it). The
figure is the server process's CPU seconds (user + system, from /proc) over the run, and over a
quiet spell with the tab open and nothing running. Needs Playwright and Chromium (the dev
requirements and Debian's `chromium`); without them the item says so.

`measure(project_root, ...)` can point at another checkout of Flora, so a before/after pair is
taken with one harness (docs/PERFORMANCE.md records one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from core.bench.common import BACKBONE, Row, Scale, free_port, link_subset, wait_answering
from core.bench.scale_data import copy_runs
from core.paths import PROJECT_ROOT

ITEM = "ui"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
QUIET_SECONDS = 30
STORE_RUNS = 200  # finished runs in the store beside the watched one: a class's store, read by every poll
CPU_SHARE_TARGET = 0.10  # of one core, while a tab watches a run


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        chromium = None
    if chromium is None:
        return [
            Row(
                "ui.server_cpu",
                ITEM,
                "app server CPU while a tab watches a run",
                "s",
                None,
                notes="not measured: needs Playwright (requirements-dev.txt) and Debian's chromium",
            )
        ]
    per_class = {"full": 160, "quick": 60, "tiny": 8}[scale.name]
    quiet = QUIET_SECONDS if scale.name == "full" else 10
    store_runs = {"full": STORE_RUNS, "quick": 50, "tiny": 3}[scale.name]
    result = measure(
        PROJECT_ROOT,
        dataset,
        workdir,
        per_class=per_class,
        chromium=chromium,
        quiet_seconds=quiet,
        store_runs=store_runs,
    )
    share = result["run_cpu"] / result["run_wall"] if result["run_wall"] else None
    return [
        Row(
            "ui.server_cpu_run",
            ITEM,
            "app server CPU while one tab watches a training run",
            "s",
            result["run_cpu"],
            target=f"< {100 * CPU_SHARE_TARGET:.0f}% of a core",
            met=share is not None and share < CPU_SHARE_TARGET,
            notes=f"{result['run_wall']:.0f} s run ({result['images']} photos at 64 px, weights none, standard "
            f"augmentation, cached features), launched from the CLI after the tab opened (reloaded once "
            "after 20 s if the page had not shown it); "
            f"{100 * share:.1f}% of one core (target under {100 * CPU_SHARE_TARGET:.0f}%), "
            f"{store_runs} finished runs in the store beside it"
            + (
                f"; the page showed it after {result['noticed']:.1f} s"
                if result["noticed"] is not None
                else "; the page never showed it"
            ),
            extra=result,
        ),
        Row(
            "ui.server_cpu_quiet",
            ITEM,
            f"app server CPU over {quiet} s with the tab open and nothing running",
            "s",
            result["quiet_cpu"],
            notes="the Train page and the sidebar poll for runs started elsewhere",
        ),
    ]


def measure(
    project_root: Path,
    dataset: Path,
    workdir: Path,
    per_class: int = 160,
    chromium: str = "chromium",
    quiet_seconds: float = QUIET_SECONDS,
    store_runs: int = 0,
) -> dict:
    """Server CPU seconds while a tab watches a run, and while it sits quiet; see the module docstring."""
    from playwright.sync_api import sync_playwright

    # The workspace sits inside the project, as `make run`'s data/ and models/ do: Streamlit's file
    # watcher then sees every write a run makes (a scratch folder, removed afterwards).
    scratch = project_root / f".flora-bench-ui-{os.getpid()}"
    data, models = scratch / "data", scratch / "models"
    link_subset(dataset, data / "flowers", per_class)
    env = {
        **os.environ,
        "FLORA_DATA_DIR": str(data),
        "FLORA_MODELS_DIR": str(models),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(project_root),
    }
    if store_runs:  # a store such as a class leaves: one small finished run, and copies of it (hard links)
        first = [sys.executable, "-m", "core", "train", str(data / "flowers"), "--image-size", "32", "--weights",
                 "none", "--epochs", "1", "--augment", "none", "--backbone", BACKBONE, "--json"]  # fmt: skip
        done = subprocess.run(first, cwd=project_root, env=env, capture_output=True, text=True, check=True)
        copy_runs(models, json.loads(done.stdout)["run_id"], store_runs - 1)
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "streamlit.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_healthy(port)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/train")
            page.wait_for_timeout(8000)  # the first run of the page: imports, first draw
            quiet_start = _cpu_seconds(server.pid)
            time.sleep(quiet_seconds)
            quiet_cpu = _cpu_seconds(server.pid) - quiet_start

            command = [sys.executable, "-m", "core", "train", str(data / "flowers"), "--image-size", "64",
                       "--weights", "none", "--epochs", "10", "--augment", "standard", "--backbone", BACKBONE,
                       "--json"]  # fmt: skip
            run_start, cpu_start = time.time(), _cpu_seconds(server.pid)
            trainer = subprocess.Popen(
                command, cwd=project_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            noticed, reloaded = None, False
            while trainer.poll() is None:
                waited = time.time() - run_start
                if noticed is None and page.locator("[data-testid='stProgress']").count():
                    noticed = waited
                if not reloaded and (noticed is not None or waited > 20):
                    # A reload, as a person would: a page that missed the run now watches it too,
                    # so the CPU figure is of a page watching a run in both cases.
                    page.reload()
                    reloaded = True
                time.sleep(0.5)
            run_wall = time.time() - run_start
            images = sum(1 for p in (data / "flowers").rglob("*") if not p.is_dir())
            run_cpu = _cpu_seconds(server.pid) - cpu_start
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
    watcher_lines = (workdir / "streamlit.log").read_text(errors="replace").count("Inotify")
    return {
        "run_cpu": run_cpu,
        "run_wall": run_wall,
        "quiet_cpu": quiet_cpu,
        "noticed": noticed,
        "images": images,
        "inotify_log_lines": watcher_lines,
        "exit_status": trainer.returncode,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(port: int, timeout: float = 60) -> None:
    wait_answering(f"http://127.0.0.1:{port}/_stcore/health", timeout=timeout, what=f"streamlit on port {port}")

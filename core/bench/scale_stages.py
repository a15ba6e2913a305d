"""The scale bench's stages, each in a process of its own (`run_stage`), or, at the suite's tiny size, all of a
size's stages in one child (`StageWorker`); `python -m core.bench.scale_stages` is that child. A stage is a CLI
command (`cli`) or one of the calls below, timed inside the child with its imports excluded."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.cli import build_parser
from core.data.datasets import scan_dataset
from core.paths import PROJECT_ROOT
from core.processes import exit_process
from core.results.evaluation.embedding import compute_map, save_map
from core.runs.analysis import RunAnalysis

log = logging.getLogger("flora")

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
        command = [sys.executable, "-m", "core.bench.scale_stages", str(result_file), call or "cli", *argv]
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
            [sys.executable, "-m", "core.bench.scale_stages", "--serve", str(self._reply_fd)],
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
            # only its command's module imported, as `python -m core` does (a GPU machine has no optuna, say)
            args = build_parser(rest[0] if rest else None).parse_args(rest)
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


if __name__ == "__main__":
    exit_process(child(sys.argv[1:]))

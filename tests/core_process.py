"""`python -m core ...` for the end-to-end tests, forked from this worker's warm launcher where one serves.

A test that runs Flora's command line in a process of its own (a training run, a prediction, a sweep) started a
new Python each time, and each one imported Keras and TensorFlow before its first line of work: ~4.5 CPU-s, most
of what a short command costs. The test workers keep a warm launcher for the jobs their tests launch
(core.processes.launcher, as the app does); `run_core` and `start_core` ask it for these commands too. The command
still runs in a process of its own, as `python -m core ARGS` (its own arguments, folder, environment, session), with
its stdout, stderr and exit status kept apart as `subprocess` gives them. Where no launcher serves the environment
(one that changes what the imports read: another backend, another HOME; a worker without a launcher), the command
starts the plain way. Tests whose subject is a fresh interpreter (what a light command imports, the device a new
process sees) start theirs with `subprocess` as before.

The browser tests' Streamlit servers start the same way (`start_module("streamlit", "run", ...)`): each new one
imported Keras and TensorFlow again for the app's background warm-up (`pages/ui/common.py`), ~4 CPU-s a server.

This file is also the forked side (`python -m tests.core_process STATUS OUT ERR MODULE ARGS...`): it points its
stdout and stderr at OUT and ERR (both at one file where ERR is OUT), runs MODULE as `python -m MODULE ARGS` would,
then writes its exit status to STATUS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.paths import PROJECT_ROOT

POLL_SECONDS = 0.05


class CoreProcess:
    """A running `python -m MODULE ARGS` (`core` unless named), with the part of `subprocess.Popen`'s interface the
    tests use. Its stdout goes to `folder`/stdout and its stderr to `folder`/stderr, or both to `log` where given."""

    def __init__(
        self, args: list[str], env: dict[str, str], folder: Path, module: str = "core", log: Path | None = None
    ):
        from core.processes import job_environment, launcher

        self.args = [sys.executable, "-m", module, *args]
        self.returncode: int | None = None
        self._out, self._err, self._status = folder / "stdout", folder / "stderr", folder / "status"
        if log is not None:
            self._out = self._err = log
        jobs = job_environment()  # a job's two additions, which the launcher's key holds
        forked_env = {**env, "PYTHONUNBUFFERED": jobs["PYTHONUNBUFFERED"], "PYTHONPATH": jobs["PYTHONPATH"]}
        wrapped = [sys.executable, "-m", "tests.core_process", str(self._status), str(self._out), str(self._err)]
        self.pid = launcher.spawn([*wrapped, module, *args], os.devnull, forked_env)  # in the project's folder
        self._plain: subprocess.Popen | None = None
        if self.pid is None:  # no launcher serves this environment: a new process, as before
            apart = self._err != self._out
            with open(self._out, "wb") as out, open(self._err, "wb") if apart else contextlib.nullcontext() as err:
                self._plain = subprocess.Popen(
                    self.args, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=err if apart else subprocess.STDOUT,
                )  # fmt: skip
            self.pid = self._plain.pid

    @property
    def forked(self) -> bool:
        return self._plain is None

    def poll(self) -> int | None:
        if self.returncode is None:
            if self._plain is not None:
                self.returncode = self._plain.poll()
            elif not _alive(self.pid):  # ended (the launcher reaps its jobs): its status file says how
                self.returncode = int(self._status.read_text()) if self._status.exists() else -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(POLL_SECONDS)
        return self.returncode

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self._out.read_text(errors="replace"), self._err.read_text(errors="replace")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_core(*args: str, env: dict[str, str], folder: Path) -> CoreProcess:
    """Start `python -m core ARGS` (forked from the warm launcher where one serves `env`); its output goes to files
    in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return CoreProcess([str(a) for a in args], env, folder)


def start_module(module: str, *args: str, env: dict[str, str], log: Path) -> CoreProcess:
    """Start `python -m MODULE ARGS` (forked from the warm launcher where one serves `env`) with its stdout and
    stderr in `log`; its exit status is written beside it."""
    folder = log.parent / f".{log.name}.process"
    folder.mkdir(parents=True, exist_ok=True)
    return CoreProcess([str(a) for a in args], env, folder, module=module, log=log)


def run_core(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """`subprocess.run([python, "-m", "core", *args], capture_output=True, text=True)`, forked from the warm launcher
    where one serves `env`."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="flora-core-"))
    try:
        process = start_core(*args, env=env, folder=folder)
        try:
            out, err = process.communicate(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _run_forked(status: str, out: str, err: str, module: str, args: list[str]) -> None:
    """In the forked process: become `python -m MODULE ARGS` with stdout and stderr in OUT and ERR (one file where
    they are the same), then write the exit status to STATUS (whole: written aside, then renamed) before Python's own
    exit."""
    import runpy
    import traceback
    import types

    handle = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(handle, 1)
    os.close(handle)
    if err == out:
        os.dup2(1, 2)
    else:
        handle = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, 2)
        os.close(handle)
    sys.argv = ["-m", *args]
    sys.modules["__main__"] = types.ModuleType("__main__")  # the module's own main module, not this one
    code: object = 0
    try:
        runpy._run_module_as_main(module)  # what `python -m MODULE` runs
    except SystemExit as e:
        code = e.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    Path(f"{status}.part").write_text(str(code))
    os.replace(f"{status}.part", status)
    sys.exit(code)


if __name__ == "__main__":
    _run_forked(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])

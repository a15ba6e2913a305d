"""The warm launcher (core.processes.launcher): a job forked from it starts as `python -m` would start it, with
Keras already loaded; a job it cannot serve, or any failure, starts the plain way; it ends with its process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.processes import JobFolder, keep_warm_launcher, launcher, process_alive
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.05)


def probe(out: Path, *words: str) -> list[str]:
    return [sys.executable, "-m", "tests.job_probe", str(out), *words]


def seen(out: Path, timeout: float = 120) -> dict:
    wait_for(lambda: out.exists() and out.stat().st_size, timeout, f"{out.name} from the probe")
    time.sleep(0.05)
    return json.loads(out.read_text())


@pytest.mark.backend_agnostic
def test_a_forked_job_starts_as_python_m_would_and_anything_else_starts_the_plain_way(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "_launchers", {})  # this test's own launcher, not the worker's
    monkeypatch.setattr(launcher, "_lazy", {"on": False})
    monkeypatch.setenv(launcher.ENV_SWITCH, "0")
    assert not keep_warm_launcher() and not launcher.launchers()  # switched off: no launcher
    monkeypatch.delenv(launcher.ENV_SWITCH)
    try:
        assert keep_warm_launcher()
        (warm,) = launcher._launchers.values()
        wait_for(warm.ready, 240, "the launcher to import Keras and listen")
        folder = JobFolder(tmp_path / "job", "job.log")
        out = {name: tmp_path / f"{name}.json" for name in ("plain", "forked", "failed", "killed", "after")}

        # another value of a variable the imports read: the plain way
        folder.launch(probe(out["plain"], "done"), env={"FLORA_PROBE": "p", "TF_NUM_INTEROP_THREADS": "3"})
        forked = folder.launch(probe(out["forked"], "done"), env={"FLORA_PROBE": "f"})
        a, b = seen(out["plain"]), seen(out["forked"])
        assert a["parent"] == os.getpid() and b["parent"] == warm.process.pid  # a new process / forked
        assert b["keras_loaded"] and not a["keras_loaded"]  # the point: the fork found Keras imported
        for same in ("cwd", "own_session", "stdin", "main", "path0"):  # what `python -m` gives, either way
            assert a[same] == b[same], same
        assert a["own_session"] and a["stdin"] == os.devnull and a["cwd"] == a["path0"] == str(PROJECT_ROOT)
        assert a["main"] == str(PROJECT_ROOT / "tests" / "job_probe.py") == a["argv"][0] == b["argv"][0]
        assert b["argv"][1:] == [str(out["forked"]), "done"] and (a["probe"], b["probe"]) == ("p", "f")
        assert a["cmdline"] == probe(out["plain"], "done") and b["cmdline"] == probe(out["forked"], "done")  # in ps
        assert (forked.pid, forked.pid_start) != (None, None) and forked.pid == b["pid"]
        for name in ("plain", "forked"):
            wait_for(lambda: Path(f"{out[name]}.done").exists(), 60, f"the {name} job to finish")  # noqa: B023
        wait_for(lambda: not process_alive(forked.pid, forked.pid_start), 10, "the ended job to be reaped")
        log = folder.log_path.read_text()
        assert log.count("hello on stdout") == 2 and log.count("hello on stderr") == 2

        # a job that raises: its traceback in its log, as `python -m` prints it
        failed = folder.launch(probe(out["failed"], "fail"))
        assert seen(out["failed"])["parent"] == warm.process.pid
        wait_for(lambda: not process_alive(failed.pid, failed.pid_start), 30, "the failed job to end")
        assert "RuntimeError: the probe failed on purpose" in folder.log_path.read_text()

        # a job killed: gone at once, no zombie that looks alive
        killed = folder.launch(probe(out["killed"], "sleep", "120"))
        assert seen(out["killed"])["parent"] == warm.process.pid
        os.kill(killed.pid, signal.SIGKILL)
        wait_for(lambda: not process_alive(killed.pid, killed.pid_start), 10, "the killed job to be gone")
        assert launcher.launchers() == [(warm.process.pid, 3)]

        # the launcher dies: the next job starts the plain way, and no launcher is started again
        warm.process.kill()
        warm.process.wait(timeout=30)
        keep_warm_launcher()
        folder.launch(probe(out["after"]))
        assert seen(out["after"])["parent"] == os.getpid() and launcher._launchers == {warm.key: warm}
    finally:
        launcher.stop_all()
    assert not warm.socket_path.exists() and not warm.socket_path.with_suffix(".log").exists()


def test_the_launcher_ends_with_its_process_and_the_jobs_it_forked_go_on(tmp_path):
    """As the app keeps it: started by the first job (which starts the plain way beside it), then forking the next."""
    script = (
        "import json, os, sys, time\n"
        "from core.processes import JobFolder, keep_warm_launcher, launcher\n"
        "keep_warm_launcher(now=False); assert not launcher._launchers\n"
        "folder = JobFolder(sys.argv[1], 'job.log')\n"
        "probe = [sys.executable, '-m', 'tests.job_probe']\n"
        "first = folder.launch([*probe, sys.argv[2] + '.first'])\n"
        "(warm,) = launcher._launchers.values(); deadline = time.time() + 240\n"
        "while not warm.ready() and time.time() < deadline: time.sleep(0.05)\n"
        "job = folder.launch([*probe, sys.argv[2], 'sleep', '3', 'done'])\n"
        "print(json.dumps({'launcher': warm.process.pid, 'job': job.pid, 'me': os.getpid()}))\n"
    )
    out = tmp_path / "job.json"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "job"), str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        env={name: value for name, value in os.environ.items() if name != launcher.ENV_SWITCH},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    pids = json.loads(done.stdout.strip().splitlines()[-1])
    first, job = seen(Path(f"{out}.first")), seen(out)
    assert first["parent"] == pids["me"] and not first["keras_loaded"]  # the plain way, starting the launcher
    assert job["pid"] == pids["job"] and job["parent"] == pids["launcher"] and job["keras_loaded"]
    wait_for(lambda: not process_alive(pids["launcher"]), 3 * launcher.OWNER_CHECK_SECONDS + 5, "the launcher to end")
    wait_for(lambda: Path(f"{out}.done").exists(), 30, "the job to go on to its end")


def test_a_command_forked_for_a_test_gives_what_a_new_process_gives(trained_run, tmp_path, monkeypatch):
    """tests/core_process.py: `python -m core ARGS` forked from the worker's launcher gives the stdout, stderr and
    exit status a new process gives (a success, refusals), and one still running can be polled and killed."""
    from core.bench.common import free_port
    from tests.core_process import run_core, start_core

    monkeypatch.setattr(launcher, "_launchers", {})  # this test's own launcher, not the worker's
    monkeypatch.setattr(launcher, "_lazy", {"on": False})
    monkeypatch.delenv(launcher.ENV_SWITCH, raising=False)
    env = {**os.environ, "FLORA_MODELS_DIR": str(trained_run["models_root"]), "FLORA_DATA_DIR": str(tmp_path)}
    commands = (["runs", "--json"], ["evaluate", "zzzz"], ["predict"], ["train", str(tmp_path / "nowhere")])
    plain = [
        subprocess.run([sys.executable, "-m", "core", *a], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        for a in commands
    ]
    assert [p.returncode != 0 for p in plain] == [False, True, True, True] and trained_run["run_id"] in plain[0].stdout
    try:
        assert keep_warm_launcher()
        (warm,) = launcher._launchers.values()
        wait_for(warm.ready, 240, "the launcher to import Keras and listen")
        for args, new in zip(commands, plain, strict=True):
            forked = run_core(*args, env=env, timeout=120)
            assert (forked.returncode, forked.stdout, forked.stderr) == (new.returncode, new.stdout, new.stderr), args
        assert launcher.launchers() == [(warm.process.pid, len(commands))]  # each one forked

        server = start_core("serve", trained_run["run_id"], "--port", str(free_port()), env=env, folder=tmp_path / "s")
        assert server.forked and server.pid != warm.process.pid
        time.sleep(1)
        assert server.poll() is None  # serving until stopped
        server.kill()
        assert server.wait(timeout=30) == -signal.SIGKILL and not process_alive(server.pid)
    finally:
        launcher.stop_all()

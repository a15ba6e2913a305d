"""The suite's own scheduling: a module's shared fixture is built on one worker, an `xdist_group` stays together.

pytest 9.2 with pytest-xdist 3.8 silently ignored every group (pytest-dev/pytest-xdist#1386): the Ray tests started
a cluster on each worker at once and the module fixtures were built twice. This runs a small suite through the same
`-n 2 --dist loadgroup` and this suite's own grouping hook, and reads which worker ran each test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

SUITE = """
import json, os
import pytest

@pytest.fixture(scope="module")
def shared():
    return object()

def _record(name):
    with open(os.environ["RECORD"], "a") as out:
        out.write(json.dumps([name, os.environ["PYTEST_XDIST_WORKER"]]) + "\\n")

@pytest.mark.parametrize("i", range(6))
def test_uses_the_module_fixture(shared, i):
    _record("module")

@pytest.mark.xdist_group("named")
@pytest.mark.parametrize("i", range(6))
def test_in_a_named_group(i):
    _record("named")

@pytest.mark.parametrize("i", range(12))
def test_free(i):
    _record("free")
"""


def test_a_modules_shared_fixture_and_a_named_group_each_run_on_one_worker(tmp_path):
    (tmp_path / "test_small.py").write_text(SUITE)
    # the suite's own hook, nothing else of its conftest's fixtures needed
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    record = tmp_path / "record.jsonl"
    env = {**os.environ, "RECORD": str(record), "PYTHONPATH": str(PROJECT_ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "xdist",
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "-p",
        "no:cacheprovider",
    ]
    command += ["-q", "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_small.py")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    workers: dict[str, set[str]] = {}
    for line in record.read_text().splitlines():
        name, worker = json.loads(line)
        workers.setdefault(name, set()).add(worker)
    assert len(workers["module"]) == 1, workers
    assert len(workers["named"]) == 1, workers
    assert set().union(*workers.values()) == {"gw0", "gw1"}, workers  # both worked: the run was shared out

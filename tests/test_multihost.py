"""Issue 20.3: multi-host data-parallel fine-tuning on JAX, tried as 2 CPU processes on localhost."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from core.bench.common import free_port
from core.settings.config import ConfigError, TrainConfig
from core.train.multihost import MultiHost, _rows, check_config, parse
from tests.conftest import PROJECT_ROOT, make_image_dataset


def test_the_flags_are_checked():
    assert parse("10.0.0.1:1234", 4, 3) == MultiHost("10.0.0.1:1234", 4, 3)
    assert parse("head:1234", 2, 0).writer and not parse("head:1234", 2, 1).writer
    for bad, match in (
        (("nohost", 2, 0), "HOST:PORT"),
        (("h:1", None, 0), "--num-processes"),
        (("h:1", 1, 0), "at least 2"),
        (("h:1", 2, 2), r"\[0, 2\)"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse(*bad)


def test_auto_reads_what_slurm_set_for_this_process_through_jaxs_own_detection(monkeypatch):
    """`--distributed auto` under `srun`: the first node of the step, a port from the job id, the task's numbers."""
    pytest.importorskip("jax")
    for name in list(os.environ):
        if name.startswith(("SLURM_", "OMPI_", "JOBSET_", "JAX_COORDINATOR")):
            monkeypatch.delenv(name)
    with pytest.raises(ConfigError, match="found no cluster environment JAX detects"):
        parse("auto", None, None)
    fake_srun = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "gpu[07-08]",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "0",
        "SLURM_STEP_NUM_NODES": "2",
    }
    for name, value in fake_srun.items():
        monkeypatch.setenv(name, value)
    hosts = parse("auto", None, None)
    assert hosts == MultiHost(f"gpu07:{4242 % 4096 + 61440}", 2, 1, "slurm") and not hosts.writer
    assert "from slurm" in hosts.label
    monkeypatch.setenv("JAX_COORDINATOR_PORT", "7777")
    assert parse("auto", None, 0).coordinator == "gpu07:7777" and parse("auto", None, 0).writer  # given wins


def test_the_global_batch_must_split_and_phase_2_must_run():
    hosts = MultiHost("h:1", 2, 0)
    check_config(TrainConfig(batch_size=8, fine_tune_epochs=1), hosts)
    with pytest.raises(ConfigError, match="split evenly over 3"):
        check_config(TrainConfig(batch_size=8, fine_tune_epochs=1), MultiHost("h:1", 3, 0))
    with pytest.raises(ConfigError, match="--fine-tune-epochs"):
        check_config(TrainConfig(batch_size=8, fine_tune_epochs=0), hosts)


def test_each_process_reads_its_own_slice_of_every_global_batch():
    batch = np.arange(12).reshape(6, 2)
    slices = [_rows(batch, MultiHost("h:1", 3, i)) for i in range(3)]
    assert np.array_equal(np.concatenate(slices), batch)  # in process order: the global batch again
    assert _rows({"x": batch}, MultiHost("h:1", 2, 1))["x"].tolist() == batch[3:].tolist()
    with pytest.raises(ValueError, match="does not split"):
        _rows(batch, MultiHost("h:1", 4, 0))


def _epochs(models, run_id: str) -> list[dict]:
    from core.runs.store import RunStore

    return [r for r in RunStore(models).read_metrics(run_id) if r["kind"] == "epoch"]


@pytest.mark.slow
def test_two_processes_fine_tune_like_one_with_the_same_global_batch(tmp_path):
    """The same run trained by one process and by 2 processes (each half of every global batch of 8): the same
    losses within tolerance; process 0 alone writes the run folder, process 1 leaves nothing behind."""
    dataset = make_image_dataset(tmp_path / "photos", {"red": 12, "green": 12, "blue": 12})
    env = {**os.environ, "FLORA_BACKEND": "jax", "TMPDIR": str(tmp_path)}
    env.pop("KERAS_BACKEND", None)
    flags = [str(dataset), "--weights", "none", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]
    # no augmented views: phase 1 runs in each process as in one (the subject is phase 2), and on JAX the views'
    # augmentation cost 6 of the three processes' 56 CPU-s
    flags += ["--head", "8", "--fine-tune-epochs", "2", "--seed", "3", "--augmented-views", "0"]

    def train(models: str, data: str, *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "core", "train", *flags, "--models-dir", str(tmp_path / models)]
        command += ["--data-dir", str(tmp_path / data), *extra]
        return subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    one = train("one", "d1")
    one_out, one_err = one.communicate(timeout=400)
    assert one.returncode == 0, one_err[-2000:]
    coordinator = f"127.0.0.1:{free_port()}"
    processes = [
        train("two", f"d{2 + i}", "--distributed", coordinator, "--num-processes", "2", "--process-id", str(i))
        for i in (1, 0)
    ]
    try:
        outputs = [p.communicate(timeout=400) for p in processes]
    finally:
        for p in processes:  # stop what the test started, by its process id
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    run_id = one_out.strip().splitlines()[-1]
    assert outputs[1][0].strip().splitlines()[-1] == run_id  # process 0: the same run, written
    assert "process 0 wrote the run" in outputs[0][0]
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if not p.name.startswith(".")) == [run_id]
    assert not list(tmp_path.glob("flora-process-*"))  # process 1's scratch store is gone

    single, spread = _epochs(tmp_path / "one", run_id), _epochs(tmp_path / "two", run_id)
    assert [r["phase"] for r in spread] == [1, 2, 2] == [r["phase"] for r in single]
    for a, b in zip(single, spread, strict=True):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=2e-3, atol=1e-4)
    from core.runs.store import RunStore

    status = RunStore(tmp_path / "two").get(run_id).status
    assert status.state == "done" and "phase 2 across 2 processes" in status.parallel

"""What importing `core` sets up: a heavy framework's first import runs with the collector paused, then frozen."""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import sys
import threading

import pytest

import core as startup  # what it sets up for the process

PROBE = """
import gc, sys
sys.modules[__name__].collector_on = gc.isenabled()
{body}
"""


@pytest.fixture
def heavy_probes(tmp_path, monkeypatch):
    """Three packages in tmp_path counted as heavy: `heavy_outer` imports `heavy_inner`, `heavy_broken` raises.
    The finder is set up on a copy of sys.meta_path, removed after the test; the collector's state is restored."""
    (tmp_path / "heavy_outer").mkdir()
    (tmp_path / "heavy_outer" / "__init__.py").write_text(
        PROBE.format(body="import heavy_inner\ninner_saw = heavy_inner.collector_on\nafter_inner = gc.isenabled()")
    )
    (tmp_path / "heavy_inner.py").write_text(PROBE.format(body=""))
    (tmp_path / "heavy_broken.py").write_text(PROBE.format(body="raise RuntimeError('it broke')"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(startup, "HEAVY_PACKAGES", frozenset({"heavy_outer", "heavy_inner", "heavy_broken"}))
    others = [finder for finder in sys.meta_path if not isinstance(finder, startup._HeavyImportWithoutCollection)]
    monkeypatch.setattr(sys, "meta_path", others)
    for name in ("heavy_outer", "heavy_inner", "heavy_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert startup.pause_collection_during_heavy_imports() is True
    assert startup.pause_collection_during_heavy_imports() is False  # once a process
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was_enabled else gc.disable()


def test_a_heavy_import_runs_without_the_collector_and_freezes_what_it_loaded(heavy_probes):
    frozen_before = gc.get_freeze_count()
    gc.collect()  # nothing young left over: what the freeze moves comes from the import (and this test)
    import heavy_outer

    assert heavy_outer.collector_on is False  # paused for the package's own code
    assert heavy_outer.inner_saw is False and heavy_outer.after_inner is False  # the nested one did not resume it
    assert gc.isenabled()  # resumed after the outermost
    assert gc.get_freeze_count() > frozen_before
    assert isinstance(heavy_outer.__loader__, importlib.machinery.SourceFileLoader)  # its own loader, kept
    assert heavy_outer.__spec__.loader is heavy_outer.__loader__


def test_a_collector_someone_turned_off_stays_off(heavy_probes):
    gc.disable()
    import heavy_inner

    assert heavy_inner.collector_on is False
    assert not gc.isenabled()


def test_a_failing_heavy_import_resumes_the_collector_and_raises_its_error(heavy_probes):
    frozen_before = gc.get_freeze_count()
    with pytest.raises(RuntimeError, match="it broke"):
        import heavy_broken  # noqa: F401
    assert gc.isenabled()
    # nothing frozen for an import that failed: a freeze would raise the count by every object the process holds;
    # a frozen object freed meanwhile (by this or another thread) lowers it, so the count may not grow, not must stay
    assert gc.get_freeze_count() <= frozen_before
    assert "heavy_broken" not in sys.modules


def test_an_ordinary_import_is_left_to_the_usual_finders(heavy_probes, tmp_path):
    (tmp_path / "light_module.py").write_text(PROBE.format(body=""))
    import light_module

    assert light_module.collector_on is True
    sys.modules.pop("light_module", None)


def test_two_wrapping_finders_compose_in_either_order(heavy_probes):
    """core.device's quiet TensorFlow import and this one both wrap what the other finders find."""
    calls = []

    class Wrapping(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != "heavy_inner":
                return None
            calls.append(fullname)
            return startup.find_spec_elsewhere(self, fullname, path, target)

    sys.meta_path.insert(0, Wrapping())  # before core's finder, as core.device's is
    import heavy_inner

    assert calls == ["heavy_inner"]
    assert heavy_inner.collector_on is False  # core's finder still wrapped it


def test_keras_in_this_process_was_imported_paused_and_frozen():
    """conftest imports `core` first; Keras, imported after it, went through the paused import."""
    import keras

    assert isinstance(keras.__loader__, importlib.machinery.SourceFileLoader)
    assert gc.get_freeze_count() > 100_000  # TensorFlow's and Keras's objects, out of every collection


def test_an_unused_optional_import_reads_as_missing_only_while_its_package_loads(heavy_probes, tmp_path, monkeypatch):
    (tmp_path / "heavy_optional.py").write_text("LOADED = True\n")
    (tmp_path / "heavy_outer" / "__init__.py").write_text(
        "try:\n    import heavy_optional\n    saw_optional = True\nexcept ImportError:\n    saw_optional = False\n"
    )
    monkeypatch.setattr(startup, "UNUSED_OPTIONAL_IMPORTS", {"heavy_outer": ("heavy_optional",)})
    monkeypatch.delitem(sys.modules, "heavy_optional", raising=False)
    import heavy_outer

    assert heavy_outer.saw_optional is False
    assert "heavy_optional" not in sys.modules  # not left behind as missing
    import heavy_optional

    assert heavy_optional.LOADED
    sys.modules.pop("heavy_optional")


def test_an_unused_optional_import_is_hidden_only_from_the_thread_loading_its_package(
    heavy_probes, tmp_path, monkeypatch
):
    """Another thread importing the optional package meanwhile (the app's page while its warm-up thread imports
    Keras) finds it as usual."""
    (tmp_path / "heavy_optional.py").write_text("LOADED = True\n")
    (tmp_path / "heavy_sync.py").write_text("during = None\n")
    (tmp_path / "heavy_outer" / "__init__.py").write_text(
        "import heavy_sync\nheavy_sync.during()\n"
        "try:\n    import heavy_optional\n    saw_optional = True\nexcept ImportError:\n    saw_optional = False\n"
    )
    monkeypatch.setattr(startup, "UNUSED_OPTIONAL_IMPORTS", {"heavy_outer": ("heavy_optional",)})
    for name in ("heavy_optional", "heavy_sync"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import heavy_sync

    other_thread_saw = []

    def import_in_another_thread():
        def import_optional():
            module = importlib.import_module("heavy_optional")
            other_thread_saw.append(module.LOADED)
            del sys.modules["heavy_optional"]  # loaded again below, by the loading thread's own import

        thread = threading.Thread(target=import_optional)
        thread.start()
        thread.join(timeout=30)

    heavy_sync.during = import_in_another_thread
    import heavy_outer

    assert other_thread_saw == [True]
    assert heavy_outer.saw_optional is False  # still hidden from the thread that loads heavy_outer
    assert startup._hidden_in_this_thread() == {}
    sys.modules.pop("heavy_sync")


def test_keras_sees_jax_where_jax_is_its_backend(monkeypatch):
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert startup._unused_optional_imports("keras") == ("jax",)
    assert startup._unused_optional_imports("tensorflow") == ("jax",)
    for backend in ("jax", " JAX"):
        monkeypatch.setenv("KERAS_BACKEND", backend)
        assert startup._unused_optional_imports("keras") == ()
    monkeypatch.delenv("KERAS_BACKEND")  # Keras's own config file may name JAX: not hidden
    assert startup._unused_optional_imports("keras") == ()
    assert startup._unused_optional_imports("tensorflow") == ("jax",)  # TensorFlow never needs it
    monkeypatch.setitem(sys.modules, "jax", object())
    assert startup._unused_optional_imports("tensorflow") == ()  # loaded already: seen as it is


def test_on_another_backend_keras_sees_tensorflow_only_once_it_is_loaded(tmp_path, monkeypatch):
    """Keras's lazy handle on TensorFlow, as `import core` leaves it on JAX: asking whether it is there imports
    nothing and answers no until something loads it; using it still loads it."""
    from keras.src.utils import module_utils

    (tmp_path / "heavy_framework.py").write_text("VERSION = '9'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_framework", raising=False)
    handle = module_utils.LazyModule("heavy_framework")
    monkeypatch.setattr(module_utils, "tensorflow", handle)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    startup._tensorflow_for_keras_once_loaded()
    assert type(handle) is module_utils.LazyModule  # on TensorFlow, Keras's own handle as it was

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    startup._tensorflow_for_keras_once_loaded()
    startup._tensorflow_for_keras_once_loaded()  # once is enough; again changes nothing
    assert handle.available is False and "heavy_framework" not in sys.modules
    assert handle.VERSION == "9" and "heavy_framework" in sys.modules  # used: loaded, as Keras's handle does
    assert handle.available is True
    sys.modules.pop("heavy_framework")


@pytest.mark.slow
def test_a_jax_process_seeds_saves_a_model_and_logs_to_tensorboard_without_loading_tensorflow(tmp_path):
    """Before: `keras.utils.set_random_seed` imported all of TensorFlow in every JAX training process of the CPU
    build (and saving a model, and TensorBoard's writer, would have): 1.10 -> 0.65 GB peak memory for a run."""
    import os
    import subprocess

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from core.runs.record import TENSORBOARD_DIR
    from tests.conftest import PROJECT_ROOT

    code = (
        "import sys, core, keras\n"
        "from core.tracking.tensorboard import EventWriter\n"
        "keras.utils.set_random_seed(3)\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "model.save(sys.argv[1] + '/model.keras')\n"
        "writer = EventWriter(sys.argv[1])\n"
        "writer.scalars(1, {'epoch/loss': 0.5})\n"
        "writer.close()\n"
        "print('tensorflow' in sys.modules)\n"
        "import tensorflow\n"
        "from keras.src.utils.module_utils import tensorflow as handle\n"
        "print(handle.available)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False", "True"]  # not loaded until imported; then seen as it is
    assert (tmp_path / "model.keras").stat().st_size > 0
    events = EventAccumulator(str(tmp_path / TENSORBOARD_DIR), size_guidance={"scalars": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("epoch/loss")] == [(1, 0.5)]

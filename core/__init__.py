"""Flora's engine and CLI: datasets in, a backbone and its head trained in two phases, the run store, and what
a finished run is used for (evaluation, explanation, calibration, comparison, serving, exports, monitoring).

Importing `core` is cheap: modules that need Keras import it themselves. docs/ARCHITECTURE.md maps the modules
by concern; `python -m core --help` lists the commands.

Every Flora process starts by importing `core`, which sets up three things for the whole process: the Keras backend
FLORA_BACKEND names, the first import of each heavy framework without the garbage collector (below), and, on a
backend other than TensorFlow, Keras's optional uses of TensorFlow only once something loaded it
(`_tensorflow_for_keras_once_loaded`).

The first import of a heavy framework runs with the garbage collector paused. Importing Keras on TensorFlow
creates about 700,000 objects; CPython runs a collection every 700 new ones and, as the heap grows, ever
larger ones over everything imported so far, which all stays alive: 19% of `import keras` was spent in
collections that found nothing to free (py-spy, --native). Paused, `import keras` takes 4.5 -> 3.7 CPU-s. What
it loaded is then frozen (`gc.freeze`: kept out of every later collection, as modules and classes live as long
as the process anyway), so the collections a process makes while it works no longer walk TensorFlow's
modules each time: a small fit after the import 2.0 -> 1.65 CPU-s. Every training run, background task,
command and test process imports TensorFlow once (docs/PERFORMANCE.md, "The collector paused while a
framework loads").

Only the outermost of these imports pauses and freezes (Keras importing TensorFlow is one pause), and a
collector someone else turned off stays off. A collection still runs as usual between imports.
"""

__version__ = "0.1.0"

import contextlib as _contextlib
import gc as _gc
import os as _os
import sys as _sys
import threading as _threading

# FLORA_BACKEND=jax|tensorflow names the Keras backend for the app and the CLI (KERAS_BACKEND, when set, wins),
# before anything imports Keras: every Flora process starts by importing `core`.
if _os.environ.get("FLORA_BACKEND") and not _os.environ.get("KERAS_BACKEND"):
    _os.environ["KERAS_BACKEND"] = _os.environ["FLORA_BACKEND"].strip().lower()


# Top-level packages whose first import pauses the collector: each is a large import Flora makes in some
# process, measured (CPU-s, plain -> paused): keras 4.5 -> 3.7 (TensorFlow inside), tf2onnx 5.2 -> 3.7,
# sklearn 1.5 -> 1.3, scipy 1.1 -> 1.0, jax 0.76 -> 0.63, streamlit 0.51 -> 0.39, fastapi, ray, pandas ~0.1 each.
HEAVY_PACKAGES = frozenset(
    {"tensorflow", "keras", "jax", "tf2onnx", "sklearn", "scipy", "streamlit", "pandas", "ray", "fastapi"}
)
# Optional imports a package makes for a part Flora never uses, read as "not installed" while that package loads
# (unless already loaded): loading JAX for them cost 0.45 CPU-s in every process that imports TensorFlow.
# TensorFlow Lite imports JAX (`from jax import jit`) only for its converter from JAX functions
# (`TFLiteConverter.experimental_from_jax`; Flora converts Keras models), and Keras only to patch
# `jax.monitoring` for its Orbax checkpoint callback. Keras is spared only where KERAS_BACKEND names another
# backend than JAX: with JAX as the backend, Keras loads it first and it is seen.
UNUSED_OPTIONAL_IMPORTS = {"tensorflow": ("jax",), "keras": ("jax",)}


def _unused_optional_imports(package: str) -> tuple[str, ...]:
    if package == "keras" and _os.environ.get("KERAS_BACKEND", "jax").strip().lower() == "jax":
        return ()
    return tuple(name for name in UNUSED_OPTIONAL_IMPORTS.get(package, ()) if name not in _sys.modules)


def find_spec_elsewhere(finder, fullname: str, path, target=None):
    """The spec the import system would find for `fullname` without `finder`: for a finder on sys.meta_path
    that only wraps what the others find, so that several such finders compose in any order (each one already
    asking the others for this name is skipped, so two of them never ask each other in a circle)."""
    asking = _asking.__dict__.setdefault("finders", set())
    key = (id(finder), fullname)
    asking.add(key)
    try:
        for other in list(_sys.meta_path):
            if other is finder or (id(other), fullname) in asking or not hasattr(other, "find_spec"):
                continue
            spec = other.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None
    finally:
        asking.discard(key)


_asking = _threading.local()  # per thread, the (finder, name) pairs find_spec_elsewhere is asking about now


class WrappedLoader:
    """A package's own loader with `around(module)` around it: for a finder that wraps what the others find
    (find_spec_elsewhere). The module keeps its own loader."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        with self.around(module):
            self.loader.exec_module(module)

    def around(self, module) -> _contextlib.AbstractContextManager:
        raise NotImplementedError


class _LoaderWithoutCollection(WrappedLoader):
    """Runs with the collector paused (and the package's unused optional imports hidden); the outermost such
    import freezes what loaded."""

    @_contextlib.contextmanager
    def around(self, module):
        outermost = _gc.isenabled()
        _gc.disable()
        hidden = _unused_optional_imports(module.__name__)
        hidden_here = _hidden_in_this_thread()
        hidden_here.update({name: hidden_here.get(name, 0) + 1 for name in hidden})
        loaded = False
        try:
            yield
            loaded = True
            if module.__name__ == "keras":
                _tensorflow_for_keras_once_loaded()
        finally:
            for name in hidden:
                hidden_here[name] -= 1
                if not hidden_here[name]:
                    del hidden_here[name]
            if outermost:
                _gc.enable()
                if loaded:
                    _gc.freeze()


_hiding = _threading.local()  # per thread, the optional imports hidden while a package loads in it, with a depth


def _hidden_in_this_thread() -> dict[str, int]:
    """The names hidden from imports made by this thread only (another thread's import of JAX meanwhile, e.g.
    scikit-learn's array-API check from a page while the app's warm-up thread imports Keras, finds it as usual; a
    process-wide None in sys.modules once made that check fail)."""
    return _hiding.__dict__.setdefault("names", {})


class _LoadedOnlyModule:
    """The `available` of Keras's lazy handle on TensorFlow (keras.src.utils.module_utils.LazyModule) on another
    backend: whether TensorFlow is loaded already, not whether it could be imported."""

    @property
    def available(self) -> bool:
        return _sys.modules.get(self.name) is not None and super().available


def _tensorflow_for_keras_once_loaded() -> None:
    """On a backend other than TensorFlow, Keras's optional uses of TensorFlow apply only once something loaded it.

    Keras asks its lazy handle whether TensorFlow is installed before using it in a few places, and asking imports
    it: `keras.utils.set_random_seed` (to seed TensorFlow's generator too) and saving a model (to recognise
    TensorFlow's shapes and types among the values it writes). A JAX process of Flora's CPU build, where TensorFlow
    is installed, so imported all of TensorFlow at its first seed, for nothing (without it a small JAX `core train`
    took 14.4 -> 12.5 CPU-s and peaked at 1.10 -> 0.65 GB): before TensorFlow is loaded no value can be one of its
    types, and the processes that load it later (an export) draw nothing from its generator. Attributes still import
    TensorFlow when used (the handle's own `__getattr__`)."""
    if _os.environ.get("KERAS_BACKEND", "tensorflow").strip().lower() == "tensorflow":
        return
    try:
        from keras.src.utils import module_utils
    except ImportError:
        return
    handle = getattr(module_utils, "tensorflow", None)
    if isinstance(handle, module_utils.LazyModule) and not isinstance(handle, _LoadedOnlyModule):
        handle.__class__ = type("LoadedOnlyLazyModule", (_LoadedOnlyModule, type(handle)), {})


class _HeavyImportWithoutCollection:
    """Finds nothing itself: the first import of a package in HEAVY_PACKAGES, found by the other finders, runs
    through _LoaderWithoutCollection; a name hidden in this thread (UNUSED_OPTIONAL_IMPORTS) is not found."""

    def find_spec(self, fullname, path, target=None):
        if fullname in _hidden_in_this_thread():
            raise ModuleNotFoundError(f"No module named {fullname!r} (an unused optional import)", name=fullname)
        if fullname not in HEAVY_PACKAGES:
            return None
        spec = find_spec_elsewhere(self, fullname, path, target)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderWithoutCollection(spec.loader)
        return spec


def pause_collection_during_heavy_imports() -> bool:
    """Sets up the paused first imports for this process, once. Returns whether it was set up now."""
    if any(isinstance(finder, _HeavyImportWithoutCollection) for finder in _sys.meta_path):
        return False
    _sys.meta_path.insert(0, _HeavyImportWithoutCollection())
    return True


# The first import of TensorFlow, Keras and the other heavy frameworks, whoever makes it.
pause_collection_during_heavy_imports()

# On JAX, the programs a process compiles are kept for the processes after it (core.device.keep_jax_programs).
if _os.environ.get("KERAS_BACKEND", "").strip().lower() == "jax":
    from core.device import keep_jax_programs  # here, not above: core.device imports what this module defines

    keep_jax_programs(_os.environ)

"""Flora's engine and CLI: datasets in, a backbone and its head trained in two phases, the run store, and what
a finished run is used for (evaluation, explanation, calibration, comparison, serving, exports, monitoring).

Importing `core` is cheap: modules that need Keras import it themselves. docs/ARCHITECTURE.md maps the modules
by concern; `python -m core --help` lists the commands.
"""

__version__ = "0.1.0"

import os as _os

from core import startup as _startup

# FLORA_BACKEND=jax|tensorflow names the Keras backend for the app and the CLI (KERAS_BACKEND, when set, wins),
# before anything imports Keras: every Flora process starts by importing `core`.
if _os.environ.get("FLORA_BACKEND") and not _os.environ.get("KERAS_BACKEND"):
    _os.environ["KERAS_BACKEND"] = _os.environ["FLORA_BACKEND"].strip().lower()

# The first import of TensorFlow, Keras and the other heavy frameworks, whoever makes it, without the garbage
# collector's walks over what it loads (core/startup.py).
_startup.pause_collection_during_heavy_imports()

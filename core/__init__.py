"""Flora's engine and CLI: datasets in, a backbone and its head trained in two phases, the run store, and what
a finished run is used for (evaluation, explanation, calibration, comparison, serving, exports, monitoring).

Importing `core` is cheap: modules that need Keras import it themselves. docs/ARCHITECTURE.md maps the modules
by concern; `python -m core --help` lists the commands.
"""

__version__ = "0.1.0"

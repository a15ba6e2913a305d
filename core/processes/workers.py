"""Worker processes that run functions of Flora's modules (a decoding pool, the server's body parser)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import sys
import threading
import types


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that does not run the parent's `__main__` script again before its task."""

    _main_lock = threading.Lock()

    @staticmethod
    def _Popen(process_obj):
        # multiprocessing reads sys.modules["__main__"] while it starts the child (spawn.get_preparation_data)
        bare = types.ModuleType("__main__")
        with _WorkerProcess._main_lock:
            main = sys.modules["__main__"]
            sys.modules["__main__"] = bare
            try:
                return multiprocessing.context.SpawnProcess._Popen(process_obj)
            finally:
                if sys.modules.get("__main__") is bare:  # a Streamlit script run may have set its own meanwhile
                    sys.modules["__main__"] = main


class _WorkerContext(multiprocessing.context.SpawnContext):
    Process = _WorkerProcess


def worker_context() -> multiprocessing.context.SpawnContext:
    """multiprocessing's spawn, for worker processes that run functions of Flora's modules (a decoding pool, the
    server's body parser): spawn, not fork, since the parent may hold TensorFlow's, Streamlit's or a server's threads
    that a fork would copy mid-use.

    Plain spawn first runs the parent's `__main__` script again in each child, to find what the task might name
    there. In the app that script is `streamlit_app.py` (Streamlit puts each script run in sys.modules["__main__"]),
    so every worker imported Streamlit and the app and started its Keras warm-up before its first task (about 6
    CPU-s each); a script of a person's own that calls Flora without an `if __name__ == "__main__"` guard would
    start it again. These workers start from Flora's modules alone: what they run must live in an importable module.
    """
    return _WorkerContext()

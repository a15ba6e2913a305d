"""What Streamlit does between two runs of a page's script, as Flora needs it: the cleanup after each run, and how
a run that a page stops ends.

After every script run (every click, every fragment's refresh) Streamlit calls `_clean_problem_modules`: where
Keras is loaded it runs `keras.backend.clear_session()`, whose full garbage collection over TensorFlow's heap costs
about 0.3 s of CPU each time (measured here; Flora loads Keras in the background at start, `common.warm_up`). So
a page polling a run every 2 s spent a sixth of a core on it, and every click waited for it. Flora builds no Keras
model that a script run would leave behind: models load once into `st.cache_resource` and stay in use across
runs. So the Keras half of that cleanup is skipped; matplotlib's half is kept.
"""

from __future__ import annotations

import contextlib
import sys

from streamlit.runtime.scriptrunner import script_runner
from streamlit.runtime.scriptrunner_utils.exceptions import StopException


def keep_keras_session() -> bool:
    """Install the cleanup without Keras's clear_session (once per process). False when Streamlit no longer has the
    hook (a newer Streamlit: tests/pages/test_layout.py then fails, so it is looked at again)."""
    current = getattr(script_runner, "_clean_problem_modules", None)
    if current is None:
        return False
    if not getattr(current, "keeps_keras_session", False):
        script_runner._clean_problem_modules = _close_matplotlib_figures
    return True


def _close_matplotlib_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        with contextlib.suppress(Exception):  # as Streamlit does: a failed cleanup never breaks the app
            pyplot.close("all")


_close_matplotlib_figures.keeps_keras_session = True


def stops_end_the_script() -> contextlib.AbstractContextManager:
    """A page's `st.stop()` inside ends the app's script as if it had returned.

    Streamlit drops the fragments a run did not draw (a live panel, refreshed every few seconds) only when the script
    returns; a run ended by `st.stop()` keeps those of the run before it, and a refresh of one of them already asked
    for is then served into a page that no longer has it: the browser's app fails ("Bad delta path index") and the
    page goes blank, as it did after a sign-out (`auth.gate`, tests/test_browser_sharing.py). A page link cancels the
    refresh timers at once (leaving a watched run's Train page for an Evaluate with nothing to show stayed whole in a
    browser, before this too); a button's rerun does not, so a button that made its page stop before drawing its live
    panel again would blank it. Only around the last thing the script does (`auth.run_page`): the run stays asked to
    stop, so any later Streamlit call would end it there, as before."""
    return contextlib.suppress(StopException)

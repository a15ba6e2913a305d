"""The UI's layout keeps Streamlit's legacy pages/ discovery inert and uses public Streamlit API only."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from pages.ui.navigation import PAGES
from tests.conftest import PROJECT_ROOT

UI_FILES = [PROJECT_ROOT / "streamlit_app.py", *sorted((PROJECT_ROOT / "pages").rglob("*.py"))]


def test_the_legacy_pages_folder_holds_only_entries_that_run_the_app():
    """Streamlit routes a server's first request through pages/*.py: each is a three-line entry that
    runs the app (so /train after a restart is the app on its Train page), one per page."""
    entries = {p.stem: p.read_text() for p in (PROJECT_ROOT / "pages").glob("*.py") if p.name != "__init__.py"}
    assert sorted(entries) == sorted(page.name for page in PAGES)
    for name, text in entries.items():
        code = [line for line in text.splitlines() if line and not line.startswith('"""')]
        assert code == ["from pages.ui.navigation import run_app", "run_app()"], name


def test_every_page_named_by_the_navigation_exists():
    for page in PAGES:
        assert (PROJECT_ROOT / page.file).is_file(), page.file
    assert sorted(p.stem for p in (PROJECT_ROOT / "pages" / "views").glob("[!_]*.py")) == sorted(p.name for p in PAGES)


# The one deliberate use of Streamlit's internals: its cleanup between script runs and how a stopped run ends (kept
# honest by the tests below).
BETWEEN_RUNS = PROJECT_ROOT / "pages" / "ui" / "script_runs.py"


def test_the_ui_uses_no_private_streamlit_api():
    private = re.compile(r"^\s*(from|import)\s+streamlit\.(runtime|web|elements|proto|commands|source_util)", re.M)
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in UI_FILES
        if path != BETWEEN_RUNS and private.search(path.read_text())
    ]
    assert offenders == []


def test_no_script_run_ends_in_a_keras_clear_session(app, monkeypatch):
    """Streamlit cleared Keras's session after every script run (a full garbage collection: ~0.3 s of CPU with
    TensorFlow loaded, at every click and every fragment's refresh). The app keeps its hook but not that call; if
    Streamlit drops or renames the hook, this fails and pages/ui/script_runs.py is looked at again."""
    import keras
    from streamlit.runtime.scriptrunner import script_runner

    cleared = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(1))
    at = app()
    at.run()
    assert not at.exception
    assert getattr(script_runner._clean_problem_modules, "keeps_keras_session", False)
    assert cleared == []


def _stopping_page() -> None:
    """A page with a live panel (a fragment refreshed every 5 s) until it is left for one that stops early."""
    import streamlit as st

    from pages.ui.script_runs import stops_end_the_script

    if not st.session_state.get("left"):
        st.fragment(lambda: st.caption("live panel"), run_every=5)()
        return
    with stops_end_the_script():  # the last thing the script does, as auth.run_page's page
        st.info("No finished run yet.")
        st.stop()
        st.caption("drawn after the stop")


def _live_fragments(at) -> frozenset:
    return at._fragment_storage.ids_registered_after(-1)


def test_a_page_that_stops_drops_the_live_panel_of_the_page_before():
    """A run ended by st.stop() kept the fragments of the run before it (Streamlit drops them only when the script
    returns): a refresh of the left page's live panel already asked for then drew into a page that was gone, and the
    browser's app went blank ("Bad delta path index", seen after a sign-out: tests/test_browser_sharing.py).
    `stops_end_the_script` lets the script end as a return would."""
    at = AppTest.from_function(_stopping_page, default_timeout=30).run()
    assert [c.value for c in at.caption] == ["live panel"] and len(_live_fragments(at)) == 1
    at.session_state["left"] = True
    at.run()
    assert not at.exception
    assert [i.value for i in at.info] == ["No finished run yet."] and not at.caption  # stopped: nothing after it
    assert _live_fragments(at) == frozenset()


@pytest.mark.slow
def test_no_page_loads_keras_when_it_is_imported():
    """Pages call core; what they import at their top must not pull in Keras (a blank page for seconds).

    Core modules that need Keras are imported inside the functions (cached loaders) that use them.
    """
    import ast
    import subprocess
    import sys

    modules = set()
    for path in UI_FILES:
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module)
    ours = sorted(m for m in modules if m.split(".")[0] in ("core", "pages"))
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in ours)
        + ("print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"a page import loads a framework: {out.stdout}"

"""A small prepared workspace (a dataset under data/, one finished run) for the page tests."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.workspace import forget_person
from pages.ui.navigation import page_file
from tests.conftest import PROJECT_ROOT, TRAINED_CLASSES

APP = str(PROJECT_ROOT / "streamlit_app.py")
CLASSES = TRAINED_CLASSES


@pytest.fixture(scope="session")
def workspace(trained_run):
    """The shared trained run seen as the app's workspace: data/colours (4 classes, 56 images) and models/ with
    that one finished run at 32 px."""
    return {
        "data": trained_run["data_root"],
        "models": trained_run["models_root"],
        "dataset": trained_run["dataset"],
        "run_id": trained_run["run_id"],
        "store": trained_run["store"],
        "config": trained_run["config"],
    }


@pytest.fixture
def kept_corrections(workspace):
    """Two corrections kept for the workspace's dataset (removed afterwards: the data folder is shared)."""
    from core.data.corrections import Corrections, forget_dataset

    kept = Corrections.load(workspace["data"], workspace["dataset"])
    kept.mark("red/img_000.png", "relabel", "crimson")
    kept.mark("blue/img_001.png", "exclude")
    kept.save()
    yield kept.effective()
    forget_dataset(workspace["data"], workspace["dataset"])


@pytest.fixture
def app(workspace, monkeypatch):
    """An AppTest of the whole app (navigation + sidebar) on the prepared workspace."""
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    # Each test starts as a first visit: no dataset remembered from an earlier test's session.
    forget_person(workspace["data"])

    def open_page(page: str | None = None, models_dir=None) -> AppTest:
        if models_dir is not None:  # a test that adds runs gets a store of its own
            monkeypatch.setenv("FLORA_MODELS_DIR", str(models_dir))
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        if page:
            at.switch_page(page_file(page))
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def texts(at: AppTest) -> str:
    """Everything the page wrote as markdown, captions, alerts, metrics and expander labels, in one string."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in ("info", "success", "warning", "error"):
        parts += [a.value for a in getattr(at, kind)]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def table_with(at: AppTest, *columns: str):
    """The first dataframe (as pandas) having all `columns` (read-only dataframes carry no key)."""
    for frame in at.dataframe:
        value = frame.value
        if all(c in value.columns for c in columns):
            return value
    raise AssertionError(f"no table with columns {columns}; tables: {[list(f.value.columns) for f in at.dataframe]}")


@pytest.fixture
def rerun_timed_fragments(monkeypatch):
    """rerun(at): rerun only the fragments the page's last run set on a timer (`st.fragment(run_every=...)`), as
    the browser does between two runs of an open page: `at` then holds what those fragments drew and nothing else,
    so a line drawn outside them (which a reload would refresh, but the open page does not) is missing from it.

    AppTest runs whole scripts only: every run of the test notes the timers it registered, and rerun asks the script
    runner for a fragment-scoped auto-rerun of them (Streamlit 1.67's runner, as its AppSession does on a timer)."""
    from streamlit.runtime.scriptrunner import RerunData
    from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequests
    from streamlit.testing.v1 import local_script_runner as runner_module

    runner_class = runner_module.LocalScriptRunner
    whole_run = runner_class.run
    timed: list[str] = []
    asked = {"fragments": False}

    def run(self, widget_state=None, query_params=None, timeout=3, page_hash="", context_info=None):
        if not asked["fragments"]:  # a whole run: note the timers it sets
            tree = whole_run(self, widget_state, query_params, timeout, page_hash, context_info)
            timed[:] = [m.auto_rerun.fragment_id for m in self.forward_msgs() if m.HasField("auto_rerun")]
            return tree
        self._requests = ScriptRequests()  # not the whole run a new runner starts with: the fragments only
        self.request_rerun(
            RerunData(
                widget_states=widget_state,
                page_script_hash=page_hash,
                fragment_id_queue=list(timed),
                is_fragment_scoped_rerun=True,
                is_auto_rerun=True,
            )
        )
        try:
            if not self._script_thread:
                self.start()
            runner_module.require_widgets_deltas(self, timeout)
        finally:
            self.join()
        return runner_module.parse_tree_from_messages(self.forward_msgs())

    monkeypatch.setattr(runner_class, "run", run)

    def rerun(at: AppTest) -> AppTest:
        assert timed, "the page's last run set no fragment on a timer"
        asked["fragments"] = True
        try:
            at.run()
        finally:
            asked["fragments"] = False
        return at

    return rerun

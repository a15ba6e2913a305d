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

"""A small prepared workspace (a dataset under data/, one finished run) for the page tests."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.workspace import state_file
from pages.ui.navigation import page_file
from tests.conftest import PROJECT_ROOT, make_image_dataset

APP = str(PROJECT_ROOT / "streamlit_app.py")
# "red" and "crimson" share a colour, so the model must confuse them: the matrix has mistakes to click.
CLASSES = {"blue": 14, "crimson": 14, "green": 14, "red": 14}
CLASS_COLORS = [(40, 60, 220), (220, 40, 40), (40, 190, 40), (220, 40, 40)]


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """data/colours (4 classes, 56 images) and models/ with one finished run at 32 px."""
    from core import jobs
    from core.config import TrainConfig
    from core.runs import RunStore

    base = tmp_path_factory.mktemp("workspace")
    data_root, models_root = base / "data", base / "models"
    dataset = make_image_dataset(data_root / "colours", CLASSES, seed=4, colors=CLASS_COLORS)
    store = RunStore(models_root)
    config = TrainConfig(
        image_size=32, weights="none", epochs=4, batch_size=16, head=(32,), seed=2, early_stopping_patience=0
    )
    submission = jobs.submit(store, dataset, config)
    jobs.execute(store, submission, data_root, console=False, ingest_workers=1)
    return {
        "data": data_root,
        "models": models_root,
        "dataset": dataset,
        "run_id": submission.run_id,
        "store": store,
        "config": config,
    }


@pytest.fixture
def app(workspace, monkeypatch):
    """An AppTest of the whole app (navigation + sidebar) on the prepared workspace."""
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(workspace["models"]))
    # Each test starts as a first visit: no dataset remembered from an earlier test's session.
    state_file(workspace["data"]).unlink(missing_ok=True)

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

"""The UI's layout keeps Streamlit's legacy pages/ discovery inert and uses public Streamlit API only."""

from __future__ import annotations

import re

from pages.ui.navigation import PAGES
from tests.conftest import PROJECT_ROOT

UI_FILES = [PROJECT_ROOT / "streamlit_app.py", *sorted((PROJECT_ROOT / "pages").rglob("*.py"))]


def test_no_page_script_sits_where_the_legacy_convention_looks():
    # Streamlit lists every pages/*.py as a page of its own until st.navigation runs.
    assert [p.name for p in (PROJECT_ROOT / "pages").glob("*.py")] == ["__init__.py"]


def test_every_page_named_by_the_navigation_exists():
    for page in PAGES:
        assert (PROJECT_ROOT / page.file).is_file(), page.file
    assert sorted(p.stem for p in (PROJECT_ROOT / "pages" / "views").glob("[!_]*.py")) == sorted(p.name for p in PAGES)


def test_the_ui_uses_no_private_streamlit_api():
    private = re.compile(r"^\s*(from|import)\s+streamlit\.(runtime|web|elements|proto|commands|source_util)", re.M)
    offenders = [str(path.relative_to(PROJECT_ROOT)) for path in UI_FILES if private.search(path.read_text())]
    assert offenders == []

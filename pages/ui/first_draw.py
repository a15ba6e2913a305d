"""Each page's first draw at scale, through Streamlit's AppTest: the scale benchmark's page stage.

It lives with the pages, not in `core/` (which never imports Streamlit): the benchmark's child process
looks it up by name (`core.bench.scale.CALLS["pages"]`).
"""

from __future__ import annotations

import time
from typing import Any

from core.paths import PROJECT_ROOT
from pages.ui.navigation import page_file

KINDS = ("dataframe", "plotly_chart", "arrow_vega_lite_chart", "vega_lite_chart", "metric", "image")


def draw_pages(pages: tuple[str, ...]) -> dict[str, Any]:
    """Each page's first draw in a fresh session (a newly opened tab): seconds, errors, and what it drew."""
    from streamlit.testing.v1 import AppTest

    app = str(PROJECT_ROOT / "streamlit_app.py")
    times: dict[str, float] = {}
    errors: dict[str, str] = {}
    drawn: dict[str, dict[str, int]] = {}  # tables, charts, metrics: so an empty page would show
    for page in pages:
        at = AppTest.from_file(app, default_timeout=600)
        at.run()
        at.switch_page(page_file(page))
        started = time.perf_counter()
        at.run()
        times[page] = time.perf_counter() - started
        drawn[page] = {kind: len(at.get(kind)) for kind in KINDS if len(at.get(kind))}
        if at.exception:
            errors[page] = str(at.exception[0].value)[:300]
    return {"pages": times, "errors": errors, "drawn": drawn}

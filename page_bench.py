"""Each page's first draw at scale, through Streamlit's AppTest: the scale benchmark's page stage.

    python page_bench.py RESULT.json PAGE [PAGE ...]

`python -m core bench --only scale` runs this script as a process of its own, as the ui item runs
`streamlit_app.py`: `core/` never imports Streamlit nor the pages. It writes the same result file as
the bench's other stages: {"seconds", "pages": {page: s}, "errors": {page: message}, "drawn": {page: {kind: n}}}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from core.processes import exit_process
from pages.ui.navigation import page_file

APP = str(Path(__file__).resolve().parent / "streamlit_app.py")
KINDS = ("dataframe", "plotly_chart", "arrow_vega_lite_chart", "vega_lite_chart", "metric", "image")


def draw_pages(pages: list[str]) -> dict[str, Any]:
    """Each page's first draw in a fresh session (a newly opened tab): seconds, errors, and what it drew."""
    times: dict[str, float] = {}
    errors: dict[str, str] = {}
    drawn: dict[str, dict[str, int]] = {}  # tables, charts, metrics: so an empty page would show
    for page in pages:
        at = AppTest.from_file(APP, default_timeout=600)
        at.run()
        at.switch_page(page_file(page))
        started = time.perf_counter()
        at.run()
        times[page] = time.perf_counter() - started
        drawn[page] = {kind: len(at.get(kind)) for kind in KINDS if len(at.get(kind))}
        if at.exception:
            errors[page] = str(at.exception[0].value)[:300]
    return {"pages": times, "errors": errors, "drawn": drawn}


def main(argv: list[str]) -> int:
    result_file, pages = Path(argv[0]), argv[1:]
    started = time.perf_counter()
    result = draw_pages(pages)
    result["seconds"] = time.perf_counter() - started
    result_file.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    exit_process(main(sys.argv[1:]))

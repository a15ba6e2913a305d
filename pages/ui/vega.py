"""Vega-Lite specs written out for `st.vega_lite_chart`: the pages' charts, drawn at every run of their page or tab.

Built with Altair, each chart cost tens of milliseconds of CPU at every script run (Altair's encoding look-ups,
then Streamlit validating the whole spec against Vega-Lite's JSON schema); written out as dicts, well under one.
The tests check each spec against Vega-Lite's schema (Altair's copy of it) and, for the charts converted since the
first four, against the spec Altair wrote for the same chart (tests/pages/test_written_charts.py); in a real
browser each drew the same pixels as Altair's.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
# Altair's default view size: a chart without a height of its own is 300 px high, as when Altair drew it
CONFIG = {"view": {"continuousWidth": 300, "continuousHeight": 300}}


def finite(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with NaN and infinities as None (null): JSON has no NaN."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def field(name: str, kind: str = "quantitative", **more: Any) -> dict[str, Any]:
    """An encoding of the field `name` (Vega-Lite's type: quantitative, nominal, ordinal)."""
    return {"field": name, "type": kind, **more}

"""Vega-Lite specs written out for `st.vega_lite_chart`: the Evaluate page's charts, drawn at every run of the page.

Built with Altair, each chart cost tens of milliseconds of CPU at every script run (Altair's encoding look-ups,
then Streamlit validating the whole spec against Vega-Lite's JSON schema); written out as dicts, well under one.
The tests check each spec against Vega-Lite's schema (Altair's copy of it) and, in a real browser, that the chart
is the one Altair drew.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"


def finite(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with NaN and infinities as None (null): JSON has no NaN."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def field(name: str, kind: str = "quantitative", **more: Any) -> dict[str, Any]:
    """An encoding of the field `name` (Vega-Lite's type: quantitative, nominal, ordinal)."""
    return {"field": name, "type": kind, **more}

"""The Compare page for multi-label runs: each run's mAP, the mAP difference of each later run against the first with
its paired interval, permutation test and verdict (core's words), and the per-label AP differences worst first, as a
table and as bars with their intervals."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.results.evaluation import multilabel_compare_words as words
from core.results.evaluation.compare import difference_note, same_split_note
from pages.ui import plain

UP, DOWN, UNSHOWN = "#2a9d55", "#b8336a", "#9aa0a6"


def notes_section(comparison: dict, sides, names: dict[str, str]) -> None:
    """Which photos were compared: split differently, some left out, or the very same; two starts on one split."""
    if comparison["split_differs"]:
        st.warning(plain.md(comparison["split_differs"]), icon=":material/call_split:")
    difference = (
        None
        if comparison["split_differs"]
        else difference_note(comparison["left_out"], {s.run_id: s.run_id[:6] for s in sides})
    )
    count = len(sides)
    if difference:
        st.info(
            f"Compared on the {comparison['test_images']} test photos all {count} runs have, with the same label "
            "list. " + difference,
            icon=":material/rule:",
        )
    else:
        st.caption(f"All {count} multi-label runs were tested on the same {comparison['test_images']} photos.")
    if comparison["same_split"]:
        st.info(plain.md(same_split_note(sides, names)), icon=":material/casino:")


def map_section(comparison: dict, names: dict[str, str]) -> None:
    st.subheader("mAP on the same test photos")
    rows = [
        {
            "run": names[run_id],
            "mAP": m["map"],
            "micro mAP": m["map_micro"],
            "random scorer's mAP": m["random_map"],
        }
        for run_id, m in comparison["runs"].items()
    ]
    numbers = {c: st.column_config.NumberColumn(format="%.3f") for c in rows[0] if c != "run"}
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config=numbers)
    st.subheader("Is the difference real?")
    for pair in comparison["pairs"]:
        with st.container(border=True):
            st.markdown(f"**{plain.md(names[pair['b']])}** vs **{plain.md(names[pair['a']])}**")
            low, high = pair["map_interval"]
            cols = st.columns(3)
            cols[0].metric(
                "mAP difference",
                words.signed(pair["map_difference"]),
                help="The second run's mAP minus the first's, on the same test photos.",
            )
            cols[1].metric("95% interval", "-" if low is None else f"{low:+.3f} to {high:+.3f}")
            cols[2].metric("p-value", words.p_text(pair["p_value"]).removeprefix("p = "))
            alert = st.success if pair["shown"] else st.info
            alert(plain.md(pair["verdict"]), icon=":material/balance:")
    st.caption(plain.md(comparison["scope"]))


def per_label_section(comparison: dict, names: dict[str, str]) -> None:
    st.subheader("AP per label")
    pairs = comparison["pairs"]
    pair = pairs[0]
    if len(pairs) > 1:
        by_run = {p["b"]: p for p in pairs}
        picked = st.selectbox("Against the first run", list(by_run), format_func=names.get, key="compare_ml_pair")
        pair = by_run[picked]
    a, b = pair["a"][:6], pair["b"][:6]
    st.markdown(plain.md(words.labels_words(pair, a, b)))
    frame = pd.DataFrame(
        [
            {
                "label": row["label"],
                f"AP {a}": row["ap_a"],
                f"AP {b}": row["ap_b"],
                "change": row["difference"],
                "change low": row["interval"][0],
                "change high": row["interval"][1],
                "clear of 0": row["clear_of_zero"],
                "test photos with it": row["positives"],
            }
            for row in pair["per_label"]
        ]
    )
    numbers = {c: st.column_config.NumberColumn(format="%+.3f") for c in ("change", "change low", "change high")}
    numbers |= {c: st.column_config.NumberColumn(format="%.3f") for c in (f"AP {a}", f"AP {b}")}
    st.dataframe(frame, hide_index=True, width="stretch", column_config=numbers)
    st.caption(
        f"Worst first: where {b} loses most against {a} (click a column to sort by it). 'change low' and "
        "'change high' are the paired 95% interval of the change; a label no test photo has has no AP, and is last."
    )
    _bars(frame.dropna(subset=["change"]), a, b)


def _bars(frame: pd.DataFrame, a: str, b: str) -> None:
    if frame.empty:
        return
    colors = [
        (UP if change > 0 else DOWN) if clear else UNSHOWN
        for change, clear in zip(frame["change"], frame["clear of 0"], strict=True)
    ]
    figure = go.Figure(
        go.Bar(
            x=frame["change"],
            y=[plain.chart(label) for label in frame["label"]],
            orientation="h",
            marker_color=colors,
            error_x={
                "type": "data",
                "symmetric": False,
                "array": (frame["change high"] - frame["change"]).fillna(0).tolist(),
                "arrayminus": (frame["change"] - frame["change low"]).fillna(0).tolist(),
            },
            hovertemplate="%{y}: %{x:+.3f}<extra></extra>",
        )
    )
    figure.add_vline(x=0, line_color="#555")
    figure.update_layout(
        height=120 + 26 * len(frame),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title=f"AP of {b} minus AP of {a} (bars: the paired 95% interval)",
        yaxis={"autorange": "reversed"},  # worst first, at the top, as the table
    )
    st.plotly_chart(figure, key=f"compare_ml_bars_{b}", config={"displayModeBar": False})
    st.caption("Green or red: the interval leaves out 0 for that label; grey: no difference shown for it.")

"""The Compare page's sections: settings, curves, metrics, McNemar's verdicts, what fixing labels was worth (the
estimate beside the corrected run), per-class F1, the photos."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.results.evaluation.compare import disagreements, per_class_f1, settings_table
from core.results.labels import fix_worth
from core.results.labels.fix_worth_report import change_words, held, points
from core.runs.curves import epoch_curves
from pages.ui import common, photo_gallery, plain

PHOTOS = 24  # thumbnails per side of a pair
COLORS = ["#b8336a", "#2f6db5", "#2a9d55", "#e08a1e", "#6b4fa0"]


def settings_section(runs, names: dict[str, str]) -> None:
    st.subheader("What differs")
    table = settings_table(runs)
    if table.empty:
        st.caption("These runs were trained with the same settings (only the randomness differs, if anything).")
        return
    st.dataframe(table.rename(columns=names), hide_index=True, width="stretch")


def curves_section(runs, names: dict[str, str]) -> None:
    st.subheader("Learning curves")
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Validation accuracy", "Validation loss"))
    last_epoch = 1
    for i, run in enumerate(runs):
        frame = epoch_curves(common.store().read_metrics(run.run_id))
        if len(frame):
            last_epoch = max(last_epoch, int(frame["epoch"].max()))
        color = COLORS[i % len(COLORS)]
        for col, metric in ((1, "val_accuracy"), (2, "val_loss")):
            figure.add_scatter(
                x=frame["epoch"],
                y=frame[metric],
                mode="lines+markers",
                name=plain.chart(names[run.run_id]),  # a run's name as text (Plotly reads tags in it)
                legendgroup=run.run_id,
                showlegend=col == 1,
                line={"color": color},
                row=1,
                col=col,
            )
    figure.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, round(last_epoch / 10)))  # whole epochs
    figure.update_layout(
        height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.3}
    )
    st.plotly_chart(figure, key="compare_curves", config={"displayModeBar": False})


def metrics_section(comparison: dict, names: dict[str, str]) -> None:
    st.subheader("Test metrics")
    rows = [
        {
            "run": names[run_id],
            "accuracy": m["accuracy"],
            "macro F1": m["macro_f1"],
            "NLL before": m["nll_before"],
            "NLL after": m["nll_after"],
            "ECE before": m["ece_before"],
            "ECE after": m["ece_after"],
            "temperature": m["temperature"],
        }
        for run_id, m in comparison["runs"].items()
    ]
    numbers = {c: st.column_config.NumberColumn(format="%.3f") for c in rows[0] if c != "run"}
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config=numbers)
    st.caption(
        f"On the {comparison['test_images']} test photos every run was asked about (the same photos and labels for "
        "all; a run's own page counts all of its own, so its figures there can differ a little). NLL and ECE "
        "measure how honest the probabilities are (lower is better); 'after' is with each run's temperature, "
        "fitted on its validation photos."
    )


def mcnemar_section(comparison: dict, names: dict[str, str]) -> None:
    st.subheader("Is the difference real?")
    for pair in comparison["pairs"]:
        test = pair["mcnemar"]
        with st.container(border=True):
            st.markdown(
                f"**{plain.md(names[pair['a']])}** vs **{plain.md(names[pair['b']])}**"
            )  # the order the disagreements use
            st.markdown(pair["verdict"])
            p = test["p_value"]
            st.caption(
                f"Photos only {pair['a'][:6]} gets right: {test['b']}; only {pair['b'][:6]} gets right: {test['c']}; "
                f"McNemar's exact test, {f'p = {p:.3f}' if p >= 0.001 else 'p < 0.001'}."
            )


def per_class_section(results, names: dict[str, str]) -> None:
    st.subheader("F1 per class")
    table = per_class_f1(results)
    first = results[0].run_id
    rename = {r.run_id: names[r.run_id] for r in results}
    rename.update({f"Δ {r.run_id}": f"Δ {r.run_id[:6]} − {first[:6]}" for r in results[1:]})
    table = table.rename(columns=rename)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns if c != "class"},
    )


def disagreements_section(results, runs, names: dict[str, str]) -> None:
    st.subheader("The photos they disagree on")
    root = Path(runs[0].dataset_path)
    first = results[0]
    for other in results[1:]:
        photos = disagreements(first, other)
        a, b = first.run_id[:6], other.run_id[:6]
        st.markdown(f"**{plain.md(names[first.run_id])}** vs **{plain.md(names[other.run_id])}**")
        tabs = st.tabs(
            [f"{a} right, {b} wrong ({len(photos['a_only'])})", f"{b} right, {a} wrong ({len(photos['b_only'])})"]
        )
        for tab, frame in zip(tabs, (photos["a_only"], photos["b_only"]), strict=True):
            with tab:
                if frame.empty:
                    st.caption("None.")
                    continue
                items = [  # the file name under the predictions, as the Evaluate page's galleries
                    (
                        root / row.path,
                        f"{row.true} · {a}: {row.a_predicted} · {b}: {row.b_predicted}\n{Path(row.path).name}",
                    )
                    for row in frame.head(PHOTOS).itertuples()
                ]
                photo_gallery.gallery(items, size=120)
                if len(frame) > PHOTOS:
                    st.caption(f"The first {PHOTOS} of {len(frame)}.")


def _dimension(label: str, values: list[str]) -> dict:
    try:
        return {"label": label, "values": [float(v) for v in values]}
    except ValueError:
        levels = sorted(set(values))
        return {
            "label": label,
            "values": [levels.index(v) for v in values],
            "tickvals": list(range(len(levels))),
            "ticktext": levels,
        }


def parallel_section(runs, comparison: dict, names: dict[str, str]) -> None:
    st.subheader("Settings vs test accuracy")
    table = settings_table(runs)
    accuracy = [comparison["runs"][run.run_id]["accuracy"] for run in runs]
    dimensions = [_dimension(row.setting, [str(row[run.run_id]) for run in runs]) for _, row in table.iterrows()]
    dimensions.append({"label": "test accuracy", "values": accuracy})
    figure = go.Figure(
        go.Parcoords(line={"color": accuracy, "colorscale": "Viridis", "showscale": True}, dimensions=dimensions)
    )
    figure.update_layout(height=360, margin={"l": 40, "r": 40, "t": 50, "b": 20})
    st.plotly_chart(figure, key="compare_parallel")
    st.caption("One line per run; drag along an axis to keep only the runs in a range.")


def fix_worth_section(runs, results, comparison: dict, names: dict[str, str]) -> None:
    """Each later run that applied label corrections the first did not, beside the estimate made for them."""
    first = runs[0]
    shown = False
    for run, result in zip(runs[1:], results[1:], strict=True):
        table = settings_table([first, run])
        others = [  # what else differs, with both values: "dataset photos (800 (1a2b3c) → 851 (4d5e6f))"
            f"{row['setting']} ({row[first.run_id]} → {row[run.run_id]})"
            for _, row in table.iterrows()
            if row["setting"] != "label corrections"
        ]
        found = held(first, run, (results[0].analysis, result.analysis), comparison, others)
        if found is None:
            continue
        if not shown:
            st.subheader("What fixing the labels was worth")
            shown = True
        with st.container(border=True):
            st.markdown(
                f"**{plain.md(names[first.run_id])}** → **{plain.md(names[run.run_id])}**: "
                f"{found.corrections} label correction(s) applied"
            )
            st.dataframe(pd.DataFrame(_held_rows(found)), hide_index=True, width="stretch")
            st.markdown(found.sentence)  # Flora's own words, run ids and setting names: the command as code
            if found.estimate is None:
                _estimate_now(first, run)
            else:
                when = "before" if found.made_before else "after (but without looking at anything of)"
                st.caption(
                    f"The estimate was made from {first.run_id[:6]}'s stored features and validation photos, {when} "
                    f"{run.run_id[:6]}, never from test photos; the measured figures are both runs' own, on the "
                    f"{found.val_photos} validation photos they share."
                )


def _held_rows(found) -> list[dict[str, str]]:
    estimate = found.estimate
    rows = []
    scorings = ((fix_worth.AS_LABELLED, "validation"), (fix_worth.CORRECTED, "validation, corrected labels"))
    for scoring, where in scorings:
        measured = found.measured.get(scoring)
        if measured is None:
            continue
        for figure, name in (("accuracy", "accuracy"), ("macro_f1", "macro F1")):
            guess = (estimate.results.get(scoring) or {}).get(figure) if estimate else None
            rows.append(
                {
                    "figure": f"{where}: {name}",
                    "estimated change (95%)": change_words(guess) if guess else "no estimate",
                    "measured change": f"{points(measured[figure]['change'])} points "
                    f"({measured[figure]['before']:.1%} → {measured[figure]['after']:.1%})",
                }
            )
    for figure, name in (("accuracy", "accuracy"), ("macro_f1", "macro F1")):
        if found.test:
            rows.append(
                {
                    "figure": f"test: {name}",
                    "estimated change (95%)": "never looked at",
                    "measured change": f"{points(found.test[figure]['change'])} points "
                    f"({found.test[figure]['before']:.1%} → {found.test[figure]['after']:.1%})",
                }
            )
    return rows


def _estimate_now(first, run) -> None:
    """Make the missing estimate now, from the first run's features (it still never sees the later run's results)."""
    if first.train_features_mtime is None:
        st.caption(
            f"To make one now: `python -m core fix-worth {first.run_id[:6]} --corrections run:{run.run_id[:6]}` "
            "(it computes the training photos' features once)."
        )
        return
    if st.button(
        f"Estimate it now from {first.run_id[:6]}'s features",
        key=f"compare_fix_worth_{run.run_id}",
        icon=":material/calculate:",
        help="Seconds. Made after the result, it still sees only the first run's stored features and validation "
        "photos, never the corrected run's figures: a fair test of how far such estimates hold here.",
    ):
        choice = fix_worth.Choice(fix_worth.GIVEN, given=f"run:{run.run_id}")
        with st.spinner("Retraining the head with and without the corrections…"):
            fix_worth.estimate_run(first, common.data_root(), run.corrections, choice)
        st.rerun()

"""The Predict page on a multi-label run: each photo's labels (every label at or above its threshold, with its score
and that threshold), "none of these" when none is, every other label's score on demand; many photos as a table with
a `labels` column and a CSV. The answers are the served model's (core.serving.engine), as `core predict` and the
model server give them."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.data.multilabel import NO_LABEL
from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import stored_summary
from core.serving.batch_predict import size_note
from pages.ui import plain
from pages.ui.predict.extras import csv_button

SCORE_WORDS = (
    "A label is given when its score reaches that label's threshold, tuned on the run's validation photos (never on "
    "the test ones). A score is the model's own number for each label on its own, not a calibrated chance: the scores "
    "need not add up to 100%, and on a weak model a score over its threshold can still be wrong."
)


EVERY_PHOTO = " — given to (nearly) every test photo at this threshold: it says little about this one"
MANY = 4  # from this many photos on, a table comes first (as for a single-label run)
NOT_YET = (
    "Prediction sets, answering only when sure, the check for photos unlike the training photos, the prediction log "
    "and corrections are for single-label runs: not yet for multi-label ones."
)


def show(run, files: list[tuple[str, str, bytes]], classify, thresholds: dict[str, float]) -> None:
    """Every uploaded photo's labels: a card each, and from MANY photos on the table first. `classify(upload_id,
    name, data)` gives one photo's BatchItem (cached by the page); `thresholds` the served model's, by label."""
    st.caption(NOT_YET)
    summary = stored_summary(run.directory)  # the test figures: which labels nearly every photo gets
    every = words.every_photo_labels(summary) if summary else {}
    many = len(files) >= MANY
    progress = st.progress(0.0, text="Classifying…") if many else None
    items = []
    for i, (upload_id, name, data) in enumerate(files):
        items.append(classify(upload_id, name, data))
        if progress is not None:
            progress.progress((i + 1) / len(files), text=f"Classifying {i + 1} / {len(files)}")
    given = {label for item in items if item.answer is not None for label in item.answer.labels or []}
    note = words.every_photo_words(summary, [c for c in run.classes if c in given])
    if note:
        st.warning(plain.md(note), icon=":material/select_all:")
    if progress is not None:
        progress.empty()
        table(run, items, thresholds)
        st.caption("Each photo's labels in full:")
    for index, ((_, name, data), item) in enumerate(zip(files, items, strict=True)):
        box = st.expander(f"{plain.md(name)}: {plain.md(heading(item))}") if many else st.container(border=True)
        with box:
            photo_card(index, run, name, data, item, thresholds, every)


def percent(value: float) -> str:
    """A score or threshold as every place on this page writes it: one decimal ('77.6%'); one above 0 but under
    0.001 as 'under 0.1%', never '0.0%', which would hide that it is not 0 (and 0 as '0%')."""
    if value == 0:
        return "0%"
    if 0 < value < 0.001:
        return "under 0.1%"
    return f"{value:.1%}"


def heading(item) -> str:
    """A photo's answer in a few words: its labels in the run's label order (as the table and CSV give them), or
    none of these, or unreadable."""
    if item.answer is None:
        return "unreadable"
    return ", ".join(item.answer.labels or []) or NO_LABEL


def about_run(run) -> None:
    """What this run answers and how far its figures go, before any photo."""
    names = ", ".join(plain.md(c) for c in run.classes[:20]) + (", …" if len(run.classes) > 20 else "")
    mean_ap = run.status.map
    quality = (
        f" Its test mAP is {mean_ap:.2f} (a random scorer gets about each label's share of the photos)."
        if mean_ap is not None
        else ""
    )
    st.caption(
        f"A multi-label run: each photo gets every one of its {len(run.classes)} labels whose score reaches the "
        f"label's threshold, or *{NO_LABEL}* when none does. Labels: {names}.{quality} {SCORE_WORDS}"
    )


def scores_chart(answer, classes: list[str]):
    """Every label's score as a bar with its threshold marked: the labels given dark, the others pale."""
    scores, thresholds = answer.scores, answer.thresholds
    order = sorted(classes, key=lambda name: scores[name])  # the highest at the top
    given = set(answer.labels)
    figure = go.Figure(
        go.Bar(
            x=[scores[n] for n in order],
            y=[plain.chart(n) for n in order],
            orientation="h",
            text=[percent(scores[n]) for n in order],
            textposition="auto",
            marker_color=["#b8336a" if n in given else "#d9d9d9" for n in order],
            name="score",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[thresholds[n] for n in order],
            y=[plain.chart(n) for n in order],
            mode="markers",
            marker={"symbol": "line-ns-open", "size": 22, "color": "#333333", "line": {"width": 2}},
            name="threshold",
        )
    )
    figure.update_layout(
        height=70 + 30 * len(order),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"range": [0, 1], "tickformat": ".0%", "title": "score (the mark: the label's threshold)"},
        showlegend=False,
    )
    return figure


def photo_card(
    index: int, run, name: str, data: bytes, item, thresholds: dict[str, float], every: dict[str, int]
) -> None:
    """One photo: the labels it gets with score and threshold (in the run's label order), or "none of these"; the other
    labels on demand. `every`: the labels answered for (nearly) every test photo, flagged where given."""
    if item.error:
        st.error(
            f"**{plain.md(name)}** could not be classified: {plain.md(item.error)}", icon=":material/broken_image:"
        )
        return
    answer = item.answer
    image_col, words_col = st.columns([1, 2], vertical_alignment="center")
    image_col.image(data, caption=plain.md(name), width=240)
    with words_col:
        if answer.labels:
            count = f"{len(answer.labels)} label{'s' if len(answer.labels) > 1 else ''}"
            st.markdown(f"**{count} given**, each score at or above its label's threshold:")
            st.markdown(
                "\n".join(
                    f"- **{plain.md(label)}**: score {percent(answer.scores[label])} (threshold "
                    f"{percent(thresholds[label])}){EVERY_PHOTO if label in every else ''}"
                    for label in answer.labels
                )
            )
        else:
            best, score = max(answer.scores.items(), key=lambda pair: pair[1])
            st.markdown(
                f"**{NO_LABEL.capitalize()}**: no label's score reaches its threshold (the highest, "
                f"**{plain.md(best)}**, scores {percent(score)} against its {percent(thresholds[best])})."
            )
        small = size_note(item.decoded, run.train_config.image_size)
        if small:
            st.warning(f"This photo is {small}.", icon=":material/photo_size_select_small:")
        others = len(run.classes) - len(answer.labels)
        with st.expander(
            "Every label's score and threshold" + (f" ({others} not given)" if others else ""),
            icon=":material/bar_chart:",
        ):
            st.plotly_chart(
                scores_chart(answer, run.classes),
                key=f"predict_labels_chart_{index}_{len(data)}",
                config={"displayModeBar": False},
            )
            st.caption("Dark bars: the labels given. The mark on each bar: that label's threshold.")
        st.caption(
            f"Predicted in {item.seconds * 1000:.0f} ms (decode + forward pass). Not logged for the Monitor page, "
            "and no correction yet: both keep one class a photo."
        )


def table(run, items: list, thresholds: dict[str, float]) -> None:
    """Every photo's labels in one table (and per-label scores), with the CSV core predict --csv writes."""
    # heavy: scikit-learn and scipy, loaded when a batch is predicted
    from core.serving.batch_predict import csv_text, label_rows

    rows = label_rows(items, run.classes, run.train_config.image_size)
    shown = [  # the scores in percent, to one decimal as the cards write them; the CSV keeps 0-1
        {k: v * 100 if k.startswith("score_") and v != "" else v for k, v in row.items()} for row in rows
    ]
    bad = sum(1 for item in items if item.error)
    none = sum(1 for item in items if item.answer is not None and not item.answer.labels)
    st.markdown(
        f"**{len(items)} photos**: {bad} unreadable, {none} with *{NO_LABEL}* (no label reaches its threshold)."
    )
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "path": st.column_config.TextColumn("photo", width="medium"),
            "labels": st.column_config.TextColumn(
                "labels given",
                help="Each label whose score reaches its threshold, in the run's label order, joined by |; empty: none "
                "of these.",
            ),
            "none_of_these": st.column_config.CheckboxColumn(NO_LABEL, help="No label reaches its threshold."),
            **{
                f"score_{name}": st.column_config.NumberColumn(
                    f"{name} score", format="%.1f%%", help=f"Given at {percent(thresholds[name])} or above."
                )
                for name in run.classes
            },
            "error": st.column_config.TextColumn("error", width="large"),
            "warning": st.column_config.TextColumn("warning", width="large"),
        },
    )
    cuts = ", ".join(f"{plain.md(name)} {percent(thresholds[name])}" for name in run.classes)
    st.caption(f"Each label's threshold (a score at or above it gives the label): {cuts}.")
    low = [plain.md(name) for name in run.classes if thresholds[name] < 0.001]
    if low:
        st.caption(
            f"Scores are shown to one decimal: with a threshold under 0.1% ({', '.join(low)}), a score shown 0.0% can "
            "still reach it and give the label (the CSV keeps six decimals)."
        )
    csv_button(run, csv_text(rows))

"""Serving parts of the Serve page (aliases, exports, retrain-and-promote); Predict shows the retrain panel too.

UI only: every action calls core (the job layer for the server, core.export for exports,
core.retrain for retraining and comparing).
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from core.export import FORMATS, LAYOUTS, ONNX_CONVERTERS, QUANTIZE, ExportError
from core.export.run import export_in_subprocess
from core.export.store import export_dir, run_exports, zip_folder
from core.feedback import base_dataset, list_feedback
from core.retrain import (
    RetrainError,
    old_vs_new_rows,
    promotion_advice,
    retrain_record,
    retrain_with_feedback,
    retrained_from,
    stored_comparison,
)
from core.runs.record import Run
from core.serving.aliases import PRODUCTION, AliasError, AliasStore
from core.serving.job import server_status
from pages.ui import auth, common, dataset_choice, plain
from pages.ui.navigation import page_file

DEFAULT_ALIAS = PRODUCTION
ALIAS_EVERY = 2.0  # seconds between looks at the aliases and what the server answers with (moves made anywhere)


def aliases() -> AliasStore:
    return AliasStore(common.models_root())


def aliases_by_run() -> dict[str, list[str]]:
    """{run id: the aliases that point at it}."""
    out: dict[str, list[str]] = {}
    for alias, entry in sorted(aliases().all().items()):
        out.setdefault(entry["run_id"], []).append(alias)
    return out


def with_aliases(run: Run, by_run: dict[str, list[str]]) -> str:
    """A picker's label with the aliases that point at the run first ("production → flowers · ...")."""
    names = by_run.get(run.run_id)
    return (" · ".join(names) + " → " if names else "") + common.run_label(run)


def alias_state(alias: str) -> tuple[str, str]:
    """What `alias` means to a client right now, in words: (kind, text); kind is success, info, warning or
    switching (the server is loading the run the alias now points at; the old one answers meanwhile)."""
    target = aliases().get(alias)
    name = plain.md(alias)
    if target is None:
        return "info", f"No alias **{name}** yet."
    status = server_status(common.models_root())
    if not status.active:
        return "info", f"**{name}** points at run {target}. No server is running; one started with {name} serves it."
    if not status.ready:
        return "switching", f"The server is starting; **{name}** will answer with run {target}."
    answering = status.answering(alias)
    if answering is None:
        served = ", ".join(plain.md(m["name"]) for m in status.models) or "nothing yet"
        return "warning", (
            f"**{name}** points at run {target}, but the running server does not serve **{name}** (it serves "
            f"{served}): clients that name {name} are told 'unknown model'. Stop the server and start it with "
            f"{name} to serve it."
        )
    if answering == target:
        at = status.switched_at(alias, target)
        since = f" (switched at {time.strftime('%H:%M:%S', time.localtime(at))})" if at else ""
        return "success", f"The server answers **{name}** with run {target}{since}."
    return "switching", (
        f"Switching **{name}**: the server is loading run {target}; run {answering} answers meanwhile and no "
        "request is dropped. This line turns green when the new run answers."
    )


def _state_line(alias: str) -> None:
    kind, text = alias_state(alias)
    icons = {
        "success": ":material/check_circle:",
        "warning": ":material/warning:",
        "info": ":material/info:",
        "switching": ":material/hourglass_top:",
    }
    (st.info if kind == "switching" else getattr(st, kind))(text, icon=icons[kind])


@st.fragment(run_every=ALIAS_EVERY)
def alias_status_line(alias: str) -> None:
    """The alias's state, looked at again every ALIAS_EVERY seconds: "switching" until the server answers with the
    run the alias points at, and a move made elsewhere (`core alias` on the command line, another tab) shows too."""
    _state_line(alias)


def served_runs() -> list[Run]:
    """Runs the server can serve: every run with a model (a multi-label one answers its label lists)."""
    return [run for run in common.runs() if run.has_model]


def alias_table() -> None:
    """The aliases, and a form to point one at a run (a running server follows at once)."""
    admin = auth.current_user().admin
    alias_overview(admin)
    if not served_runs():
        return
    notice = st.session_state.pop("serve_alias_notice", None)
    if notice:
        getattr(st, notice[0])(notice[1])
    if not admin:
        st.caption("Moving an alias is an admin's step.")
        return
    runs = {run.run_id: run for run in served_runs()}
    # Enter in the name field does not move anything: only the button does.
    with st.form("serve_alias_form", border=False, enter_to_submit=False):
        cols = st.columns([1, 3, 1], vertical_alignment="bottom")
        cols[0].text_input("Alias", value=DEFAULT_ALIAS, key="serve_alias_name")
        by_run = aliases_by_run()
        cols[1].selectbox("Run", list(runs), format_func=lambda r: with_aliases(runs[r], by_run), key="serve_alias_run")
        cols[2].form_submit_button("Point alias", icon=":material/label:", on_click=_point_alias)


@st.fragment(run_every=ALIAS_EVERY)
def alias_overview(admin: bool) -> None:
    """The aliases and, for an admin, what each answers with now: read again every ALIAS_EVERY seconds, so an alias
    moved from the command line (`core alias production RUN`) or another tab shows here without a reload."""
    listing = aliases().all()
    runs = {run.run_id: run for run in served_runs()}
    if listing:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "alias": name,
                        "run": common.run_label(runs[e["run_id"]]) if e["run_id"] in runs else e["run_id"],
                        "previous": e.get("previous") or "",
                        "since": pd.to_datetime(e.get("updated_at", 0), unit="s"),
                    }
                    for name, e in sorted(listing.items())
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption(
            "No alias yet. An alias such as *production* is a stable name clients use while the run behind it changes."
        )
    if admin and runs:
        for alias in sorted(listing):  # what each alias answers with now (a move shows until the server makes it)
            _state_line(alias)


def _point_alias() -> None:
    """Point alias (a callback: the table above shows the new state in the same redraw)."""
    name = str(st.session_state.get("serve_alias_name") or "").strip()
    run_id = st.session_state.get("serve_alias_run")
    try:
        entry = aliases().set(name, run_id)
    except (AliasError, KeyError, ValueError) as e:
        st.session_state["serve_alias_notice"] = ("error", plain.md(e))  # shown as Markdown
        return
    moved = f" (was {entry['previous']})" if entry["previous"] else ""
    if entry["previous"] == entry["run_id"]:
        moved = " (it already did)"
    st.session_state["serve_alias_notice"] = (
        "success",
        f"**{plain.md(name)}** points at run {entry['run_id']}{moved}. A running server that serves it loads the "
        "run first (the old one answers meanwhile), then switches without dropping a request: the line below says "
        "when.",
    )


WEB_HOW_TO = (
    "The **web** export is a page that classifies photos in the browser, offline: unzip it, run "
    "`python3 -m http.server 8000` in the folder and open http://localhost:8000/ (or put the folder on any static "
    "host). Its README shows how to call `floraClassify(image)` from your own page."
)


def export_section(run: Run) -> None:
    """Make an export of `run` (verified; in a TensorFlow subprocess) and list the ones made, with downloads."""
    cols = st.columns(4, vertical_alignment="bottom")
    fmt = cols[0].selectbox("Format", FORMATS, index=2, key="serve_export_format")
    quantize = cols[1].selectbox(
        "Quantize",
        ["none", *QUANTIZE],
        format_func=lambda q: "none (float32)" if q == "none" else q,
        key="serve_export_quantize",
        disabled=fmt != "tflite",
    )
    layout_options = ["plain"] + [
        layout for layout in LAYOUTS if (layout, fmt) in {("tfserving", "savedmodel"), ("triton", "onnx")}
    ]
    layout = cols[2].selectbox(
        "Layout", layout_options, format_func=lambda x: "plain files" if x == "plain" else x, key="serve_export_layout"
    )
    layout = None if layout == "plain" else layout
    quantize = None if quantize == "none" else quantize
    mine = auth.can_change(run)
    if not mine:
        auth.read_only_note(run)  # an export is written into the run's folder: its owner's (or an admin's) to make
    if cols[3].button("Export and verify", icon=":material/output:", key="serve_export_go", disabled=not mine):
        target = export_dir(run, fmt, quantize if fmt == "tflite" else None, layout)
        with st.spinner(f"Exporting to {fmt} and checking it against the Keras model (a minute or two)…"):
            try:
                record = export_in_subprocess(
                    common.models_root(), run.run_id, fmt, target, quantize if fmt == "tflite" else None, layout
                )
            except ExportError as e:
                st.error(f"The export failed: {plain.md(e)}", icon=":material/error:")
            else:
                v = record["verification"]
                same = (  # what a multi-label run answers: its label lists, each label against its threshold
                    f"the same label lists {v['label_list_agreement']:.1%}"
                    if "label_list_agreement" in v
                    else f"top-1 agreement {v['top1_agreement']:.1%}"
                )
                by = ONNX_CONVERTERS.get(record.get("converter", ""))  # who wrote the ONNX file (onnx, web)
                by = f" (written by {by})" if by else ""
                st.success(
                    f"{fmt} export{by} verified with {v['runtime']}: max |difference| {v['max_abs_diff']:.1e}, "
                    f"{same} on {v['source']}."
                )
    made = run_exports(run)
    if not made:
        st.caption("No export of this run yet.")
        return
    table = pd.DataFrame(
        [
            {
                "export": r["kind"],
                "runtime": r["verification"]["runtime"],
                "max |diff|": r["verification"]["max_abs_diff"],
                "top-1 agreement": r["verification"]["top1_agreement"],
                # a multi-label run's: the photos given the very same labels (each against its threshold)
                **(
                    {"same label lists": r["verification"]["label_list_agreement"]}
                    if "label_list_agreement" in r["verification"]
                    else {}
                ),
                "repeatable": r["verification"]["repeatable"],
                "passed": r.get("passed", False),
                "MB": r.get("size_bytes", 0) / 1e6,
            }
            for r in made
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "max |diff|": st.column_config.NumberColumn(format="%.1e"),
            "top-1 agreement": st.column_config.NumberColumn(format="percent"),
            "same label lists": st.column_config.NumberColumn(format="percent"),
            "MB": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    if any(r["kind"] == "web" for r in made):
        st.caption(WEB_HOW_TO)
    download = st.columns(min(4, len(made)))
    for i, record in enumerate(made):
        download[i % len(download)].download_button(
            f"Download {record['kind']}",
            data=lambda folder=record["folder"]: zip_folder(folder),
            file_name=f"{record['name']}-{record['kind']}.zip",
            mime="application/zip",
            key=f"serve_download_{record['kind']}",
            icon=":material/download:",
        )


def retrain_section(key: str, run: Run | None = None) -> None:
    """Retrain a served model with the feedback kept for its dataset, then compare and promote.

    The run to retrain is picked here (default: the run behind the production alias), never taken from
    another box. Each retrained run's comparison with its parent is stored with it, so it is there after a
    reload, on another page, for another person.
    """
    runs = [r for r in served_runs() if not r.multilabel]  # feedback keeps one class a photo: not label lists yet
    if not runs:
        if served_runs():  # multi-label runs only
            st.caption(
                "Retraining with feedback is for single-label runs: feedback keeps a photo under one class, and a "
                "multi-label run's photos carry label lists (not yet)."
            )
        return
    by_id = {r.run_id: r for r in runs}
    if run is None:
        production = aliases().get(DEFAULT_ALIAS)
        picked_key = f"{key}_retrain_run"
        if st.session_state.get(picked_key) not in by_id:
            st.session_state[picked_key] = production if production in by_id else runs[0].run_id
        by_run = aliases_by_run()
        chosen = st.selectbox(
            "Run to retrain (the model whose predictions were corrected)",
            list(by_id),
            format_func=lambda r: with_aliases(by_id[r], by_run),
            key=picked_key,
        )
        run = by_id[chosen]
    base = base_dataset(run.dataset_path)
    photos = list_feedback(common.data_root(), base)
    givers: dict[str, int] = {}
    for photo in photos:
        givers[photo.by] = givers.get(photo.by, 0) + 1
    whose = ", ".join(f"{plain.md(by)} {n}" for by, n in sorted(givers.items(), key=lambda kv: -kv[1]))
    st.caption(
        f"{len(photos)} feedback photo(s) (predictions corrected on Predict or through the server; label marks "
        f"made on Explore are applied by Train instead) kept for **{plain.md(base.name)}** "
        f"({sum(p.split == 'train' for p in photos)} train, {sum(p.split == 'val' for p in photos)} val; never test)"
        + (f"; given by {whose}." if whose else ".")
    )
    notice = st.session_state.pop(f"{key}_retrain_notice", None)
    if notice:
        getattr(st, notice[0])(notice[1])
    st.button(
        "Retrain with feedback",
        icon=":material/restart_alt:",
        key=f"{key}_retrain",
        disabled=not photos,
        on_click=_retrain,
        args=(run.run_id, key),
        help="The same settings on the dataset plus the feedback photos: a new run, compared with this one "
        "on the same test photos.",
    )
    parent = retrained_from(run)
    if parent and parent in by_id:  # the picked run is itself a retrain: its comparison with where it came from
        comparison_table(by_id[parent], run, key)
    for child in [r for r in runs if retrained_from(r) == run.run_id and r.evaluated]:
        comparison_table(run, child, key)


def _retrain(run_id: str, key: str) -> None:

    try:
        run = common.store().get(run_id)
        outside = dataset_choice.outside_reason(run.dataset_path)
        if outside:  # a shared Flora's roots: the derived dataset would link to those photos
            raise RetrainError(f"run {run_id[:6]}'s photos are {outside}: it cannot be retrained from the app")
        submission = retrain_with_feedback(common.store(), run, common.data_root(), owner=auth.current_user().id)
    except (RetrainError, ValueError, OSError) as e:
        st.session_state[f"{key}_retrain_notice"] = ("error", plain.md(e))  # shown as Markdown
        return
    st.session_state[f"{key}_retrain_notice"] = (
        "success",
        f"Retraining {run_id[:6]} as run {submission.run_id} ({submission.outcome}); follow it on the Train page. "
        "Its comparison with this run appears here when it has finished.",
    )


def comparison_table(old: Run, new: Run, key: str) -> None:
    try:
        result = stored_comparison(old, new, common.data_root())
    except (RetrainError, OSError) as e:
        st.warning(plain.md(e))
        return
    record = retrain_record(new)
    with st.container(border=True):
        st.markdown(
            f"**Old {old.run_id[:6]} vs new {new.run_id[:6]}** (retrained with {record.get('feedback_photos', '?')} "
            f"feedback photo(s)) on the same {result['test_images']} test photos"
        )
        if result.get("difference"):
            st.caption(result["difference"])  # why photos dropped out of the comparison
        st.dataframe(
            pd.DataFrame(old_vs_new_rows(result)),
            hide_index=True,
            width="stretch",
            column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("old", "new", "change")},
        )
        st.markdown(f"**Is the difference real?** {result['pairs'][0]['verdict']} (McNemar's exact test).")
        st.caption(
            "The feedback photos were in the new run's training data, so its score on them flatters it; "
            "the test photos are the fair comparison."
        )
        copies = record.get("copies") or []
        if copies:
            st.caption(
                f"{len(copies)} feedback photo(s) are the very files of the dataset's own photos (same hash), so they "
                "relabel those photos in effect: "
                + ", ".join(f"{plain.md(c['same_as'])} → {plain.md(c['label'])}" for c in copies[:5])
                + (" …" if len(copies) > 5 else "")
            )
        st.page_link(
            page_file("compare"),
            label="Compare them photo by photo",
            icon=":material/compare_arrows:",
            query_params={"runs": f"{old.run_id},{new.run_id}"},
        )
        promote_controls(old, new, result, key)


def promote_controls(old: Run, new: Run, result: dict, key: str) -> None:
    """Promote: move the old run's alias to the new run; a confirmation first when it may be a mistake."""
    alias_names = [a for a, e in aliases().all().items() if e["run_id"] == old.run_id] or [DEFAULT_ALIAS]
    if aliases().get(alias_names[0]) == new.run_id:
        alias_status_line(alias_names[0])  # "switching" until the server answers with the new run
        return
    if not auth.current_user().admin:
        st.caption("Promoting moves an alias: an admin's step.")
        return
    reasons = promotion_advice(result)
    confirmed = True
    if reasons:
        st.warning("Think twice: " + "; ".join(reasons) + ".", icon=":material/warning:")
        confirmed = st.checkbox(
            f"Promote it anyway: point {plain.md(alias_names[0])} at {new.run_id[:6]}",
            key=f"{key}_confirm_{new.run_id}",
        )
    st.button(
        f"Promote: point {plain.md(alias_names[0])} at the new run",
        icon=":material/upgrade:",
        key=f"{key}_promote_{new.run_id}",
        disabled=not confirmed,
        on_click=_promote,
        args=(alias_names[0], new.run_id, key),
    )


def _promote(alias: str, run_id: str, key: str) -> None:
    try:
        entry = aliases().set(alias, run_id)
    except (AliasError, KeyError) as e:
        st.session_state[f"{key}_retrain_notice"] = ("error", plain.md(e))
        return
    st.session_state[f"{key}_retrain_notice"] = (
        "success",
        f"**{plain.md(alias)}** points at run {entry['run_id']} now. A running server that serves it loads the "
        "new run first and keeps answering with the old one meanwhile; the line below says when it switches.",
    )

"""Compare: 2-5 finished runs on the very same test photos; is the difference real (McNemar's exact test; for
multi-label runs, the mAP difference's paired interval and permutation test, and AP per label)?"""

from __future__ import annotations

import streamlit as st

from core.results.evaluation import multilabel_compare
from core.results.evaluation.compare import (
    MAX_RUNS,
    MIN_RUNS,
    NotComparable,
    compare,
    difference_note,
    load_result,
    same_split_note,
)
from pages.ui import analysis_status, auth, common, plain, teaching
from pages.ui.compare import multilabel as compare_multilabel
from pages.ui.compare import sections as compare_sections
from pages.ui.navigation import page_file

st.title("Compare")
st.caption("Put runs trained on the same dataset side by side, photo by photo, and read whether a difference is real.")


@st.cache_data(show_spinner="Loading the run's test predictions…", max_entries=32)
def load_side(run_dir: str, stamp: float, _run):
    """One run's comparison side, read once per analysis file (`stamp`); a copy per call, so aligning is safe."""
    return load_result(_run)


@st.cache_data(show_spinner="Loading the run's test scores…", max_entries=32)
def load_multilabel_side(run_dir: str, stamp: tuple, _run):
    """A multi-label run's side, read once per stored evaluation or analysis file (`stamp`)."""
    return multilabel_compare.load_side(_run)


@st.cache_data(show_spinner="Resampling and permuting the test photos…", max_entries=16)
def multilabel_comparison(stamps: tuple, _sides) -> dict:
    """The comparison of these sides (its bootstrap and permutation test run once per set of runs as stored)."""
    return multilabel_compare.compare(_sides)


def preselected(ids: list[str]) -> list[str]:
    """The runs named in ?runs=ID1,ID2 (full ids or their first characters) that can be picked."""
    wanted = [part.strip() for part in st.query_params.get("runs", "").split(",") if part.strip()]
    chosen = []
    for prefix in wanted:
        match = next((run_id for run_id in ids if run_id.startswith(prefix)), None)
        if match and match not in chosen:
            chosen.append(match)
    return chosen[:MAX_RUNS]


runs = common.evaluable_runs()  # single-label runs with a test evaluation, and multi-label ones
if len(runs) < MIN_RUNS:
    st.info(
        "Comparing needs at least two finished runs on the same dataset. Train another on the Train page.",
        icon=":material/model_training:",
    )
    st.page_link(page_file("train"), label="Go to Train", icon=":material/arrow_forward:")
    st.stop()

# Shared: mine first, everyone's a click away; runs a link names or already picked stay offered, whoever's.
scoped = {run.run_id for run in auth.scope_runs(runs, "compare_scope")}
named = [part.strip() for part in st.query_params.get("runs", "").split(",") if part.strip()]
kept = set(st.session_state.get("compare_runs") or [])
runs = [
    run for run in runs if run.run_id in scoped or run.run_id in kept or any(run.run_id.startswith(p) for p in named)
]
if len(runs) < MIN_RUNS:
    st.caption(f"Comparing needs {MIN_RUNS} finished runs here: look at Everyone's.")
    st.stop()
labels = {run.run_id: common.run_label(run) for run in runs}
url_runs = st.query_params.get("runs", "")
if "compare_runs" not in st.session_state or url_runs not in ("", st.session_state.get("compare_url_seen")):
    # a first visit, or a link (Serve's old vs new) that names other runs than the ones last picked here
    st.session_state["compare_runs"] = preselected(list(labels)) or (
        list(labels) if len(labels) == MIN_RUNS and len({run.dataset_path for run in runs}) == 1 else []
    )  # two runs on one dataset and nothing named: those two
picked = st.multiselect(
    f"Runs ({MIN_RUNS} to {MAX_RUNS}; the first is the reference)",
    list(labels),
    format_func=labels.get,
    key="compare_runs",
    max_selections=MAX_RUNS,
    placeholder="Pick runs trained on the same dataset",
)
st.query_params["runs"] = st.session_state["compare_url_seen"] = ",".join(picked)
teaching.explain("paired_test")
if len(picked) < MIN_RUNS:
    st.caption("Pick at least two runs.")
    st.stop()

store = common.store()
chosen = [store.get(run_id) for run_id in picked]
try:
    multilabel_compare.check_kinds(chosen)
except NotComparable as e:
    st.error(f"These runs cannot be compared: {plain.md(e)}.", icon=":material/block:")
    st.stop()
if chosen[0].multilabel:
    stamps = tuple((run.run_id, run.multilabel_evaluation_mtime, run.analysis_mtime) for run in chosen)
    sides = [load_multilabel_side(str(run.directory), stamp, run) for run, stamp in zip(chosen, stamps, strict=True)]
    try:
        comparison = multilabel_comparison(stamps, sides)
    except NotComparable as e:
        st.error(f"These runs cannot be compared: {plain.md(e)}.", icon=":material/block:")
        st.stop()
    names = {run.run_id: f"{run.run_id[:6]} · {common.run_title(run)}" for run in chosen}
    compare_multilabel.notes_section(comparison, sides, names)
    compare_sections.settings_section(chosen, names)
    compare_multilabel.map_section(comparison, names)
    compare_multilabel.per_label_section(comparison, names)
    st.stop()
missing = [run for run in chosen if not run.has_analysis]
for run in missing:
    with st.container(border=True):
        analysis_status.offer(run, key=f"compare_analysis_{run.run_id}", needed_for="a photo-by-photo comparison")
if missing:
    st.stop()

results = [load_side(str(run.directory), run.analysis_mtime, run) for run in chosen]
try:
    comparison = compare(results)
except NotComparable as e:
    st.error(f"These runs cannot be compared: {plain.md(e)}.", icon=":material/block:")
    st.stop()

names = {run.run_id: f"{run.run_id[:6]} · {common.run_title(run)}" for run in chosen}
if comparison["split_differs"]:  # another seed: mostly other test photos, paired on the few shared
    st.warning(plain.md(comparison["split_differs"]), icon=":material/call_split:")
difference = (
    None
    if comparison["split_differs"]
    else difference_note(comparison["left_out"], {r.run_id: r.run_id[:6] for r in chosen})
)
if difference:
    st.info(
        f"Compared on the {comparison['test_images']} test photos all {len(chosen)} runs have, with the same label. "
        + difference,
        icon=":material/rule:",
    )
else:
    st.caption(f"All {len(chosen)} runs were tested on the same {comparison['test_images']} photos.")
if comparison["same_split"]:  # a split seed kept: two random starts on one split
    st.info(plain.md(same_split_note(results, names)), icon=":material/casino:")
compare_sections.settings_section(chosen, names)
compare_sections.curves_section(chosen, names)
compare_sections.metrics_section(comparison, names)
compare_sections.mcnemar_section(comparison, names)
compare_sections.fix_worth_section(chosen, results, comparison, names)
compare_sections.per_class_section(results, names)
compare_sections.disagreements_section(results, chosen, names)
if len(chosen) > 3:
    compare_sections.parallel_section(chosen, comparison, names)

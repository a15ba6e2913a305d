"""The Explore page's "Data issues": what else is wrong with the run's data, found in the background, in one list.

Each issue type gets a line that says what it is in plain words, how many photos it touches and a health score
(0 to 1, 1 = nothing found, and what it measures), then its photos as thumbnails: outliers, overlapping classes
(merge, or a clearer rule), clusters the model does worse on, label health per class (the Suspected label errors
tab's figures, with a link there), and the health check's duplicates, leaks and imbalance. A photo the person has
already marked (exclude, relabel, fine) says so under its thumbnail.
The result comes from core.results.data_issues.report (the "data-issues" run task), kept in the run folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.corrections import EXCLUDE, FINE, RELABEL, Corrections, target_text
from core.data.datasets import DatasetError
from core.results import tasks as run_tasks
from core.results.data_issues import report as data_issues
from core.results.labels.verdict import probability_text
from core.runs.files import run_files
from core.runs.record import Run
from pages.ui import auth, common, dataset_choice, photo_gallery, plain, run_task
from pages.ui.marks import mark
from pages.ui.run_task import task_panel

KIND = "data-issues"
SHOWN = 12  # photos per issue, before "Show all"
PAIRS_SHOWN = 5  # overlapping pairs and groups, before "Show all"
TITLES = {
    "label_health": ("Label health", ":material/health_and_safety:"),
    "outliers": ("Outliers", ":material/scatter_plot:"),
    "overlapping_classes": ("Overlapping classes", ":material/join_inner:"),
    "underperforming_groups": ("Groups the model does worse on", ":material/group_work:"),
    "duplicates": ("Duplicates", ":material/content_copy:"),
    "leaks": ("Leaks between splits", ":material/water_drop:"),
    "imbalance": ("Class imbalance", ":material/balance:"),
}


REVIEW_TAB = "Suspected label errors"  # the Explore tab the label health line links to


@st.cache_data(show_spinner=False, max_entries=8)
def _load(run_dir: str, stamp: tuple[float, float]) -> data_issues.DataIssues | None:
    return data_issues.load(run_dir)  # with the label review's counts: `stamp` holds both files' times


def _stamp(run: Run) -> tuple[float, float]:
    def mtime(path) -> float:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return 0.0

    files = run_files(run)
    return mtime(files.data_issues), mtime(files.label_issues)


def _open_review() -> None:
    st.session_state["explore_tab"] = REVIEW_TAB  # a callback: runs before the tabs are drawn again


def dataset_changed(run: Run, result: data_issues.DataIssues) -> str | None:
    """Why the result counts an earlier state of the run's dataset, in words (data_issues.changed_since), or None:
    the same folder, or one that cannot be read now (looking again says why)."""
    try:
        index = dataset_choice.scan(run.dataset_path)
    except DatasetError:
        return None
    return data_issues.changed_since(result, index.fingerprint, len(index.entries))


def data_issues_section(run: Run) -> None:
    result = _load(str(run.directory), _stamp(run))
    status = run_tasks.task_status(run, KIND)
    if result is None or (status is not None and status.active):
        names = [plain.md(c) for c in (run.classes or [])][:2]
        among = " and ".join(names) if names else "your classes"
        st.markdown(
            f"Besides wrong labels, a dataset can hold photos that belong to no class (a screenshot among {among}), "
            "two classes nobody can tell apart, groups of photos the model fails on, copies of one picture and "
            "classes far smaller than the rest. Flora looks for all of them at once: every photo is scored by a "
            "model that never saw it, its features are compared with every other photo's, and the dataset health "
            "check's findings join the list. It runs in the background: seconds to a few minutes, longer the first "
            "time each photo is read for the health check."
        )
        task_panel(run, KIND, "Look for data issues", key="explore_data_issues")
        return
    result.random_start = result.random_start or run.train_config.weights == "none"  # stored before it was kept
    source = data_issues.splits_text(result.by_split)
    st.caption(
        f"{result.photos} photos ({source}) in {result.classes} classes, looked at "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(result.computed_at))}. "
        f"Probabilities: {plain.md(result.how)}. "
        "Each line has a health score from 0 to 1, and higher is better: 1 means nothing of that kind was found, "
        "0.95 means about 5% of the photos are touched. Each line says what its score measures."
    )
    if run.train_config.weights == "none":
        st.caption(
            "This run's backbone started from random weights: its features tell photos apart poorly, so expect more "
            "overlap and fewer clear outliers than ImageNet features would show."
        )
    if result.health_note:
        st.caption(plain.md(result.health_note))
    changed = dataset_changed(run, result)
    if changed:  # walk 41: counts of an earlier dataset, shown as today's
        st.warning(changed, icon=":material/update:")  # Flora's own words and figures, no name in them
    if run_task.why_not(run) is None and st.button(
        "Look again",
        key="explore_data_issues_again",
        icon=":material/refresh:",
        type="primary" if changed else "secondary",
    ):
        run_task.launch(run, KIND)
        st.rerun()
    root = Path(run.dataset_path)
    marks = Corrections.load(common.data_root(), run.dataset_path, auth.current_user().id).entries
    for line in result.summary():
        issue_block(line, result, root, marks, run)


def issue_block(
    line: dict, result: data_issues.DataIssues, root: Path, marks: dict | None = None, run: Run | None = None
) -> None:
    """One issue type: its headline and health score (what it measures, which way is good), what it means, then
    its photos (`marks`: the person's corrections, path -> {"action", "to"?}, shown under a marked photo)."""
    title, icon = TITLES[line["kind"]]
    kind = line["kind"]
    marks = marks or {}
    with st.container(border=True, key=f"explore_data_{kind}"):
        score = data_issues.score_text(line["score"])
        st.markdown(f"{icon} **{title}** · health {score} of 1 · {plain.md(line['title'])}")
        st.caption(
            f"Health {score}: {line['score_meaning']} (1 = nothing of this kind found). {plain.md(line['explanation'])}"
        )
        if line["score"] >= 0.9995 and kind != "label_health":
            return  # nothing of this kind
        if kind == "label_health":
            health_details(result)
        elif kind == "outliers":
            outlier_details(result, root, marks)
            if run is not None:
                exclude_picker(run, [row["path"] for row in result.outliers], marks, "outliers")
        elif kind == "overlapping_classes":
            overlap_details(result, root, marks)
        elif kind == "underperforming_groups":
            group_details(result, root, marks)
        else:
            finding_details(getattr(result, kind), root, kind)


def _more(items: list, key: str, shown: int = SHOWN) -> list:
    """The first `shown` items, or all of them once "Show all" is ticked."""
    if len(items) <= shown:
        return items
    every = st.toggle(f"Show all {len(items)}", key=key, value=False)
    return items if every else items[:shown]


def mark_words(marks: dict, path: str) -> str:
    """' · you marked: exclude' (or relabel to X, or fine) for a photo the person has marked; '' otherwise."""
    entry = marks.get(path) or {}
    action = entry.get("action")
    if action == RELABEL:
        return f" · you marked: relabel to {target_text(entry)}"
    if action in (EXCLUDE, FINE):
        return f" · you marked: {action}"
    return ""


def _marked_note(paths: list[str], marks: dict) -> None:
    marked = sum(1 for path in paths if mark_words(marks, path))
    if marked:
        st.caption(
            f"You have already marked {marked} of these (said under each): an excluded photo leaves your next run, a "
            "relabelled one trains as its new class, a fine one keeps its label. Marks are made in Suspected label "
            "errors."
        )


def health_details(result: data_issues.DataIssues) -> None:
    rows = result.label_health["classes"]
    frame = pd.DataFrame(
        [
            {
                "class": row["class"],
                "labels that look right": row["score"],
                "photos": row["photos"],
                "estimated wrong": row["wrong_labels"],
            }
            for row in rows
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "labels that look right": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")
        },
        key="explore_data_health_table",
    )
    estimated = sum(row["wrong_labels"] for row in rows)
    review = result.label_review
    if review is None:
        where = (
            "This run's labels have not been reviewed photo by photo yet: the Suspected label errors tab does it, "
            "with the same model and the same counts."
        )
    elif review["estimated_errors"] == estimated:
        where = "The suspects themselves, photo by photo, are in the Suspected label errors tab."
    else:  # a review made before this look (or after a change): counts from different scorings
        where = (
            f"The Suspected label errors tab estimates {review['estimated_errors']}: it and this look scored the "
            "photos separately (at different times, or by an older Flora), so they differ a little. Look again to "
            "line them up."
        )
    st.caption(
        f"Worst class first. Per class, confident learning's estimate of its wrong labels (they add up to "
        f"{estimated}); a suspect is a photo it is surest about. {where}"
    )
    st.button(
        "See the suspects in Suspected label errors",
        key="explore_data_to_review",
        type="tertiary",
        icon=":material/arrow_forward:",
        on_click=_open_review,
    )


def outlier_details(result: data_issues.DataIssues, root: Path, marks: dict | None = None) -> None:
    marks = marks or {}
    rows = _more(result.outliers, "explore_data_outliers_all")
    photo_gallery.gallery(
        [
            (
                root / row["path"],
                f"{row['score']:.1f}× · {row['class']}{mark_words(marks, row['path'])}\n{Path(row['path']).name}",
            )
            for row in rows
        ],
        size=120,
        key="explore_data_outlier_photos",
    )
    _marked_note([row["path"] for row in result.outliers], marks)
    if len(result.outliers) < result.outliers_flagged:
        st.caption(f"The {len(result.outliers)} most unusual of {result.outliers_flagged} are kept.")


def _exclude(run: Run, key: str) -> None:

    for path in st.session_state.get(key) or []:
        mark(run, path, EXCLUDE)
    st.session_state[key] = []


def exclude_picker(run: Run, paths: list[str], marks: dict, kind: str) -> None:
    """Act on what was found: leave chosen photos out of the next run (a correction mark, as the label review makes:
    the photo itself is never touched; undone there)."""
    open_paths = [p for p in paths if p not in marks]
    if not open_paths:
        return
    key = f"explore_data_exclude_{kind}"
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.multiselect(
            "Leave out of the next run",
            open_paths,
            format_func=lambda p: Path(p).name,
            key=key,
            placeholder="Pick the photos that do not belong",
            help="Marks them 'exclude' in your label corrections (the photo files stay where they are); your next "
            "run on this dataset leaves them out. Suspected label errors lists and undoes the marks.",
        )
        st.button("Leave them out", key=f"{key}_go", on_click=_exclude, args=(run, key), icon=":material/block:")


def pair_words(pair: dict, sizes: dict[str, int], photos: int) -> str:
    """The pair's score in words: 'About 466 photos look more like the other class: 28% of the 1,650 rose and
    tulip photos, 11% of all 4,167 photos.'"""
    a, b = (plain.md(name) for name in pair["classes"])
    both = sizes.get(pair["classes"][0], 0) + sizes.get(pair["classes"][1], 0)
    of_both = f"{pair['photos'] / both:.0%} of the {both:,} {a} and {b} photos, " if both else ""
    return (
        f"About {pair['photos']:,} photos look more like the other class to a model that never saw them: "
        f"{of_both}{pair['score']:.0%} of all {photos:,} photos."
    )


def told_apart_words(pair: dict) -> str:
    """How well the model tells the two apart, for an instructor: a photo of each, which is which."""
    apart = pair["separability"]
    if apart is None:
        return ""
    a, b = (plain.md(name) for name in pair["classes"])
    typical = pair.get("typical_separability")
    return (
        f" Shown one {a} photo and one {b} photo, the model says which is which {apart:.0%} of the time; guessing "
        "would get 50%, always right is 100%"
        + (f"; for a typical pair among those it mixes up most, it gets {typical:.0%}" if typical else "")
        + "."
    )


def overlap_details(result: data_issues.DataIssues, root: Path, marks: dict | None = None) -> None:
    marks = marks or {}
    sizes = {row["class"]: row["photos"] for row in result.label_health.get("classes", [])}
    for i, pair in enumerate(_more(result.overlapping_classes, "explore_data_pairs_all", PAIRS_SHOWN)):
        told = " " + pair_words(pair, sizes, result.photos) + told_apart_words(pair)
        advice = data_issues.overlap_advice(
            pair, result.classes, name=lambda c: f"**{plain.md(c)}**", random_start=result.random_start
        )
        with st.expander(
            f"{pair['classes'][0]} and {pair['classes'][1]}: about {pair['photos']} photos look like the other class"
            + (" · merge?" if pair["suggestion"] == "merge" and result.classes > 2 else ""),
            expanded=i == 0,
        ):
            st.markdown(advice + told)
            photo_gallery.gallery(
                [
                    (
                        root / e["path"],
                        f"labelled {e['label']} · {e['looks_like']} {probability_text(e['share'])}"
                        f"{mark_words(marks, e['path'])}"
                        f"\n{Path(e['path']).name}",
                    )
                    for e in pair["examples"]
                ],
                size=110,
                key=f"explore_data_pair_{i}",
            )


def group_details(result: data_issues.DataIssues, root: Path, marks: dict | None = None) -> None:
    marks = marks or {}
    for i, group in enumerate(_more(result.underperforming_groups, "explore_data_groups_all", PAIRS_SHOWN)):
        classes = ", ".join(f"{plain.md(name)} ({n})" for name, n in group["classes"].items())
        with st.expander(
            f"{group['photos']} similar photos: {group['accuracy']:.0%} right, against {group['rest_accuracy']:.0%} "
            "elsewhere",
            expanded=i == 0,
        ):
            st.markdown(
                f"Mostly {classes}. A difference this large would arise by chance less than "
                f"{max(group['p_value'], 0.001):.1%} of the time. Wrong ones first:"
            )
            photo_gallery.gallery(
                [
                    (
                        root / e["path"],
                        f"{e['label']} → {e['predicted']}{mark_words(marks, e['path'])}\n{Path(e['path']).name}",
                    )
                    for e in group["examples"]
                ],
                size=110,
                key=f"explore_data_group_{i}",
            )


def finding_details(findings: list[dict], root: Path, kind: str) -> None:
    """The health check's findings as it words them; the copies' photos group by group (an imbalance lists only
    its classes: a gallery of a small class's photos says nothing)."""
    for i, finding in enumerate(findings):
        st.markdown(plain.md(finding["title"]))
        st.caption(plain.md(finding["detail"]))
        if finding["kind"] in ("class_imbalance", "small_class"):
            continue
        groups = finding["groups"] or [[path] for path in finding["files"]]
        shown = groups[:4] if finding["groups"] else groups[:SHOWN]
        photo_gallery.gallery(
            [
                (root / path, _copy_caption(finding, n, path))
                for n, group in enumerate(shown, start=1)
                for path in group
                if not path.endswith("/")
            ],
            size=100,
            key=f"explore_data_{kind}_{i}",
        )
        if len(groups) > len(shown):
            st.caption(f"{len(shown)} of {len(groups)} shown; the Dataset page's health check lists them all.")


def _copy_caption(finding: dict, group: int, path: str) -> str:
    note = finding["captions"].get(path, "")
    head = f"copy group {group}" + (f" · {note}" if note else "") if finding["groups"] else note
    return f"{head}\n{path}".strip()

"""User strings never become markup (issue 29, section 8): class folders, a dataset's name and description, a run's
name and note, a preset's name and uploaded file names that are Markdown, HTML, Streamlit directives or KaTeX are
drawn on every page as the text they are, never as an image, a link, bold, colour or a formula.

One run is trained on a dataset whose every class folder is hostile (the tiny test backbone at 32 px, seconds),
a second one copied from it for Compare; each page is then drawn and driven a little (tabs, a heatmap, an upload,
a preset saved), and everything Streamlit renders as Markdown is searched for an unescaped hostile pattern.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.data.corrections import Corrections
from core.fileio import write_json_atomic
from core.paths import flora_dir
from core.results import tasks as run_tasks
from core.runs.record import ANALYSIS_FILE, CALIBRATION_FILE, CONFIG_FILE
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.settings.presets import PRESETS_FILE
from pages.ui.navigation import page_file
from tests.conftest import copy_run, make_image_dataset
from tests.pages.conftest import APP

CLASSES = {  # every name Markdown or HTML; the first three one colour (the model mixes them up: Evaluate and
    "![c](c.png)": 14,  # Explore have mistakes to show), the last one larger (the imbalance warning names it)
    "<img src=i.png>": 14,
    "**bold**": 14,
    ":red[x]": 14,
    "$x$": 22,
}
COLOURS = [(220, 40, 40), (220, 40, 40), (220, 40, 40), (40, 190, 40), (40, 60, 220)]
EMPTY_CLASS = "[e](javascript:alert(1))"  # a class folder without images: the page names it
DATASET_NAME = "![d](http://example.invalid/d.png) __bold__"
DESCRIPTION = "![e](http://example.invalid/e.png) <img src=http://example.invalid/f.png> $x$"
RUN_NAME = "![r](http://example.invalid/r.png) **bold**"
RUN_NOTE = "<img src=http://example.invalid/n.png> :red[x] $x$ [l](http://example.invalid/l)"
PRESET = "![p](http://example.invalid/p.png) **bold**"  # saved by hand: the page's own form refuses such a name
UPLOADS = ["![u](u.png).png", "<img src=v.png>.png", "**w**.png", ":red[y].png"]  # 4: the many-photos table too
SECOND = "b" * 12  # the copied run's id

# What a hostile string turns into when rendered: an image, a link, HTML, bold, a coloured span, a formula.
# Its escaped form (pages.ui.plain.md) contains none of these, since every mark is preceded by a backslash.
UNESCAPED = [
    re.compile(r"(?<!\\)!(?<!\\)\["),  # ![alt](src): an image
    re.compile(r"(?<!\\)\](?<!\\)\("),  # [text](href): a link
    re.compile(r"(?<!\\)<(img|a |script)", re.IGNORECASE),
    re.compile(r"(?<!\\)\*(?<!\\)\*(bold|w)"),
    re.compile(r"(?<!\\)_(?<!\\)_bold"),
    re.compile(r"(?<!\\):red(?<!\\)\["),
    re.compile(r"(?<!\\)\$x(?<!\\)\$"),
]
MARKDOWN_VALUES = {
    "markdown", "caption", "info", "success", "warning", "error", "toast", "title", "header", "subheader", "metric",
    "page_link",
}  # fmt: skip
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)  # read literally: a path in backticks is text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """data/hostile (hostile class folders, name and description, a hostile saved preset) and a models folder with
    a finished run on it (hostile name and note) and a copy of it under another id."""
    from core import run_job
    from core.train import jobs

    base = tmp_path_factory.mktemp("hostile")
    data_root, models_root = base / "data", base / "models"
    dataset = make_image_dataset(data_root / "hostile", CLASSES, size=(40, 40), seed=3, colors=COLOURS)
    (dataset / EMPTY_CLASS).mkdir()
    (dataset / "flora.json").write_text(json.dumps({"name": DATASET_NAME, "description": DESCRIPTION}))
    (dataset / "$x$" / "readme.txt").write_text("not a photo")  # listed as ignored
    write_json_atomic(flora_dir(data_root) / PRESETS_FILE, {PRESET: {"owner": "local", "config": {"rotation": 10.0}}})
    store = RunStore(models_root)
    config = TrainConfig(
        image_size=32, weights="none", epochs=2, batch_size=16, head=(16,), seed=2, early_stopping_patience=0
    )
    submission = jobs.submit(store, dataset, config)
    run_job.execute(store, submission, data_root, console=False, ingest_workers=1)
    first = submission.run_id
    store.set_label(first, name=RUN_NAME, note=RUN_NOTE)
    copy_run(store.run_dir(first), models_root / SECOND)  # for Compare: its test predictions differ on a third
    settings = json.loads((models_root / SECOND / CONFIG_FILE).read_text())
    settings["config"]["seed"] = 7
    (models_root / SECOND / CONFIG_FILE).write_text(json.dumps(settings))
    arrays = dict(np.load(models_root / SECOND / ANALYSIS_FILE))
    flip = np.random.default_rng(0).permutation(len(arrays["test_logits"]))[: len(arrays["test_logits"]) // 3]
    arrays["test_logits"][flip] = np.roll(arrays["test_logits"][flip], 1, axis=1)
    np.savez(models_root / SECOND / ANALYSIS_FILE, **arrays)
    (models_root / SECOND / CALIBRATION_FILE).unlink(missing_ok=True)
    assert store.get(first).evaluated and store.get(SECOND).evaluated
    # Explore's suspected label errors (what its background task does), one of them marked "relabel to" a class
    review = run_tasks.compute_label_issues(store.get(first), data_root)
    suspect = next(issue for issue in review.issues if issue.split != "test")
    marks = Corrections.load(data_root, dataset)
    marks.mark(suspect.path, "relabel", next(c for c in CLASSES if c not in (suspect.given, suspect.suggested)))
    marks.save()
    return {"data": data_root, "models": models_root, "dataset": dataset, "run_id": first}


@pytest.fixture
def open_page(hostile, monkeypatch):
    monkeypatch.setenv("FLORA_DATA_DIR", str(hostile["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(hostile["models"]))

    def opened(page: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.switch_page(page_file(page))
        run(at)
        picker = f"{page}_run"  # the named run with the label review, whichever of the two is listed first
        if picker in at.session_state and at.session_state[picker] != hostile["run_id"]:
            at.selectbox(key=picker).set_value(hostile["run_id"])
            run(at)
        return at

    return opened


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def markdown_texts(at: AppTest) -> list[str]:
    """Every string the page hands Streamlit as Markdown: text, captions, alerts, toasts, metric labels and values,
    expander, tab, popover, button and widget labels and their help, radio, pills and segmented-control options,
    image captions."""
    found = []
    for node in [*_walk(at.main), *_walk(at.sidebar)]:
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", "")
        if kind in MARKDOWN_VALUES:
            found.append(str(node.value))
        elif kind == "image":
            found += node.captions
        elif kind == "progress":
            found.append(node.text)
        elif kind == "popover":
            found.append(proto.popover.label)
        elif kind in ("radio", "button_group"):  # options shown as Markdown (selectbox ones are plain text)
            found += [str(option) for option in node.options]
        if proto is not None and kind != "popover":  # labels and help: of widgets, metrics, expanders, tabs
            found += [str(getattr(proto, field)) for field in ("label", "help") if hasattr(proto, field)]
    return [text for text in found if text]


def assert_no_markup(at: AppTest) -> None:
    texts = markdown_texts(at)
    assert texts, "nothing drawn"
    for text in texts:
        literal = CODE_SPAN.sub("", text)
        for pattern in UNESCAPED:
            assert not pattern.search(literal), f"{pattern.pattern!r} unescaped in: {text!r}"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def assert_no_chart_tags(at: AppTest) -> None:
    """Plotly reads a little HTML in its labels, legends and hover texts: a class named <img ...> stays text."""
    charts = at.get("plotly_chart")
    assert charts, "no chart drawn"
    for chart in charts:
        for text in _strings(json.loads(chart.proto.spec)):
            assert not re.search(r"<(img|a )", text, re.IGNORECASE), f"a tag in a chart: {text!r}"


def drawn_with_hostile_names(at: AppTest) -> str:
    """The page's Markdown in one string (to check that the hostile strings are there, escaped)."""
    return "\n".join(markdown_texts(at))


def test_home(open_page):
    assert_no_markup(open_page("home"))


def test_dataset(open_page):
    from pages.ui.plain import md

    at = open_page("dataset")
    assert_no_chart_tags(at)  # the class counts
    shown = drawn_with_hostile_names(at)
    assert md(DESCRIPTION) in shown and md(EMPTY_CLASS) in shown  # said, as text
    assert f"smallest ({md('$x$')}: 22" in shown  # the imbalance warning names the classes
    assert_no_markup(at)
    for tab in ("Samples", "Image sizes", "Split", "Disk", "Health check"):
        at.session_state["dataset_tab"] = tab
        run(at)
        assert_no_markup(at)
    at.button(key="dataset_health_go").click()
    assert_no_markup(run(at))
    assert any(md(EMPTY_CLASS) in e.label for e in at.expander)  # a finding's title names the empty class, as text


def test_augmentation_a_hostile_preset_and_a_saved_one(open_page):
    from pages.ui.plain import md

    at = open_page("augmentation")
    assert_no_markup(at)
    at.selectbox(key="augment_preset").set_value(PRESET)
    assert_no_markup(run(at))
    at.text_input(key="augment_save_name").set_value("__bold__")  # a valid name that is Markdown
    at.button(key="augment_save").click()
    run(at)
    assert f"Saved preset **{md('__bold__')}**" in drawn_with_hostile_names(at)
    assert_no_markup(at)
    at.text_input(key="augment_save_name").set_value(PRESET)  # refused, the name echoed as text
    at.button(key="augment_save").click()
    run(at)
    assert any(md(PRESET) in e.value for e in at.error)
    assert_no_markup(at)


def test_train(open_page):
    from pages.ui.plain import md

    at = open_page("train")
    shown = drawn_with_hostile_names(at)
    assert md(RUN_NAME) in shown and md(RUN_NOTE) in shown
    assert_no_markup(at)
    at.session_state["train_tab"] = "New run"
    assert_no_markup(run(at))


def test_evaluate_gallery_heatmaps_and_top_losses(open_page):
    at = open_page("evaluate")  # the most confused cell's photos, and the top losses
    assert_no_markup(at)
    picker = at.selectbox(key="evaluate_heatmap_pick")  # a mistake's heatmaps, captioned with its classes
    assert picker.options
    picker.select_index(0)
    run(at)
    assert [c for image in at.get("image") for c in image.captions if c.startswith("true: ")]
    assert_no_markup(at)
    for tab in ("Per-class metrics", "Calibration & sets"):
        at.session_state["evaluate_tab"] = tab
        assert_no_markup(run(at))
    at.selectbox(key="evaluate_true").set_value("![c](c.png)")
    at.selectbox(key="evaluate_pred").set_value("<img src=i.png>")
    assert_no_markup(run(at))


def test_explore_map_and_suspected_label_errors(open_page):
    at = open_page("explore")
    assert_no_markup(at)
    assert_no_chart_tags(at)  # the map's legend and hover texts
    at.session_state["explore_tab"] = "Suspected label errors"
    run(at)
    assert any(":green[:material/check: relabel to " in m.value for m in at.markdown)  # the marked suspect
    assert_no_markup(at)
    at.pills(key="explore_issue_splits").set_value(["train", "val", "test"])
    at.toggle(key="explore_issue_heatmaps").set_value(True)  # each suspect's map, captioned with its classes
    run(at)
    assert [c for image in at.get("image") for c in image.captions if c.startswith("red: ")]
    assert_no_markup(at)


def test_compare(open_page, hostile):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.query_params["runs"] = f"{hostile['run_id']},{SECOND}"
    at.switch_page(page_file("compare"))
    run(at)
    assert at.multiselect(key="compare_runs").value == [hostile["run_id"], SECOND]
    assert [c for image in at.get("image") for c in image.captions]  # the photos they disagree on, captioned
    assert_no_markup(at)
    assert_no_chart_tags(at)  # the curves' legend names the runs


def test_predict_uploads_then_monitor(open_page, hostile):
    at = open_page("predict")
    photos = sorted((hostile["dataset"] / "**bold**").iterdir())
    at.file_uploader(key="predict_upload").set_value(
        [(name, photo.read_bytes(), "image/png") for name, photo in zip(UPLOADS, photos, strict=False)]
    )
    run(at)
    assert len(at.expander) >= len(UPLOADS)  # one per photo, named by its file
    assert_no_markup(at)
    assert_no_chart_tags(at)  # the top classes' bars
    single = photos[0].read_bytes()
    at.file_uploader(key="predict_upload").set_value([(UPLOADS[0], single, "image/png")])
    assert_no_markup(run(at))
    at.button(key=f"predict_feedback_save_0_{len(single)}").click()  # "Wrong? It is …": saved as a class
    run(at)
    assert any(s.value.startswith("Saved as **") for s in at.success)
    assert_no_markup(at)
    assert_no_markup(open_page("monitor"))  # the predictions were logged: the Monitor page has a model


@pytest.mark.parametrize("page", ["serve", "sweep"])
def test_serve_and_sweep(open_page, page):
    assert_no_markup(open_page(page))


def test_a_code_span_holds_any_text():
    from pages.ui.plain import code

    assert code("/data/flowers") == "`/data/flowers`"
    assert code("a`b") == "``a`b``"  # a backtick inside cannot end the span
    assert code("`x``") == "``` `x`` ```"
    assert code("a\u202eb\nc") == "`a\\u202eb c`"  # invisible marks shown, one line

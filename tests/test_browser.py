"""The whole app in a real browser: Home -> Train (launch, watch the curve grow) -> Evaluate (click a
confusion cell, see its photos) -> Predict (upload, see the top-k); Explore (click a point of the map,
see that photo). Screenshots go to the test's tmp dir (and to $FLORA_SCREENSHOTS when set).

Uses Debian's chromium through Playwright's Python client; no browser is downloaded.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from core.bench.common import free_port
from core.bench.server_cpu import CHROMIUM_ARGS, wait_healthy
from tests.conftest import FLOWERS, link_subset, make_image_dataset
from tests.core_process import CoreProcess, run_core, start_core, start_module

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def chromium_path() -> str:
    for candidate in (os.environ.get("FLORA_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if os.environ.get("FLORA_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def server(tmp_path):
    """`streamlit run` on a free port over a fresh workspace with one dataset of real photos."""
    data, models = tmp_path / "data", tmp_path / "models"
    if FLOWERS.is_dir():
        link_subset(FLOWERS, data / "flowers", per_class=24)
    else:
        # two classes share a colour, so the model has mistakes to click on
        make_image_dataset(
            data / "flowers",
            {"daisy": 24, "rose": 24, "tulip": 24},
            size=(96, 80),
            colors=[(230, 230, 230), (220, 40, 40), (220, 40, 40)],
        )
    port = free_port()
    env = {**os.environ, "FLORA_DATA_DIR": str(data), "FLORA_MODELS_DIR": str(models), "PYTHONUNBUFFERED": "1"}
    process = start_streamlit(port, env, tmp_path / "streamlit.log", "--browser.gatherUsageStats", "false")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(port)
    except RuntimeError:
        process.kill()
        pytest.fail(f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()[-3000:]}")
    yield {"url": url, "data": data, "models": models, "tmp": tmp_path}
    process.terminate()
    process.wait(timeout=20)


def start_streamlit(port: int, env: dict[str, str], log: Path, *options: str) -> CoreProcess:
    """`streamlit run streamlit_app.py` on `port`, headless, its output in `log`: a process of its own, forked from the
    worker's warm launcher where one serves `env` (tests/core_process.py), so that each server does not import Keras
    and TensorFlow afresh for the app's warm-up; stop it by its process id."""
    command = ["run", "streamlit_app.py", "--server.port", str(port), "--server.headless", "true"]
    return start_module("streamlit", *command, *options, env=env, log=log)


def test_home_train_evaluate_predict_in_a_browser(server):
    """Home -> Train (a run launched from the CLI shows up by itself, its curve grows, Stop shows at once)
    -> Evaluate (a click near a cell's edge opens that cell's photos, in view, named) -> Predict."""
    from playwright.sync_api import expect, sync_playwright

    from core.results.evaluation.metrics import Evaluation
    from core.runs.store import RunStore

    shots = server["tmp"] / "screenshots"
    shots.mkdir()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)

        def shot(name: str) -> None:
            page.wait_for_timeout(800)
            page.screenshot(path=shots / f"{name}.png")

        def no_exceptions() -> None:
            errors = page.locator("[data-testid='stException']")
            assert errors.count() == 0, errors.all_inner_texts()

        def go(title: str) -> None:
            page.locator("[data-testid='stSidebar']").get_by_role("link", name=title).click()
            expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()

        # Home
        page.goto(server["url"])
        expect(page.get_by_role("heading", name="Flora", level=1)).to_be_visible()
        expect(page.get_by_text("1 · Pick or add a dataset")).to_be_visible()
        no_exceptions()
        shot("1-home")

        # Train, with nothing running; then a run launched elsewhere (the CLI) shows up by itself.
        # On images (no feature cache), so each epoch takes a moment and the curve grows.
        go("Train")
        page.get_by_role("tab", name="Runs").click()
        expect(page.get_by_text("No runs yet")).to_be_visible()
        shot("2-train-empty")
        env = {**os.environ, "FLORA_DATA_DIR": str(server["data"]), "FLORA_MODELS_DIR": str(server["models"])}
        # the tiny test backbone (conftest's): the page's subject is the run, not its network; epochs enough that
        # it is still training when Stop is clicked
        command = ["train", str(server["data"] / "flowers"), "--image-size", "64",
                   "--weights", "none", "--epochs", "400", "--patience", "0", "--no-feature-cache"]  # fmt: skip
        launched = time.time()
        cli = start_core(*command, env=env, folder=server["tmp"] / "cli-train")  # a process of its own
        try:
            expect(page.locator("[data-testid='stSidebar']").get_by_text("Watch it")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Watch run")).to_be_visible(timeout=15_000)
            noticed = time.time() - launched
            assert noticed < 20, f"the page took {noticed:.0f} s to notice a run launched from the CLI"

            counts = []
            deadline = time.time() + 300
            while time.time() < deadline and len(set(counts)) < 3:
                points = page.evaluate(
                    """() => [...document.querySelectorAll('.js-plotly-plot')]
                           .map(gd => (gd._fullData || []).filter(t => t.name === 'validation').map(t => t._length))
                           .flat()"""
                )
                if points:
                    counts.append(points[0])
                time.sleep(1)
            assert len(set(counts)) >= 3, f"the curve should grow live: {counts}"
            shot("3-train-live")
            no_exceptions()

            # Stop: "stopping" at once, then stopped with its best weights evaluated.
            page.get_by_role("button", name="Stop").click()
            # 15 s: on 2 busy cores (two test workers training beside this run) a redraw can take several seconds
            # the visible badge: the runs table's grid also holds "stopping…" in a hidden accessibility cell
            expect(page.get_by_text("stopping…").filter(visible=True).first).to_be_visible(timeout=15_000)
            assert cli.poll() is None, "the badge must say stopping before the process has ended"
            shot("4-train-stopping")
            cli.wait(timeout=120)
        finally:
            if cli.poll() is None:
                cli.kill()
        expect(page.get_by_text("Stopped on request: it kept its best weights so far")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Test accuracy", exact=True)).to_be_visible()
        no_exceptions()
        shot("5-train-stopped")

        # Evaluate: click just inside the corner of the fullest off-diagonal cell (the whole cell is the target)
        store = RunStore(server["models"])
        run = store.list()[0]
        evaluation = Evaluation.load(run.directory)
        confused = evaluation.most_confused()
        true, predicted = (
            (confused.iloc[0]["true"], confused.iloc[0]["predicted"])
            if len(confused)
            else (
                evaluation.classes[0],
                evaluation.classes[0],
            )
        )
        go("Evaluate")
        # the matrix by its key: the page's other charts (calibration's reliability bars) draw rects too
        matrix = ".st-key-evaluate_matrix [data-testid='stVegaLiteChart']"
        page.wait_for_selector(f"{matrix} g.mark-rect.role-mark path")
        # the page opens on the worst pair: pick another cell first, so the click has to change it
        page.get_by_role("tab", name="Confusion matrix").click()
        names = sorted(evaluation.classes)
        cells = page.locator(f"{matrix} g.mark-rect.role-mark path")
        assert cells.count() == len(names) ** 2
        target = cells.nth(names.index(true) * len(names) + names.index(predicted))
        page.locator(matrix).scroll_into_view_if_needed()  # as a person scrolls to it
        box = target.bounding_box()
        page.mouse.click(box["x"] + 2, box["y"] + 2)  # 2 px inside the cell's top-left corner
        count = len(evaluation.pair(true, predicted))
        what = "predicted correctly" if true == predicted else f"predicted as {predicted}"
        heading = page.get_by_text(f"{true} {what}: {count} test image(s)")
        expect(heading).to_be_visible(timeout=30_000)
        photos = page.locator(".st-key-evaluate_gallery [data-testid='stImage']")
        expect(photos.first).to_be_visible()
        first = photos.first.bounding_box()
        assert first["y"] >= 0 and first["y"] + first["height"] / 2 < 800, "the photos open in view, beside the matrix"
        names_shown = " ".join(photos.all_inner_texts())
        assert any(Path(path).name in names_shown for path in evaluation.pair(true, predicted)["path"])
        no_exceptions()
        shot("6-evaluate-cell")

        # Predict: upload one real photo
        go("Predict")
        photo = next(p for p in sorted((server["data"] / "flowers").rglob("*")) if p.is_file())
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(photo.resolve()))
        expect(page.get_by_text("Most likely")).to_be_visible(timeout=180_000)  # first load imports the framework
        expect(page.get_by_text("decode + forward pass")).to_be_visible()
        no_exceptions()
        shot("7-predict")
        browser.close()

    keep = os.environ.get("FLORA_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    print(f"screenshots: {shots}")


def test_a_page_url_opened_first_after_a_restart_gets_the_whole_app(server):
    """Streamlit's legacy pages/ convention would list every pages/*.py ("streamlit app", "common", ...) in
    the sidebar until the main script's st.navigation ran, and run pages/evaluate.py alone for this first
    request. No script lives directly in pages/, so neither happens: the sidebar only ever shows our pages."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server["url"] + "/evaluate", wait_until="commit")
        seen = set()
        deadline = time.time() + 8
        while time.time() < deadline:  # every sidebar listing drawn while the first run settles
            seen.add(
                page.evaluate(
                    "() => { const n = document.querySelector(\"[data-testid='stSidebar']\"); "
                    "return n ? n.innerText : '' }"
                )
            )
            time.sleep(0.03)
        listed = " | ".join(text.replace("\n", " ") for text in seen if text)
        assert "common" not in listed and "streamlit app" not in listed, listed
        expect(page.get_by_role("heading", name="Evaluate", level=1)).to_be_visible(timeout=60_000)
        assert page.get_by_text("Page not found").count() == 0
        navigation = page.locator("[data-testid='stSidebar']")
        expect(navigation).to_contain_text("Predict", timeout=30_000)
        expect(page.get_by_text("No finished run yet")).to_be_visible()
        browser.close()


def test_explore_a_click_on_the_map_shows_that_photo(server):
    """Explore: a run trained from the CLI is mapped; a click on a point of the map shows that photo, named;
    a box over the whole map selects every photo."""
    from playwright.sync_api import expect, sync_playwright

    from core.runs.analysis import RunAnalysis
    from core.runs.store import RunStore

    env = {**os.environ, "FLORA_DATA_DIR": str(server["data"]), "FLORA_MODELS_DIR": str(server["models"])}
    command = ["train", str(server["data"] / "flowers"), "--image-size", "32",
               "--weights", "none", "--epochs", "2", "--patience", "0"]  # fmt: skip
    trained = run_core(*command, env=env)  # a process of its own
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = RunStore(server["models"]).list()[0]
    analysis = RunAnalysis.load(run.directory)
    shots = server["tmp"] / "screenshots"
    shots.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(server["url"] + "/explore")
        expect(page.get_by_role("heading", name="Explore", level=1)).to_be_visible(timeout=60_000)
        points = page.locator("[data-testid='stPlotlyChart'] .scatterlayer .trace path.point")
        expect(points.first).to_be_visible(timeout=60_000)  # Plotly's script loads on first use
        assert points.count() == len(analysis.val.labels) + len(analysis.test.labels)
        expect(page.get_by_text("No photos selected yet.")).to_be_visible()
        page.locator("[data-testid='stPlotlyChart']").scroll_into_view_if_needed()
        # the point's own key, as the chart holds it: trace and index within the trace
        key = page.evaluate(
            """() => { const gd = document.querySelector('.js-plotly-plot');
                       return gd._fullData[0].customdata[0]; }"""
        )
        box = points.first.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        expect(page.get_by_text("1 photo(s) selected")).to_be_visible(timeout=30_000)
        split, row = key.split(":")
        name = Path(analysis.split(split).paths[int(row)]).name
        photos = page.locator(".st-key-explore_selected [data-testid='stImage']")
        expect(photos.first).to_be_visible()
        assert name in " ".join(photos.all_inner_texts())
        assert page.locator("[data-testid='stException']").count() == 0
        photos.first.scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        page.screenshot(path=shots / "8-explore-click.png")

        # a box drawn over the whole map (the toolbar's box tool) selects every photo
        chart = page.locator("[data-testid='stPlotlyChart']")
        chart.scroll_into_view_if_needed()
        chart.hover()
        chart.locator(".modebar-btn[data-title='Box Select']").click()
        area = chart.locator("rect.nsewdrag").bounding_box()
        page.mouse.move(area["x"] + 2, area["y"] + 2)
        page.mouse.down()
        page.mouse.move(area["x"] + area["width"] - 2, area["y"] + area["height"] - 2, steps=10)
        page.mouse.up()
        total = len(analysis.val.labels) + len(analysis.test.labels)
        expect(page.get_by_text(f"{total} photo(s) selected")).to_be_visible(timeout=30_000)
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()

    keep = os.environ.get("FLORA_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    print(f"screenshots: {shots}")

"""The whole app in a real browser: Home -> Train (launch, watch the curve grow) -> Evaluate (click a
confusion cell, see its photos) -> Predict (upload, see the top-k). Screenshots go to the test's tmp
dir (and to $FLORA_SCREENSHOTS when set).

Uses Debian's chromium through Playwright's Python client; no browser is downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import FLOWERS, PROJECT_ROOT, link_subset, make_image_dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str:
    for candidate in (os.environ.get("FLORA_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if os.environ.get("FLORA_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()[-3000:]}")
    yield {"url": url, "data": data, "models": models, "tmp": tmp_path}
    process.terminate()
    process.wait(timeout=20)
    log.close()


def test_home_train_evaluate_predict_in_a_browser(server):
    from playwright.sync_api import expect, sync_playwright

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

        # Home
        page.goto(server["url"])
        expect(page.get_by_role("heading", name="Flora", level=1)).to_be_visible()
        expect(page.get_by_text("1 · Pick or add a dataset")).to_be_visible()
        no_exceptions()
        shot("1-home")

        # Train: a tiny run on images (no feature cache), so each epoch takes a moment and the curve grows
        page.locator("[data-testid='stSidebarNavLink']", has_text="Train").click()
        expect(page.get_by_role("tab", name="New run")).to_be_visible()
        page.get_by_role("tab", name="New run").click()
        page.get_by_text("None (random start)").click()
        size = page.locator("[data-testid='stSlider']", has_text="Image size (px)").get_by_role("slider")
        size.focus()
        for _ in range(5):  # 224 -> 64
            size.press("ArrowLeft")
        epochs = page.get_by_role("spinbutton", name="Head epochs (phase 1)")
        epochs.fill("12")
        epochs.press("Enter")
        patience = page.get_by_role("spinbutton", name="Early stopping patience (0 = off)")
        patience.fill("0")
        patience.press("Enter")
        page.get_by_text("Advanced").click()
        page.get_by_text("Frozen phase on cached features").click()
        expect(page.get_by_text("on images through the frozen ResNet-50")).to_be_visible()
        shot("2-train-form")
        page.get_by_role("button", name="Launch training").click()
        expect(page.get_by_text("Launched run")).to_be_visible(timeout=30_000)

        counts = []
        deadline = time.time() + 300
        while time.time() < deadline:
            points = page.evaluate(
                """() => [...document.querySelectorAll('.js-plotly-plot')]
                       .map(gd => (gd._fullData || []).filter(t => t.name === 'validation').map(t => t._length))
                       .flat()"""
            )
            if points:
                counts.append(points[0])
                if len(set(counts)) == 2:
                    shot("3-train-live")
            if page.get_by_text("Test accuracy").count() and page.get_by_text("Best epoch").count():
                break
            time.sleep(1)
        assert page.get_by_text("Test accuracy").count(), f"the run did not finish; validation points seen: {counts}"
        grown = sorted(set(counts))
        assert len(grown) >= 2 and grown[-1] == 12, f"the curve should grow live to 12 epochs: {counts}"
        no_exceptions()
        shot("4-train-done")

        # Evaluate: click the worst off-diagonal cell of the matrix
        page.locator("[data-testid='stSidebarNavLink']", has_text="Evaluate").click()
        expect(page.get_by_role("tab", name="Confusion matrix")).to_be_visible(timeout=30_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.js-plotly-plot')]"
            ".some(gd => (gd._fullData||[]).some(t => t.type === 'heatmap'))"
        )
        target = page.evaluate(
            """() => {
                const gd = [...document.querySelectorAll('.js-plotly-plot')]
                    .find(g => (g._fullData||[]).some(t => t.type === 'heatmap'));
                // _fullData: plotly.py ships arrays base64-encoded; plotly.js decodes them there
                const heat = gd._fullData[0], squares = gd._fullData[1];
                let best = null;  // the off-diagonal cell with most images, else the fullest cell
                heat.y.forEach((t, r) => heat.x.forEach((p, c) => {
                    const v = heat.z[r][c];  // null on a hidden diagonal
                    const score = v === null ? -1 : v + (t !== p ? 1e6 * (v > 0) : 0);
                    if (best === null || score > best.score) best = {t, p, v, score};
                }));
                const index = squares.x.findIndex((p, i) => p === best.p && squares.y[i] === best.t);
                return {true: best.t, predicted: best.p, count: best.v, index};
            }"""
        )
        assert target["count"] >= 1 and target["index"] >= 0, target
        squares = page.locator(".js-plotly-plot .scatterlayer .trace path.point")
        box = squares.nth(target["index"]).bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        what = "predicted correctly" if target["true"] == target["predicted"] else f"predicted as {target['predicted']}"
        heading = f"{target['true']} {what}: {int(target['count'])} test image(s)"
        expect(page.get_by_text(heading)).to_be_visible(timeout=30_000)
        page.get_by_text(heading).scroll_into_view_if_needed()
        gallery = page.locator("[data-testid='stImage'] img")
        expect(gallery.first).to_be_visible()
        assert gallery.count() >= min(int(target["count"]), 24)
        no_exceptions()
        shot("5-evaluate-cell")

        # Predict: upload one real photo
        page.locator("[data-testid='stSidebarNavLink']", has_text="Predict").click()
        photo = next(p for p in sorted((server["data"] / "flowers").rglob("*")) if p.is_file())
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(photo.resolve()))
        expect(page.get_by_text("Most likely")).to_be_visible(timeout=180_000)  # first load imports the framework
        expect(page.get_by_text("decode + forward pass")).to_be_visible()
        no_exceptions()
        shot("6-predict")
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
                    "() => { const n = document.querySelector(\"[data-testid='stSidebarNav']\"); "
                    "return n ? n.innerText : '' }"
                )
            )
            time.sleep(0.03)
        listed = " | ".join(text.replace("\n", " ") for text in seen if text)
        assert "common" not in listed and "streamlit app" not in listed, listed
        expect(page.get_by_role("heading", name="Evaluate", level=1)).to_be_visible(timeout=60_000)
        navigation = page.locator("[data-testid='stSidebarNav']")
        expect(navigation).to_contain_text("Home", timeout=30_000)
        expect(page.get_by_text("No finished run yet")).to_be_visible()
        browser.close()

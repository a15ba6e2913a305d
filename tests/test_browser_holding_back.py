"""Issue 42's page parts in a real browser, as a newcomer uses them: Evaluate's "When to answer" (move a class's
slider, read the trade-off, save), Robustness (the cost, then measure in the background and see the drop), the
Model card, and Predict's "Answer only when sure" on an uploaded photo. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import os

import pytest

from core.bench.common import free_port
from core.bench.server_cpu import CHROMIUM_ARGS, wait_healthy
from tests.conftest import copy_run_and_dataset
from tests.test_browser import chromium_path, start_streamlit

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(trained_run, tmp_path):
    """`streamlit run` over a copy of the shared run and its dataset (this test saves into the run)."""
    copied = copy_run_and_dataset(trained_run, tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "FLORA_DATA_DIR": str(copied["data_root"]),
        "FLORA_MODELS_DIR": str(copied["models_root"]),
        "PYTHONUNBUFFERED": "1",
    }
    process = start_streamlit(port, env, tmp_path / "streamlit.log", "--browser.gatherUsageStats", "false")
    try:
        wait_healthy(port)
    except RuntimeError:
        process.kill()
        pytest.fail(f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()[-3000:]}")
    yield {"url": f"http://127.0.0.1:{port}", "tmp": tmp_path, **copied}
    process.terminate()
    process.wait(timeout=20)


def test_when_to_answer_robustness_card_and_answering_only_when_sure(server):
    from playwright.sync_api import expect, sync_playwright

    from core.results.evaluation import robustness
    from core.results.probabilities import class_thresholds
    from core.runs.store import RunStore

    expect.set_options(timeout=120_000)
    shots = server["tmp"] / "screenshots"
    shots.mkdir()
    run = RunStore(server["models_root"]).get(server["run_id"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)

        def no_exceptions() -> None:
            errors = page.locator("[data-testid='stException']")
            assert errors.count() == 0, errors.all_inner_texts()

        page.goto(f"{server['url']}/evaluate")
        expect(page.get_by_role("heading", name="Evaluate", level=1)).to_be_visible()
        page.get_by_role("tab", name="When to answer").click()
        expect(page.get_by_role("heading", name="A threshold per class")).to_be_visible()
        slider = page.get_by_role("slider").nth(1)  # the first class's (0: the error level)
        slider.focus()
        for _ in range(5):  # from 1/k (no threshold) up: it runs over the probabilities the run gives
            page.keyboard.press("ArrowRight")
        # the value the slider shows above its thumb (its element carries no aria-valuenow in this Streamlit)
        shown = page.get_by_test_id("stSlider").filter(has_text="Threshold for").first
        value = float(shown.get_by_test_id("stSliderThumbValue").inner_text())
        expect(page.get_by_text(f"at {class_thresholds.figure(value)}: ", exact=False).first).to_be_visible()
        no_exceptions()
        page.screenshot(path=shots / "1-class-slider.png")
        page.get_by_role("button", name="Save these thresholds with the run").click()
        expect(page.get_by_text("Saved: ", exact=False).first).to_be_visible()
        assert class_thresholds.load(run.directory) == {run.classes[0]: round(value, 4)}

        page.get_by_role("tab", name="Robustness").click()
        expect(page.get_by_text("Cost before it starts", exact=False)).to_be_visible()
        page.get_by_role("button", name="Measure robustness").click()
        expect(page.get_by_text("Clean accuracy")).to_be_visible(timeout=600_000)  # the task ended, the page redrew
        no_exceptions()
        page.screenshot(path=shots / "2-robustness.png")
        report = robustness.load(run.directory)
        assert report is not None and len(report.accuracy) == 15

        page.get_by_role("tab", name="Model card").click()
        expect(page.get_by_role("heading", name=f"Model card: flora-{run.run_id}")).to_be_visible()
        expect(page.get_by_role("heading", name="Robustness")).to_be_visible()  # it reads what was just measured
        no_exceptions()
        page.screenshot(path=shots / "3-card.png")

        page.locator("[data-testid='stSidebar']").get_by_role("link", name="Predict").click()
        expect(page.get_by_role("heading", name="Predict", level=1)).to_be_visible()
        photo = next(p for p in sorted((server["dataset"] / run.classes[0]).iterdir()))
        page.locator("input[type='file']").set_input_files(str(photo))
        expect(page.get_by_text("likely", exact=False).or_(page.get_by_text("Best guess")).first).to_be_visible()
        page.get_by_text("Answer only when sure").click()
        expect(page.get_by_text("At most this share wrong", exact=False)).to_be_visible()
        held = page.get_by_text("Held back", exact=False).first
        given = page.get_by_text("Answers when its top probability", exact=False)
        expect(held.or_(given)).to_be_visible()
        no_exceptions()
        page.screenshot(path=shots / "4-predict-only-when-sure.png")
        browser.close()

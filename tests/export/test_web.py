"""The web export: its folder and zip, and the page in Chromium answering like `python -m core predict`.

The browser test serves the exported folder on loopback, blocks every request outside it, classifies the run's
test photos and 20 held-out photos through the page's file input and through `window.floraClassify`, and
compares each answer with `core predict` (top-1, every probability within 1e-3, the prediction set, the
"none of these" flag).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.bench.server_cpu import CHROMIUM_ARGS
from core.export.npm import ORT_WEB, NpmError, NpmPackage, fetch
from core.export.web import MODEL_JSON
from core.results.probabilities import conformal
from core.results.probabilities.calibration import run_temperature
from core.runs.files import run_files
from core.runs.store import RunStore
from tests.conftest import TRAINED_COLORS, copy_run, write_class_image

TOLERANCE = 1e-3
# (size, suffix): shrunk, reduced first (side >= 6x the square), enlarged, as large as the square, small JPEGs
HELD_OUT = [
    ((48, 40), ".png"),
    ((300, 260), ".png"),
    ((30, 28), ".png"),
    ((60, 50), ".jpg"),
    ((41, 70), ".png"),
    ((37, 37), ".png"),
    ((500, 400), ".png"),
    ((52, 44), ".jpg"),
]
LARGE_JPEG = ((100, 90), ".jpg")  # shorter side >= 2x the square: Flora decodes it at half scale inside libjpeg


def held_out_photos(folder: Path, count: int = 20, extra: list | None = None) -> list[Path]:
    """`count` photos of the run's classes, none of them seen in training, in the shapes that take each path."""
    rng = np.random.default_rng(11)
    names = ["blue", "crimson", "green", "red"]
    folder.mkdir(parents=True, exist_ok=True)
    specs = [HELD_OUT[k % len(HELD_OUT)] for k in range(count)] + list(extra or [])
    photos = []
    for k, (size, suffix) in enumerate(specs):
        c = k % len(names)
        path = folder / f"{names[c]}_{k:02d}{suffix}"
        write_class_image(path.with_suffix(".png"), TRAINED_COLORS[c], size, rng)
        if suffix == ".jpg":
            with Image.open(path.with_suffix(".png")) as image:
                image.save(path, quality=90)
            path.with_suffix(".png").unlink()
        photos.append(path)
    return photos


def fit_sets(run_dir: Path, classes: list[str], temperature: float) -> conformal.ConformalSets:
    """Prediction sets for the copied run, calibrated on synthetic probabilities (its 8 test photos are too few):
    what the page must reproduce is the sets' arithmetic at the stored thresholds, one per class."""
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, len(classes), n)
    probabilities = rng.dirichlet(np.ones(len(classes)) * 0.6, n)
    probabilities[np.arange(n), labels] += 0.8
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    sets = conformal.fit(
        probabilities[:200],
        labels[:200],
        [f"calibration/{i}.png" for i in range(200)],
        classes,
        probabilities[200:],
        labels[200:],
        level=0.9,
        temperature=temperature,
    )
    conformal.save(sets, run_dir)
    return sets


@pytest.fixture(scope="module")
def web_export(trained_run, tmp_path_factory):
    """The shared run copied, given prediction sets, and exported as a web page."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("exports run on the TensorFlow backend")
    from core.export.run import export_run

    base = tmp_path_factory.mktemp("web")
    models = copy_run(trained_run["models_root"], base / "models")
    store = RunStore(models)
    run = store.get(trained_run["run_id"])
    sets = fit_sets(run.directory, run.classes, run_temperature(run))
    record = export_run(run, "web", base / "site" / "web")
    return {"record": record, "folder": base / "site" / "web", "store": store, "run": run, "sets": sets, "base": base}


def test_the_folder_holds_the_page_the_runtime_and_the_run_s_answers(web_export):
    folder, run, sets = web_export["folder"], web_export["run"], web_export["sets"]
    record = web_export["record"]
    assert record["passed"] and record["verification"]["max_abs_diff"] <= 1e-4
    for name in ("index.html", "flora.js", "page.js", "model.onnx", MODEL_JSON, "card.html", "README.md"):
        assert (folder / name).is_file(), name
    for name in ORT_WEB.files:
        assert (folder / "vendor" / Path(name).name).is_file(), name
    settings = json.loads((folder / MODEL_JSON).read_text())
    assert settings["classes"] == run.classes
    assert settings["temperature"] == pytest.approx(run_temperature(run))
    assert settings["image_size"] == run.train_config.image_size
    assert settings["sets"]["by_class"] == sets.by_class
    for level in (80, 90, 99):
        cut = np.asarray(sets.cut(level / 100), dtype=float)
        stored = np.asarray([np.inf if v is None else v for v in np.atleast_1d(settings["sets"]["cuts"][str(level)])])
        np.testing.assert_allclose(stored, np.atleast_1d(cut))
    assert settings["ood"]["method"] in ("energy", "mahalanobis")
    assert settings["ood"]["scale"] is not None and settings["ood"]["server_method"]
    if settings["ood"]["server_method"] != settings["ood"]["method"]:  # the page says which it uses, and why
        words = settings["ood"]["summary"]
        assert "This page uses" in words and "Flora's own server uses" in words
    card = (folder / "card.html").read_text()
    assert run.run_id in card and all(name in card for name in run.classes)
    with zipfile.ZipFile(record["zip"]) as archive:
        names = set(archive.namelist())
    assert {"web/index.html", "web/flora.js", "web/model.onnx", "web/vendor/ort-wasm-simd-threaded.wasm"} <= names


def test_the_page_names_no_address_outside_its_folder(web_export):
    folder = web_export["folder"]
    page = (folder / "index.html").read_text()
    assert "default-src 'self'" in page  # the browser itself refuses anything from elsewhere
    for name in ("index.html", "flora.js", "page.js"):
        text = (folder / name).read_text()
        assert "https://" not in text and "http://" not in text.replace("http://localhost:8000/", ""), name


def test_a_tarball_that_does_not_match_its_pin_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FLORA_NPM_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no npm: only the cache can answer
    package = NpmPackage("left-pad", "1.3.0", "sha512-" + base64.b64encode(b"\0" * 64).decode(), ("index.js",))
    (tmp_path / package.tarball).write_bytes(b"not the package")
    with pytest.raises(NpmError, match="npm is not installed"):
        fetch(package)


# ---------------------------------------------------------------------------------------------------- in Chromium


def _serve(root: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _core_predict(store: RunStore, run_id: str, folder: Path) -> dict[str, dict]:
    """`core predict --json` of the folder, through the CLI's `main` in this process (the page is the subject)."""
    from core.cli import main

    argv = ["predict", run_id, str(folder), "--json", "--top-k", "4", "--set-level", "0.9"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([*argv, "--models-dir", str(store.root)])
    assert code == 0, printed.getvalue()[-2000:]
    rows = json.loads(printed.getvalue())["results"]
    return {Path(row["path"]).name: row for row in rows}


def _serve_with_the_pages_check(run, method: str) -> None:
    """Where the run's server picked a method the page does not compute (kNN, the picture's statistics), core
    predict is made to use the page's, on this test's copy of the run: the page's score is then the server's."""
    files = run_files(run)
    summary = json.loads(files.reference_summary.read_text())
    summary["method"] = method
    files.reference_summary.write_text(json.dumps(summary))


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_answers_like_core_predict_with_the_network_blocked(web_export, tmp_path):
    run, store = web_export["run"], web_export["store"]
    photos_dir = tmp_path / "photos"
    test_photos = []
    from core.results.evaluation.metrics import Evaluation

    for rel in Evaluation.load(run.directory).paths[:8]:
        source = Path(run.dataset_path) / rel
        target = photos_dir / f"test_{source.parent.name}_{source.name}"
        photos_dir.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        test_photos.append(target)
    photos = test_photos + held_out_photos(photos_dir, 20, extra=[LARGE_JPEG])
    ood = json.loads((web_export["folder"] / MODEL_JSON).read_text())["ood"]
    _serve_with_the_pages_check(run, ood["method"])
    expected = _core_predict(store, run.run_id, photos_dir)

    cards, by_api, outside, trust = classify_in_chromium(web_export["folder"], photos, tmp_path)
    assert outside == []
    assert [card["name"] for card in cards.values()] == [p.name for p in photos]  # in the order chosen
    settings = json.loads((web_export["folder"] / MODEL_JSON).read_text())
    the_page_says_how_far_to_trust_it(trust, settings, run)
    for photo in photos:
        row, card, answer = expected[photo.name], cards[photo.name], by_api[photo.name]
        want = {row[f"label_{i}"]: row[f"probability_{i}"] for i in range(1, 5)}
        assert card["error"] is None, (photo.name, card["error"])
        if photo.stem.endswith(f"_{20:02d}"):  # the large JPEG: decoded whole in the browser, so close, not equal
            assert answer["approximate_decode"] and answer["label"] == row["label_1"], photo.name
            continue
        assert not answer["approximate_decode"], photo.name
        for got in (card["probabilities"], answer["probabilities"]):
            assert max(got, key=got.get) == row["label_1"], photo.name
            assert max(abs(got[name] - p) for name, p in want.items()) <= TOLERANCE, (photo.name, got, want)
        assert answer["label"] == card["label"] == row["label_1"]
        assert answer["prediction_set"]["classes"] == row["prediction_set"].split(" | "), photo.name
        assert card["shown_name"] == photo.name
        the_set_is_said_with_what_it_measured(card, settings)
        score = answer["none_of_these"]["score"]
        assert score == pytest.approx(row["ood_score"], rel=1e-3, abs=1e-3), photo.name
        if abs(score - ood["threshold"]) > 1e-3 * max(1.0, abs(ood["threshold"])):
            assert answer["none_of_these"]["flag"] == row["out_of_distribution"], photo.name


def the_set_is_said_with_what_it_measured(card: dict, settings: dict) -> None:
    """The set's sentence: the coverage measured on held-out photos at its level (not the level itself), 'cannot
    tell' for a set of every class, 'one class' for one."""
    sets, text = settings["sets"], card["set_text"]
    measured = sets["measured"]["90"]["coverage"]
    assert f"held the right class {100 * measured:.1f}% of the time" in text, text
    assert f"{sets['held_out_photos']} held-out test photos" in text, text
    if len(card["set"]) == len(settings["classes"]):
        assert "cannot tell" in text, text
    elif len(card["set"]) == 1:
        assert f"one class, {card['set'][0]}." in text, text


def the_page_says_how_far_to_trust_it(trust: str, settings: dict, run) -> None:
    """Once near the top: test accuracy beside chance, a random start said plainly, the check's own summary."""
    from core.results.evaluation.metrics import Evaluation

    evaluation = Evaluation.load(run.directory)
    assert f"Test accuracy {100 * evaluation.accuracy():.1f}% on {len(evaluation.labels)} photos" in trust, trust
    assert f"guessing would get {100 / len(run.classes):.1f}%" in trust, trust
    assert settings["trust"]["random_start"] and "started from random weights" in trust, trust
    assert settings["ood"]["summary"] in trust, trust
    assert ("misses most images from elsewhere" in trust) == settings["ood"]["weak"], trust


def classify_in_chromium(folder: Path, photos: list[Path], tmp_path: Path) -> tuple[dict, dict, list[str], str]:
    """The page served from `folder` on loopback with every other request blocked: each photo through the file
    input (the cards, in the page's order) and through floraClassify (`by_api`), the requests that were refused,
    and what the page says near its top about how far to trust it."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import chromium_path

    server = _serve(folder.parent)
    base = f"http://127.0.0.1:{server.server_address[1]}/{folder.name}/"
    outside: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page()

            def only_the_folder(route):
                if route.request.url.startswith(base):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_folder)
            page.goto(base + "index.html")
            page.wait_for_selector("body[data-ready]", state="attached", timeout=90_000)
            assert page.get_attribute("body", "data-ready") == "true", page.inner_text("#status")
            page.set_input_files("#photos", [str(p) for p in photos])
            for i in range(1, len(photos) + 1):
                page.wait_for_selector(f".result[data-done]:nth-of-type({i})", state="attached", timeout=120_000)
            cards = page.evaluate(
                "() => Array.from(document.querySelectorAll('.result')).map(c => ({name: c.dataset.name, "
                "label: c.dataset.label, probabilities: JSON.parse(c.dataset.probabilities || '{}'), "
                "error: c.dataset.error || null, shown_name: c.querySelector('.file').textContent, "
                "set: JSON.parse(c.dataset.set || '[]'), set_text: (c.querySelector('.set') || {}).textContent}))"
            )
            trust = page.inner_text("#trust")
            by_api = {}
            for photo in photos:
                kind = "jpeg" if photo.suffix == ".jpg" else "png"
                source = f"data:image/{kind};base64,{base64.b64encode(photo.read_bytes()).decode()}"
                by_api[photo.name] = page.evaluate(
                    "async (src) => { const img = new Image(); img.src = src; await img.decode(); "
                    "return await floraClassify(img, {topK: 4, level: 0.9}); }",
                    source,
                )
            page.screenshot(path=str(tmp_path / "web-page.png"), full_page=True)
            browser.close()
    finally:
        server.shutdown()
    return {card["name"]: card for card in cards}, by_api, outside, trust


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_averages_the_views_where_the_run_uses_them(trained_run, tmp_path):
    """A run whose validation said test-time augmentation helps: the page averages the same four views."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("exports run on the TensorFlow backend")
    from core.export.run import export_run
    from core.results.probabilities import tta

    models = copy_run(trained_run["models_root"], tmp_path / "models")
    store = RunStore(models)
    run = store.get(trained_run["run_id"])
    figures = tta.SplitFigures(8, 0.5, 0.6, 0.5, 0.6, 1.0, 0.9, 1, 0, 0.5)
    report = tta.TTAReport(list(tta.VIEWS), figures, figures, True, "helped (set by the test)", 0.01, 0.04, 1.0, "-")
    tta.save(report, {}, run.directory)
    export_run(run, "web", tmp_path / "site" / "web")
    settings = json.loads((tmp_path / "site" / "web" / MODEL_JSON).read_text())
    assert settings["tta"]["views"] == len(tta.VIEWS)
    photos = held_out_photos(tmp_path / "photos", 8)
    expected = _core_predict(store, run.run_id, tmp_path / "photos")
    cards, by_api, outside, _ = classify_in_chromium(tmp_path / "site" / "web", photos, tmp_path)
    assert outside == []
    for photo in photos:
        row, answer = expected[photo.name], by_api[photo.name]
        want = {row[f"label_{i}"]: row[f"probability_{i}"] for i in range(1, 5)}
        assert answer["views"] == len(tta.VIEWS)
        for got in (cards[photo.name]["probabilities"], answer["probabilities"]):
            assert max(abs(got[name] - p) for name, p in want.items()) <= TOLERANCE, (photo.name, got, want)


@pytest.mark.slow
@pytest.mark.browser
def test_the_photo_buttons_wait_for_the_model_and_early_photos_wait_too(web_export, tmp_path):
    """While the model loads (held back here), the photo buttons, the camera and the level are off and the status
    says so; a photo given to floraClassify meanwhile is answered once the model comes, not refused."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import chromium_path

    folder = web_export["folder"]
    photo = held_out_photos(tmp_path / "photos", 1)[0]
    server = _serve(folder.parent)
    base = f"http://127.0.0.1:{server.server_address[1]}/{folder.name}/"
    held: list = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page()

            def hold_the_model(route):
                if not route.request.url.startswith(base):
                    route.abort()
                elif route.request.url.endswith(".onnx"):
                    held.append(route)
                else:
                    route.continue_()

            page.route("**/*", hold_the_model)
            page.goto(base + "index.html")
            for _ in range(600):  # the runtime's WebAssembly first, then the model (held)
                if held:
                    break
                page.wait_for_timeout(100)
            assert held, "the page asked for no model"
            assert page.get_attribute("body", "data-ready") is None
            for control in ("#photos", "#snapshot", "#camera", "#level"):
                assert page.is_disabled(control), control
            assert "Loading the model" in page.inner_text("#status")
            source = f"data:image/png;base64,{base64.b64encode(photo.read_bytes()).decode()}"
            page.evaluate(
                "(src) => { const img = new Image(); img.src = src; window.early = img.decode()"
                ".then(() => floraClassify(img, {topK: 2})).then(a => a.label, e => 'error: ' + e.message); }",
                source,
            )
            page.wait_for_timeout(300)
            for route in held:
                route.continue_()
            page.wait_for_selector("body[data-ready]", state="attached", timeout=90_000)
            assert page.get_attribute("body", "data-ready") == "true", page.inner_text("#status")
            for control in ("#photos", "#snapshot", "#camera", "#level"):
                assert page.is_enabled(control), control
            label = page.evaluate("() => window.early")
            assert label in web_export["run"].classes, label
            browser.close()
    finally:
        server.shutdown()


def test_the_page_keeps_the_runs_check_where_it_can_and_else_takes_the_better_of_its_two():
    from types import SimpleNamespace

    from core.export.web import page_method

    evidence = {
        "energy": {"selection_caught": 0.4, "selection_auroc": 0.8},
        "mahalanobis": {"selection_caught": 0.7, "selection_auroc": 0.7},
        "knn + image statistics": {"selection_caught": 0.9, "selection_auroc": 0.9},
    }
    assert page_method(SimpleNamespace(method="energy", evidence=evidence)) == "energy"
    assert page_method(SimpleNamespace(method="knn + image statistics", evidence=evidence)) == "mahalanobis"
    assert page_method(SimpleNamespace(method="image statistics", evidence={})) == "energy"  # nothing known: cheaper

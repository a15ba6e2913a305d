"""Predict page: upload photos, see the top-k; a file that is not an image gets a clear message."""

from __future__ import annotations

import numpy as np

from pages.ui.navigation import page_file
from tests.pages.conftest import texts


def test_upload_photos_and_a_bad_file(app, workspace):
    at = app("predict")
    red = next((workspace["dataset"] / "blue").iterdir()).read_bytes()
    at.file_uploader(key="predict_upload").set_value(
        [("flower.png", red, "image/png"), ("notes.png", b"shopping list", "image/png")]
    ).run()
    assert not at.exception
    shown = texts(at)
    assert "Most likely **" in shown
    assert "**notes\\.png** could not be classified: not an image" in shown  # the name as text (escaped)
    assert "ms (decode + forward pass)" in shown
    assert "**'Looks like no class it knows'**: Flora flags a photo unlike everything" in shown  # what it is
    assert "of the run's test photos (its false alarms). How: " in shown  # and how far the flag can be trusted
    assert "Classes: " in shown and not any("classes this model knows" in e.label for e in at.expander)
    chart = at.get("plotly_chart")[0]
    assert '"orientation":"h"' in chart.proto.spec.replace(" ", "")


def _bars(at) -> list[str]:
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return spec["data"][0]["y"]


def test_top_k_follows_the_slider(app, workspace):
    at = app("predict")
    photo = next((workspace["dataset"] / "green").iterdir()).read_bytes()
    at.file_uploader(key="predict_upload").set_value(("g.png", photo, "image/png")).run()
    assert len(_bars(at)) == 3  # the default
    at.slider(key="predict_top_k").set_value(2).run()
    bars = _bars(at)
    assert len(bars) == 2 and set(bars) <= {"blue", "crimson", "green", "red"}
    at.slider(key="predict_top_k").set_value(4).run()
    assert sorted(_bars(at)) == ["blue", "crimson", "green", "red"]


def _bar_values(at) -> list[float]:
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return spec["data"][0]["x"]


def test_calibrated_or_raw_probabilities_and_where_it_looked(app, workspace):
    from core.results.probabilities.calibration import stored_temperature

    temperature = stored_temperature(workspace["store"].run_dir(workspace["run_id"]))
    assert temperature is not None and temperature != 1.0, temperature
    at = app("predict")
    photo = next((workspace["dataset"] / "green").iterdir()).read_bytes()
    at.file_uploader(key="predict_upload").set_value([("flower.png", photo, "image/png")]).run()
    assert "**Calibrated** probabilities" in texts(at)
    calibrated = _bar_values(at)
    at.toggle(key="predict_raw").set_value(True).run()
    assert "**not calibrated**" in texts(at)
    raw = _bar_values(at)
    assert raw != calibrated
    assert abs(max(raw) - max(calibrated)) > 1e-4  # the top class's probability moves with T
    assert len(at.get("image")) == 1  # only the uploaded photo: no heatmap until "Where it looked" opens
    key = f"predict_looked_0_{len(photo)}"
    at.session_state[key] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [e.proto.imgs[0].caption for e in at.get("image") if e.proto.imgs]
    assert any("(logit " in c for c in captions), captions


def test_80_percent_means_80_percent_only_where_the_calibration_supports_it(app, workspace, tmp_path):
    """Before: "'80%' means right about 80% of the time" with T fitted on 36 photos and an ECE interval of 0-0.17,
    which the Evaluate page words carefully. Predict now gives the same caveats with the figures."""
    import json

    from core.results.probabilities import calibration, calibration_words
    from tests.conftest import copy_run

    models = copy_run(workspace["models"], tmp_path / "models")
    run_dir = models / workspace["run_id"]
    stored = run_dir / "calibration.json"
    data = json.loads(stored.read_text())
    data["val_images"], data["val_per_class"] = 36, 9.0  # the walk's figures: few validation photos
    data["after"].update(ece=0.05, ece_low=0.0, ece_high=0.17, mce=0.257)
    stored.write_text(json.dumps(data))
    cal = calibration.load(run_dir)
    at = app("predict", models_dir=models)
    photo = next((workspace["dataset"] / "green").iterdir()).read_bytes()
    at.file_uploader(key="predict_upload").set_value([("flower.png", photo, "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    said = next(c.value for c in at.caption if c.value.startswith("**Calibrated** probabilities"))
    assert "so that '80%' means right about 80% of the time" not in said
    assert "Whether '80%' means right about 80% of the time is not established here" in said
    assert "the calibration error (ECE) is 0.050, 95 % interval 0.000-0.170" in said
    assert "the worst confidence bin is off by 0.257" in said
    for caveat in calibration_words.caveats(cal):  # the very sentences the Evaluate page's reading gives
        assert caveat in said
    assert "With only 9 validation photos per class the temperature is uncertain" in said
    assert "reaches above 0.1" in said
    data["val_per_class"] = 300.0  # enough photos, a tight interval: the claim stands, with its figures
    data["after"].update(ece=0.02, ece_low=0.01, ece_high=0.04, mce=0.06)
    stored.write_text(json.dumps(data))
    at.run()
    said = next(c.value for c in at.caption if c.value.startswith("**Calibrated** probabilities"))
    assert "so that '80%' means right about 80% of the time: on " in said and "0.010-0.040" in said


def test_a_tiny_image_is_warned_about_and_many_photos_keep_their_cards(app, workspace):
    """Before: a 1-pixel image got 'Most likely bees (70.5%)' with no warning; four or more photos lost
    calibration, 'Where it looked' and 'Wrong?'; the error column was cut off."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(buffer, "PNG")
    at = app("predict")
    at.file_uploader(key="predict_upload").set_value([("dot.png", buffer.getvalue(), "image/png")]).run()
    assert any("This photo is only 1x1 px, far below the 32 px" in w.value for w in at.warning)
    photos = sorted((workspace["dataset"] / "green").iterdir())[:4]
    files = [(p.name, p.read_bytes(), "image/png") for p in photos] + [("notes.png", b"x", "image/png")]
    at.file_uploader(key="predict_upload").set_value(files).run()
    assert not at.exception
    table = next(frame.value for frame in at.dataframe if "error" in frame.value.columns)
    assert len(table) == 5 and "warning" in table.columns
    from pages.ui.plain import md

    cards = [e for e in at.expander if e.label.startswith(md(photos[0].name))]  # a file name reads as text
    assert cards and "Calibrated" in texts(at)  # the toggle applies to the cards
    assert sum(1 for e in at.expander if "looked" in e.label) == 4  # Grad-CAM per readable photo
    # a photo that looks like none of the classes says so in its card's heading, not 'tulip (58%)' (walk 41)
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(noise, "PNG")
    at.file_uploader(key="predict_upload").set_value([*files[:4], ("noise.png", noise.getvalue(), "image/png")]).run()
    heading = next(e.label for e in at.expander if e.label.startswith(md("noise.png")))
    assert heading.startswith(md("noise.png") + ": looks like none of the classes (best guess "), heading
    assert at.selectbox(key=f"predict_feedback_label_0_{len(files[0][1])}")  # "Wrong? It is ..." per photo


def test_a_model_of_many_classes_lists_them_all_in_a_searchable_table(app, workspace, tmp_path):
    import json

    from tests.conftest import copy_run

    run_dir = copy_run(workspace["store"].run_dir(workspace["run_id"]), tmp_path / "models" / workspace["run_id"])
    config = json.loads((run_dir / "config.json").read_text())
    config["classes"] = [f"species_{i:03d}" for i in range(30)]  # the list only: nothing is predicted here
    (run_dir / "config.json").unlink()  # a hard link to the shared run's file: replace, do not write through
    (run_dir / "config.json").write_text(json.dumps(config))
    at = app("predict", models_dir=tmp_path / "models")
    assert any(e.label == "The 30 classes this model knows" for e in at.expander)
    assert at.dataframe[0].value["class"].tolist() == config["classes"]
    assert "Classes: " not in texts(at)


def test_the_model_people_mean_is_the_one_production_serves(app, workspace, tmp_path):
    """Issue 32: with a production alias, Predict starts on its run (not the newest) and says which it is."""
    from core.runs.store import RunStore
    from core.serving.aliases import AliasStore
    from tests.conftest import copy_run

    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    copy_run(models / workspace["run_id"], models / "feed0000beef")
    newest, other = [run.run_id for run in RunStore(models).list()][:2]
    before = app("predict", models_dir=models)  # walk 51: without the alias, the newest run, and that said
    assert before.selectbox(key="predict_run").value == newest
    assert "No run is called *production* yet, so this page opens on the run you last picked" in texts(before)
    AliasStore(models).set("production", other)
    at = app("predict", models_dir=models)
    assert not at.exception
    assert at.selectbox(key="predict_run").value == other
    assert "The run *production* points at" in texts(at)
    assert at.selectbox(key="predict_run").format_func(other).startswith("production → ")
    at.selectbox(key="predict_run").set_value(newest).run()
    assert f"Not the production model: *production* points at run {other}." in texts(at)
    # walk 54: the run studied on another page is the one this page opens on, before production
    studied = app("evaluate", models_dir=models)
    studied.selectbox(key="evaluate_run").set_value(newest).run()
    studied.switch_page(page_file("predict"))
    studied.run()
    assert studied.selectbox(key="predict_run").value == newest
    assert f"Not the production model: *production* points at run {other}." in texts(studied)


def _store_with_sets_and_views(workspace, tmp_path, helped: bool):
    """A copy of the workspace's run with prediction sets at 80% and test-time augmentation measured."""
    import json

    from core.results.probabilities import conformal, tta
    from tests.conftest import copy_run

    models = copy_run(workspace["models"], tmp_path / "models")
    run_dir = models / workspace["run_id"]
    run = workspace["store"].__class__(models).get(workspace["run_id"])
    tta.measure(run, workspace["data"])
    report = json.loads((run_dir / "tta.json").read_text())
    report["helped"] = helped
    (run_dir / "tta.json").write_text(json.dumps(report))
    conformal.fit_run(run_dir, level=0.8, method="aps")
    return models


def test_a_prediction_set_at_the_level_picked_and_the_views_said(app, workspace, tmp_path):
    models = _store_with_sets_and_views(workspace, tmp_path, helped=True)
    at = app("predict", models_dir=models)
    photo = next((workspace["dataset"] / "green").iterdir()).read_bytes()
    at.file_uploader(key="predict_upload").set_value([("flower.png", photo, "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "**Measured** on the" in shown and "sets at 90% held the right class" in shown
    assert "**At 90%:**" in shown  # the slider's default
    assert "On average over many photos like the calibration ones" in shown  # what the promise covers
    from core.results.probabilities import conformal

    sets = conformal.load(models / workspace["run_id"])
    line = next(t for t in shown.split("\n") if t.startswith("**At 90%:**"))
    size = 1 + line.count(" or ") if "any of the" not in line else len(sets.classes)
    record = sets.size_record(size, 0.9)
    if record:  # how the held-out sets of this set's size did at 90%, with "only" where less often than that
        right, photos = record
        assert f"were right {'only ' if right / photos < 0.9 else ''}{right} of {photos} times" in line
    assert "Each photo is classified in 4 views" in shown
    at.slider(key="predict_set_level").set_value(80).run()
    shown = texts(at)
    assert "**At 80%:**" in shown and "**At 90%:**" not in shown
    assert "sets at 80% held the right class" in shown  # what the held-out half showed at the level picked


def test_the_promise_is_an_average_beside_the_held_out_count_and_sets_of_every_class(app, workspace, tmp_path):
    """Before: 'sets at 90% hold the right class at least 9 times in 10' beside a held-out 89% on 18 photos, and
    sets that held every class (no answer) on 61% of photos shown only as a mean set size."""
    import json

    models = _store_with_sets_and_views(workspace, tmp_path, helped=False)
    stored = models / workspace["run_id"] / "conformal.json"
    data = json.loads(stored.read_text())
    data["by_level"]["90"] = {"coverage": 16 / 18, "mean_size": 2.8, "by_size": {"1": [5, 7], "4": [11, 11]}}
    stored.write_text(json.dumps(data))  # the walk's figures: 16 of 18 right, 11 of 18 sets of all 4 classes
    at = app("predict", models_dir=models)
    photo = next((workspace["dataset"] / "green").iterdir()).read_bytes()
    at.file_uploader(key="predict_upload").set_value([("flower.png", photo, "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "at least 9 times in 10" not in shown and "hold the right class at least" not in shown
    assert "**The promise**: on average over many photos like the calibration ones" in shown
    assert "sets at 90% hold the right class 9 times in 10, " in shown and "; not for each photo" in shown
    assert (
        "**Measured** on the 18 test photos this run never fitted anything on: sets at 90% held the right class "
        in shown
    )
    assert "16 of 18 (89%): below 90%, but within the sampling slack (on 18 photos a true 90% gives" in shown
    assert "on 61% of photos the set holds all 4 classes: the model cannot tell the classes apart there" in shown


def test_many_photos_carry_their_sets_in_the_table(app, workspace, tmp_path):
    models = _store_with_sets_and_views(workspace, tmp_path, helped=False)
    at = app("predict", models_dir=models)
    files = [
        (f"{i}.png", p.read_bytes(), "image/png") for i, p in enumerate(sorted(workspace["dataset"].rglob("*.png"))[:5])
    ]
    at.file_uploader(key="predict_upload").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert "prediction_set" in table.columns and table["prediction_set"].str.len().min() > 0
    assert "Each photo is classified once, as it is: test-time augmentation was measured" in texts(at)


def test_a_photo_unlike_the_runs_says_why_it_is_flagged(app, workspace, tmp_path):
    """Before: a flat grey frame got 'Most likely tulip', 'could be (at 90%): tulip' with the set's promise, and
    "answer only when sure" held it back only for the level; the flag did not say how often it fires on real photos."""
    import io

    import numpy as np
    from PIL import Image

    from core.results.probabilities import conformal
    from core.serving.holding_back import FOREIGN_REASON
    from pages.ui import plain
    from tests.conftest import copy_run

    models = copy_run(workspace["models"], tmp_path / "models")
    conformal.fit_run(models / workspace["run_id"], level=0.8, method="aps")  # 8 test photos: 80% at most
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    at = app("predict", models_dir=models)
    at.file_uploader(key="predict_upload").set_value(("noise.png", buffer.getvalue(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    flagged = [w.value for w in at.warning if "does not look like any class the model knows" in w.value]
    assert flagged, [w.value for w in at.warning]
    assert "** (its " in flagged[0] and "spreads " in flagged[0]  # the statistic that stands out, in words
    assert "A flag is not proof (this check also flags " in flagged[0] and "own test photos" in flagged[0]
    shown = texts(at)
    assert "Best guess **" in shown and "Most likely **" not in shown
    line = next(t for t in shown.split("\n") if t.startswith("**At 90%:**"))
    assert "not to be trusted: the photo looks like none of the classes" in line and "times in 10" not in line
    at.toggle(key="predict_only_sure").set_value(True).run()
    held = [w.value for w in at.warning if w.value.startswith("**Held back**")]
    assert held and held[0].startswith(f"**Held back**: {plain.md(FOREIGN_REASON)}"), [w.value for w in at.warning]


def test_saved_class_thresholds_are_counted_and_said_outside_the_guarantee(app, workspace, tmp_path):
    """Walk 42: a saved per-class threshold held photos back with no count in the summary, and with "answer only when
    sure" on, the guarantee's words described the level's threshold alone without saying so."""
    from core.results.probabilities import class_thresholds, selective
    from core.runs.store import RunStore
    from tests.conftest import copy_run
    from tests.pages.test_evaluate_holding_back import _weak_analysis

    models = copy_run(workspace["models"], tmp_path / "models")
    run = RunStore(models).get(workspace["run_id"])
    _weak_analysis(run.classes).save(run.directory)  # 600 test photos: a threshold at 50%
    strict = 0.9999
    class_thresholds.save(run.directory, {name: strict for name in run.classes}, run.classes)
    at = app("predict", models_dir=models)
    photos = sorted(workspace["dataset"].rglob("*.png"))[:5]
    files = [(f"{i}.png", p.read_bytes(), "image/png") for i, p in enumerate(photos)]
    at.file_uploader(key="predict_upload").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]

    def counts(threshold: float | None) -> tuple[int, int, str]:
        table = next(frame.value for frame in at.dataframe if "answered" in frame.value.columns)
        summary = next(m.value for m in at.markdown if m.value.startswith("**5 photos**"))
        held = int((table["answered"] == False).sum())  # noqa: E712 (the column holds True, False or "")
        foreign = table["out_of_distribution"] == True  # noqa: E712
        level_answers = table["probability_1"] >= (threshold or 0.0)
        alone = int((~foreign & level_answers & (table["probability_1"] < strict)).sum())
        return held, alone, summary

    held, alone, summary = counts(None)
    assert held > 0 and f", {held} held back" in summary
    assert (f"({alone} by your saved per-class thresholds alone)" in summary) == (alone > 0), summary

    at.toggle(key="predict_only_sure").set_value(True).run()
    at.select_slider(key="predict_max_error").set_value(0.5).run()
    assert not at.exception, [e.value for e in at.exception]
    threshold = selective.run_selective(run.directory).threshold_at(0.5)
    assert threshold is not None
    notes = [i.value for i in at.info if "The guarantee covers the" in i.value]
    assert notes and notes[0].startswith(
        f"The guarantee covers the {selective.threshold_text(threshold)} threshold alone: your saved per-class "
        "thresholds ("
    )
    held, alone, summary = counts(threshold)
    assert f", {held} held back" in summary
    said = f"({alone} by your saved per-class thresholds alone, which the guarantee does not cover)"
    assert (said in summary) == (alone > 0), summary


def test_a_set_that_leaves_out_a_likelier_class_names_the_pair():
    """Walk 42: the 90% set 'tulip or sunflower' left out daisy (2.7%), likelier than sunflower (1.5%), and the
    caption only said such things can happen: the pair is named with its figures."""
    from pages.ui.predict.sets import skipped_words

    top = [("tulip", 0.958), ("daisy", 0.027), ("sunflower", 0.015)]
    said = skipped_words(top, ["tulip", "sunflower"])
    assert "It holds sunflower (1.5%) but not daisy (2.7%), which the model finds likelier" in said
    assert "each class has its own cut-off" in said
    assert skipped_words(top, ["tulip", "daisy"]) is None and skipped_words(top, ["tulip"]) is None

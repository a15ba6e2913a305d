"""The web export: a folder that classifies photos in the browser, offline, with the run's own answers.

    index.html, page.js, flora.css   the page: photos from a file input or the camera, top-k, sets, the warning
    flora.js                         `window.floraClassify(image)`: preprocessing, model, calibration, sets, check
    model.onnx                       the verified ONNX export, with the pooled features as a third output
    model.json                       classes, sizes, temperature, set thresholds, the out-of-distribution check
    reference.bin                    the Mahalanobis check's arrays (float32), when the run uses that check
    card.html                        what the run stored: data, settings, test figures, how far to trust it
    vendor/                          ONNX Runtime Web's WebAssembly build, from the npm registry (core.export.npm)
    README.md                        how to open it and how to embed floraClassify

ONNX Runtime Web runs the very ONNX file Flora verifies in onnxruntime (the same engine, compiled to
WebAssembly), so the page adds no converter of its own; TensorFlow.js would need its converter, whose
package pins TensorFlow 2.19, NumPy 2.1 and protobuf 5 (Flora has 2.21, 2.4 and 7): docs/PERFORMANCE.md.
A browser cannot read files beside a page opened from disk (file://), so the folder is opened through
any static web server; the page says so when it is opened from disk.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.export.npm import ORT_WEB, vendor
from core.fileio import write_json_atomic
from core.results.probabilities import conformal, tta
from core.results.probabilities.calibration import run_temperature
from core.runs.record import Run

PAGE_FILES = ("index.html", "page.js", "flora.js", "flora.css")
PAGE_SOURCE = Path(__file__).parent / "web_page"
MODEL_JSON = "model.json"
REFERENCE_FILE = "reference.bin"
CARD_FILE = "card.html"
VENDOR_DIR = "vendor"
WEB_VERSION = 1


def write_page(run: Run, out: Path, model_file: str) -> list[Path]:
    """Everything but the model: the page, the runtime, model.json, the reference, the card, the README."""
    written = []
    for name in PAGE_FILES:
        shutil.copyfile(PAGE_SOURCE / name, out / name)
        written.append(out / name)
    written += vendor(ORT_WEB, out / VENDOR_DIR)
    settings = answer_settings(run, model_file)
    ood, arrays = _reference(run)
    if ood is not None:
        settings["ood"] = ood
    if arrays is not None:
        (out / REFERENCE_FILE).write_bytes(arrays)
        written.append(out / REFERENCE_FILE)
    write_json_atomic(out / MODEL_JSON, settings)
    (out / CARD_FILE).write_text(card_html(run, settings))
    (out / "README.md").write_text(readme(run, settings))
    return [*written, out / MODEL_JSON, out / CARD_FILE, out / "README.md"]


def answer_settings(run: Run, model_file: str) -> dict[str, Any]:
    """model.json without the out-of-distribution part: what flora.js needs to answer as Flora's server does."""
    config = run.train_config
    name = run.dataset_name or "photos"
    used = tta.used_by(run.directory)
    return {
        "format": "flora-web",
        "version": WEB_VERSION,
        "run_id": run.run_id,
        "title": f"{name}: Flora classifier",
        "about": f"Run {run.run_id}, {len(run.classes)} classes, {config.image_size} px. Trained with Flora.",
        "classes": run.classes,
        "image_size": config.image_size,
        "cache_size": config.cache_size,
        "model_file": model_file,
        "input": "image",
        "temperature": run_temperature(run),
        "tta": None if used is None else {"views": len(used.views), "zoom": tta.ZOOM, "why": used.reason},
        "sets": _sets(run),
        "trust": _trust(run),
        "ood": None,
        "runtime": {"name": ORT_WEB.name, "version": ORT_WEB.version},
    }


def _sets(run: Run) -> dict[str, Any] | None:
    """The run's prediction sets as thresholds at every whole-percent level Predict offers (one, or one per class)."""
    sets = conformal.run_sets(run.directory)
    if sets is None:
        return None
    low, high = (round(x * 100) for x in conformal.LEVEL_RANGE)
    cuts = {}
    for percent in range(low, high + 1):
        cut = sets.cut(percent / 100)
        cut = np.asarray(cut, dtype=np.float64)
        values = [None if not np.isfinite(v) else float(v) for v in np.atleast_1d(cut)]
        cuts[str(percent)] = values if cut.ndim else values[0]
    return {
        "method": sets.method,
        "lam": sets.lam,
        "k_reg": sets.k_reg,
        "views": sets.views,
        "fitted_level": sets.level,
        "by_class": sets.by_class,
        "levels": list(range(low, high + 1)),
        "cuts": cuts,
        "held_out_coverage": sets.held_out.coverage,
        "held_out_photos": sets.held_out.photos,
        # measured on the held-out half at each level: {"90": {"coverage", "mean_size", "by_size": {"1": [right, n]}}}
        "measured": sets.by_level or {},
    }


def _trust(run: Run) -> dict[str, Any]:
    """What the page says once near its top about how far to trust it: test accuracy beside chance, and whether
    the model started from random weights (its confident answers are often wrong)."""
    from core.results.evaluation.metrics import Evaluation, EvaluationMissing  # heavy: sklearn

    try:
        evaluation = Evaluation.load(run.directory)
    except EvaluationMissing:
        accuracy, photos = None, 0
    else:
        accuracy, photos = evaluation.accuracy(), len(evaluation.labels)
    return {
        "accuracy": accuracy,
        "test_photos": photos,
        "chance": 1 / len(run.classes),
        "random_start": run.train_config.weights == "none",
    }


PAGE_METHODS = ("energy", "mahalanobis")  # the 'none of these' checks flora.js computes (from logits, features)


def _reference(run: Run) -> tuple[dict[str, Any] | None, bytes | None]:
    """The page's 'none of these' check: its method, scale, threshold and words, and for Mahalanobis its arrays.

    The page computes energy and Mahalanobis only: a run whose server picked the nearest training photos (kNN: a
    bank of every training photo's features, too big for a page) or the picture's statistics gets the better of
    the two on the same evidence, and its words say so (flora.js; the run's server keeps its own method)."""
    from core.results.probabilities.ood import METHOD_NAMES, WEAK_BELOW  # heavy: sklearn
    from core.results.probabilities.reference import Reference  # heavy: sklearn

    reference = Reference.load(run.directory)
    if reference is None:
        return None, None
    detector = reference.detector
    method = page_method(detector)
    ood: dict[str, Any] = {
        "method": method,
        "threshold": float(detector.thresholds[method]),
        "scale": list(detector.scales[method]) if method in detector.scales else None,  # (score - [0]) / [1]
        "summary": detector.summary() if method == detector.method else _page_summary(detector, method, METHOD_NAMES),
        "weak": detector.weak if method == detector.method else _caught(detector, method) < WEAK_BELOW,
        "server_method": detector.method,
    }
    if method != "mahalanobis":
        return ood, None
    m = detector.mahalanobis
    parts = {
        "pca_mean": m.projection.mean,
        "pca_components": m.projection.components,
        "class_means": m.means,
        "precision": m.precision,
    }
    blob, layout = bytearray(), {}
    for key, array in parts.items():
        data = np.ascontiguousarray(array, dtype="<f4")
        layout[key] = {"offset": len(blob), "length": int(data.size), "shape": list(data.shape)}
        blob += data.tobytes()
    ood.update({"file": REFERENCE_FILE, "arrays": layout})
    return ood, bytes(blob)


def page_method(detector) -> str:
    """The run's own method where the page computes it; else the better of the page's, by the evidence the run's
    method was picked on (foreign images caught on the selection set, then AUROC; equal: energy, the cheaper)."""
    if detector.method in PAGE_METHODS:
        return detector.method
    evidence = detector.evidence or {}

    def strength(method: str) -> tuple[float, float, int]:
        seen = evidence.get(method) or {}
        return (
            round(seen.get("selection_caught") or 0.0, 3),
            round(seen.get("selection_auroc") or seen.get("auroc_test_vs_foreign") or 0.0, 3),
            -PAGE_METHODS.index(method),
        )

    return max(PAGE_METHODS, key=strength)


def _caught(detector, method: str) -> float:
    return (detector.evidence.get(method) or {}).get("foreign_flagged_all") or 0.0


def _page_summary(detector, method: str, names: dict[str, str]) -> str:
    """Words for a page whose check is not the run's own: which it uses, what it caught, and why not the run's."""
    seen = detector.evidence.get(method) or {}
    measured = (
        f"it caught {seen['foreign_flagged_all']:.0%} of images from elsewhere that it was tried on and wrongly "
        f"flags {seen['test_flagged']:.0%} of the run's test photos"
        if seen.get("foreign_flagged_all") is not None and seen.get("test_flagged") is not None
        else "how often it catches images from elsewhere was not measured"
    )
    server = detector.evidence.get(detector.method) or {}
    theirs = (
        f" (it caught {server['foreign_flagged_all']:.0%})" if server.get("foreign_flagged_all") is not None else ""
    )
    return (
        f"This page uses {names[method]}: {measured}. Flora's own server uses {names[detector.method]}{theirs}, "
        "which needs what a page does not carry (the training photos' features, or the picture's statistics "
        "computed as Flora does), so the page's flags can differ from the server's."
    )


def card_html(run: Run, settings: dict[str, Any]) -> str:
    """The model's card: a short page of what the run stored (data, settings, test figures, its limits)."""
    from core.results.evaluation.metrics import Evaluation, EvaluationMissing  # heavy: sklearn

    e = html.escape
    config = run.train_config
    rows = [
        ("Run", run.run_id),
        ("Dataset", f"{run.dataset_name} ({run.dataset_images or '?'} photos)"),
        ("Classes", ", ".join(run.classes)),
        ("Input", f"{config.image_size} x {config.image_size} px, from a {config.cache_size} px centre square"),
        ("Backbone", f"{getattr(config, 'backbone', None) or 'resnet50'}, weights {config.weights}"),
        ("Training", f"{config.epochs} epochs head, {config.fine_tune_epochs} fine-tuning; seed {config.seed}"),
        ("Calibration", f"temperature {settings['temperature']:.3f} (probabilities are softmax(logits / T))"),
    ]
    figures = ""
    try:
        evaluation = Evaluation.load(run.directory)
    except EvaluationMissing:
        figures = "<p>No test figures were stored with this run.</p>"
    else:
        table = evaluation.per_class()
        rough = " So few photos give a rough figure." if len(evaluation.labels) < 100 else ""
        body = "".join(
            f"<tr><td>{e(str(r['class']))}</td><td>{r['precision']:.2f}</td><td>{r['recall']:.2f}</td>"
            f"<td>{int(r['support'])}</td></tr>"
            for _, r in table.iterrows()
        )
        figures = (
            f"<p>Test accuracy {evaluation.accuracy():.1%} on {len(evaluation.labels)} photos the model never trained "
            f"on.{rough}</p><table><tr><th>class</th><th>precision</th><th>recall"
            f"</th><th>test photos</th></tr>{body}</table>"
        )
    sets = settings["sets"]
    limits = []
    if sets:
        limits.append(
            f"Prediction sets ({e(sets['method'])}) held the right class {sets['held_out_coverage']:.0%} of the time "
            f"on held-out photos at the {sets['fitted_level']:.0%} level."
        )
    else:
        limits.append("No prediction sets: the run's test split was too small to fit them.")
    if settings.get("ood"):
        limits.append("'None of these': " + e(settings["ood"]["summary"]))
    else:
        limits.append("No 'none of these' check: the run has no out-of-distribution reference.")
    limits.append("It knows only these classes: a photo of anything else still gets one of them.")
    listed = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    items = "".join(f"<li>{text}</li>" for text in limits)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width, initial-scale=1"><title>Model card</title><link rel="stylesheet" '
        f'href="flora.css"></head><body><h1>Model card: {e(settings["title"])}</h1><table>{listed}</table>'
        f"<h2>On its test photos</h2>{figures}<h2>How far to trust it</h2><ul>{items}</ul>"
        '<p><a href="index.html">Back to the classifier</a></p></body></html>\n'
    )


def readme(run: Run, settings: dict[str, Any]) -> str:
    return f"""# {settings["title"]}

A web page that classifies photos in the browser with run {run.run_id} of Flora: nothing is uploaded.

## Open it

Browsers do not let a page opened from a file read the model beside it, so serve this folder with any static
web server and open it there:

    python3 -m http.server 8000     # in this folder, then open http://localhost:8000/

or put the folder on GitHub Pages, an S3 bucket or any web host. Everything the page needs is in this folder
(ONNX Runtime Web {ORT_WEB.version} is in vendor/); it fetches nothing from elsewhere.

## Use it from your own page

    <script src="vendor/ort.wasm.min.js"></script>
    <script src="flora.js"></script>
    <script>
      floraClassify(document.querySelector("img")).then(answer => console.log(answer));
    </script>

`floraClassify(image, {{level, topK}})` takes an `<img>`, a File or Blob, a `<canvas>` or an ImageBitmap and
resolves to `{{label, probability, top: [{{label, probability}}], probabilities: {{class: p}}, prediction_set,
none_of_these}}`. Probabilities are the run's calibrated ones (temperature {settings["temperature"]:.3f}).
`prediction_set` is `{{level, classes}}` when the run has prediction sets (levels 0.80-0.99), and
`none_of_these` is `{{flag, score, method}}` when it has an out-of-distribution check. An `<img>` from this
site is read again from its URL, so it is decoded exactly like a chosen file.

## How close to Flora

The photo is prepared as Flora prepares it (the centre square resized with Pillow's bicubic filter in its
fixed-point arithmetic, the centre {settings["image_size"]} px crop) and run through the same ONNX model
Flora verified. Flora's tests compare this page in Chromium with `python -m core predict` on the run's
photos: the same top class, probabilities within 0.001. One difference remains: Flora decodes a JPEG at
least twice the model's square at a reduced scale inside libjpeg, and a browser decodes it whole, so the
page averages blocks of the same size instead; such photos can differ slightly (the page says so).
"""

"""Make one export of a run, verify it, and write export.json beside it (TensorFlow backend).

`export_in_subprocess` does the same from any process (the app, a JAX session): it runs
`python -m core export ... --json` with KERAS_BACKEND=tensorflow and returns its JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.data.datasets import scan_dataset
from core.data.imaging import ImageError, load_for_model
from core.export import EXPORT_JSON, MIN_AGREEMENT, TOLERANCE, ExportError, check_request
from core.export.recipe import label_cuts, write_recipe
from core.export.store import zip_folder
from core.fileio import write_bytes_atomic, write_json_atomic
from core.paths import PROJECT_ROOT
from core.results import model_card
from core.runs.analysis import AnalysisMissing, RunAnalysis
from core.runs.files import run_files
from core.runs.record import Run

VERIFY_IMAGES = 48
CALIBRATION_IMAGES = 200

log = logging.getLogger("flora")


def verification_photos(run: Run, count: int = VERIFY_IMAGES) -> tuple[np.ndarray, list[bytes], str]:
    """Fixed photos to compare on: the first `count` of the run's test split (pixels, files, where from)."""
    config = run.train_config
    pixels, files = [], []
    for rel in _test_paths(run):
        path = Path(run.dataset_path) / rel
        try:
            data = path.read_bytes()
            pixels.append(load_for_model(data, config.image_size, config.cache_size))
            files.append(data)
        except (OSError, ImageError):
            continue
        if len(pixels) >= count:
            break
    if pixels:
        return np.stack(pixels), files, f"the run's test split ({len(pixels)} photos)"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(16, config.image_size, config.image_size, 3), dtype=np.uint8)
    return noise, [], "random pixels (the run's test photos are not readable here)"


def _test_paths(run: Run) -> list[str]:
    """The run's test photos (relative to its dataset): its evaluation's, or (a multi-label run, which keeps no
    evaluation yet) its analysis arrays'."""
    from core.results.evaluation.metrics import Evaluation, EvaluationMissing  # heavy: sklearn

    try:
        return list(Evaluation.load(run.directory).paths)
    except EvaluationMissing:
        pass
    try:
        return list(RunAnalysis.load(run.directory).test.paths)
    except (AnalysisMissing, OSError, ValueError, KeyError):
        return []


def calibration_photos(run: Run, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Photos of the run's dataset outside its test split, to calibrate int8 ranges (never the test photos)."""

    config = run.train_config
    test = set(_test_paths(run))
    index = scan_dataset(run.dataset_path)
    candidates = [e for e in index.entries if e.path not in test]
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(candidates))[: count * 2]
    pixels = []
    for i in chosen:
        try:
            pixels.append(load_for_model(index.absolute(candidates[int(i)]), config.image_size, config.cache_size))
        except ImageError:
            continue
        if len(pixels) >= count:
            break
    return np.stack(pixels)


def export_run(
    run: Run,
    fmt: str,
    out: str | os.PathLike,
    quantize: str | None = None,
    layout: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Export, verify, record. Returns the export.json contents.

    Raises:
        ExportError: a bad request, a failed conversion, or disagreement beyond tolerance.
    """
    import keras

    check_request(fmt, quantize, layout)
    if keras.backend.backend() != "tensorflow":
        raise ExportError("exports need the TensorFlow backend; use export_in_subprocess (the CLI does)")
    if not run.has_model:
        raise ExportError(f"run {run.run_id} has no saved model (state {run.state})")
    if fmt == "web" and run.multilabel:
        raise ExportError(
            f"run {run.run_id} is multi-label: the web page reads one class a photo (a softmax), not label lists yet; "
            "export onnx or tflite, whose predict.py gives each photo's labels against their thresholds"
        )
    final = Path(out).expanduser().resolve()
    final.mkdir(parents=True, exist_ok=True)
    # Everything is written to a staging folder beside `out` and moved in only once it passed: a failed export
    # leaves nothing (before: a 24 MB int8 file that had failed its own check stayed).
    out = final.parent / f".{final.name}.export.{os.getpid()}.{time.monotonic_ns()}.tmp"
    out.mkdir()
    try:
        record = _export_into(run, fmt, out, quantize, layout, name or f"flora-{run.run_id}")
        if run.has_evaluation:  # every bundle carries the run's card
            record["model_card"] = str(model_card.write(run, out / model_card.EXPORT_CARD))
        record = json.loads(json.dumps(record).replace(str(out), str(final)))  # the paths it will have
        if fmt == "web":
            record["zip"] = str(final.parent / f"{final.name}.zip")
        write_json_atomic(out / EXPORT_JSON, record)
        _publish(out, final)
        if fmt == "web":  # the folder as one file to hand on, beside it (written whole, then renamed)
            write_bytes_atomic(Path(record["zip"]), zip_folder(final))
        return record
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _publish(stage: Path, out: Path) -> None:
    """Move each entry of `stage` into `out`, replacing an entry of the same name (other files stay)."""
    for entry in stage.iterdir():
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)


def _export_into(run: Run, fmt: str, out: Path, quantize: str | None, layout: str | None, name: str) -> dict[str, Any]:
    import keras

    from core.export import convert, triton, verify  # heavy: keras
    from core.network.graph import inference_model  # heavy: keras
    from core.network.model import load_classifier  # heavy: keras

    started = time.perf_counter()
    cuts = label_cuts(run)  # a multi-label run's threshold per label, in its order (None: single-label)
    classifier = load_classifier(run_files(run).model)  # loaded once (a ResNet-50's load is seconds)
    model = inference_model(classifier)  # a fresh float32 copy, without augmentation: what the converters see
    pixels, files, source = verification_photos(run)
    # Called, not predict()-ed: a ResNet-50's forward over these few photos is ~0.6 CPU-s eagerly, where
    # predict_on_batch first traces it into a graph (~1.4 CPU-s), once for each of the two models here.
    reference = keras.ops.convert_to_numpy(model(pixels.astype(np.float32), training=False)[0])
    original = _graph_vs_saved_model(classifier, pixels, reference)
    del classifier
    precision = quantize or "float32"
    signatures: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    try:
        if fmt == "keras":
            written = convert.write_keras(model, out)
            runner, runtime = verify.keras_runner(written[0])
        elif fmt == "savedmodel":
            folder = out / name / "1" if layout == "tfserving" else out / "saved_model"
            written = convert.write_savedmodel(model, folder, run.classes, run.train_config.cache_size, cuts)
            runner, runtime, run_bytes = verify.savedmodel_runners(
                folder, convert.PIXELS_SIGNATURE, convert.BYTES_SIGNATURE
            )
            labelled = ", labels, thresholds" if cuts is not None else ""  # a multi-label run's
            signatures = {
                convert.BYTES_SIGNATURE: "image_bytes: encoded image files (DT_STRING) -> probabilities, logits"
                + (labelled or ", label"),
                convert.PIXELS_SIGNATURE: f"image: float32 [N, S, S, 3] 0-255 RGB -> probabilities, logits{labelled}",
            }
            if files:
                extra["bytes_signature"] = _check_bytes(run_bytes, files, reference, run.classes, cuts)
        elif fmt == "onnx":
            if layout == "triton":
                (staged,), extra["converter"] = _write_onnx(model, out / ".staging", pixels, reference)
                folder = triton.write_repository(staged, out / "model_repository", name, run.classes)
                shutil.rmtree(out / ".staging", ignore_errors=True)
                written = [folder]
                extra["triton"] = {"config": str(folder / "config.pbtxt"), "checked_against_onnx": True}
                runner, runtime = verify.onnx_runner(folder / "1" / "model.onnx")
            else:
                written, extra["converter"] = _write_onnx(model, out, pixels, reference)
                runner, runtime = verify.onnx_runner(written[0])
        elif fmt == "web":
            from core.export import web  # heavy: sklearn (the out-of-distribution reference)

            written, extra["converter"] = _write_onnx(model, out, pixels, reference, with_features=True)
            runner, runtime = verify.onnx_runner(written[0])
            written += web.write_page(run, out, written[0].name)
            runtime += f" (the page runs it on {web.ORT_WEB.name} {web.ORT_WEB.version})"
        elif quantize == "int8":
            written, runner, runtime, extra["calibration_photos"] = _int8(run, model, out, reference, pixels)
        else:
            written = convert.write_tflite(model, out, quantize, None)
            runner, runtime = verify.tflite_runner(written[0])
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"the {fmt} export failed: {type(e).__name__}: {e}") from e
    if fmt in ("onnx", "tflite") and layout is None:
        written += write_recipe(run, out, written[0].name)
    elif layout == "triton" and run.multilabel:  # the thresholds a Triton client reads the probabilities against
        written += write_recipe(run, out, str((written[0] / "1" / "model.onnx").relative_to(out)))
    figures = verify.compare(reference, runner, pixels, thresholds=None if cuts is None else np.asarray(cuts))
    tolerance, least = TOLERANCE[precision], MIN_AGREEMENT[precision]
    figures.update(
        {
            "source": source,
            "runtime": runtime,
            "precision": precision,
            "tolerance": tolerance,
            "min_top1_agreement": least,
            "graph_vs_saved_model_max_abs_diff": original,
        }
    )
    passed = figures["repeatable"] and figures["top1_agreement"] >= least
    if cuts is not None:  # what a multi-label run answers: the same label lists
        passed = passed and figures["label_list_agreement"] >= least
    if tolerance is not None:
        passed = passed and figures["max_abs_diff"] <= tolerance
    record = {
        "run_id": run.run_id,
        "name": name,
        "format": fmt,
        "quantize": quantize,
        "layout": layout,
        "classes": run.classes,
        "image_size": run.train_config.image_size,
        **({"task": "multilabel", "label_thresholds": dict(zip(run.classes, cuts, strict=True))} if cuts else {}),
        "files": [str(p) for p in written],
        "size_bytes": sum(_size(p) for p in written),
        "signatures": signatures,
        "verification": figures,
        "passed": bool(passed),
        "seconds": round(time.perf_counter() - started, 1),
        "created": time.time(),
        **extra,
    }
    if not passed:
        why = ""
        if precision == "int8":
            why = (
                f" with {extra.get('calibration_photos')} calibration photos (from outside the test split): 8-bit "
                "integers lose too much of this network's activations for its answers to stay the same. Use "
                "--quantize float16 (half the size, answers kept) or no quantization"
            )
        raise ExportError(
            f"the {fmt} export disagrees with the Keras model: max |diff| {figures['max_abs_diff']:.2e} "
            f"(tolerance {tolerance}), top-1 agreement {figures['top1_agreement']:.1%} (at least {least:.0%}), "
            + (
                f"the same label lists on {figures['label_list_agreement']:.1%} of the photos (at least {least:.0%}), "
                if cuts is not None
                else ""
            )
            + f"repeatable {figures['repeatable']}{why}. Nothing was kept."
        )
    return record


def _write_onnx(model, out: Path, pixels: np.ndarray, reference: np.ndarray, with_features: bool = False):
    """(model.onnx, its converter): Flora's own graph where it gives the Keras model's probabilities on the export's
    photos within the float32 tolerance, else tf2onnx's (core.export.convert.write_onnx)."""
    from core.export import convert, verify  # heavy: keras

    def agrees(path: Path) -> bool:
        try:
            runner, _ = verify.onnx_runner(path)
            figures = verify.compare(reference, runner, pixels)
        except Exception as e:  # ONNX Runtime could not load or run it: tf2onnx's graph instead
            log.warning("ONNX Runtime could not run Flora's ONNX graph (%s)", e)
            return False
        return figures["max_abs_diff"] <= TOLERANCE["float32"] and figures["top1_agreement"] >= MIN_AGREEMENT["float32"]

    return convert.write_onnx(model, out, with_features, accept=agrees)


def _int8(run: Run, model, out: Path, reference: np.ndarray, pixels: np.ndarray):
    """Full-integer TFLite, calibrated on photos from outside the test split; more of them when the first
    calibration does not keep the answers (at least MIN_AGREEMENT) and the dataset has more to give."""
    from core.export import convert, verify  # heavy: keras

    least = MIN_AGREEMENT["int8"]
    for count in (CALIBRATION_IMAGES, 4 * CALIBRATION_IMAGES):
        photos = calibration_photos(run, count)
        for old in out.glob("*.tflite"):
            old.unlink()
        written = convert.write_tflite(model, out, "int8", _representative(photos))
        runner, runtime = verify.tflite_runner(written[0])
        if verify.compare(reference, runner, pixels)["top1_agreement"] >= least or len(photos) < count:
            break
    return written, runner, runtime, len(photos)


def _graph_vs_saved_model(classifier, pixels: np.ndarray, reference: np.ndarray) -> float:
    """Max |diff| between the inference graph's probabilities (`reference`) and the saved classifier's own on the
    same pixels (should be ~1e-6)."""
    import keras

    own = keras.ops.convert_to_numpy(classifier(pixels.astype(np.float32), training=False))
    return float(np.max(np.abs(own - reference)))


def _check_bytes(
    run_bytes, files: list[bytes], reference: np.ndarray, classes: list[str], cuts: list[float] | None = None
) -> dict[str, Any]:
    """The bytes signature decodes with TensorFlow's decoder and resizer, which differ slightly from Flora's."""
    outputs = run_bytes(files)
    probabilities = outputs["probabilities"]
    if cuts is not None:  # a multi-label run: its `labels` are the probabilities read against the thresholds
        matches = bool(np.array_equal(outputs["labels"], probabilities >= np.asarray(cuts, dtype=np.float32)))
    else:
        labels = [label.decode() for label in outputs["label"]]
        matches = labels == [classes[i] for i in probabilities.argmax(axis=1)]
    return {
        "images": len(files),
        "max_abs_diff": float(np.max(np.abs(probabilities - reference))),
        "top1_agreement": float(np.mean(probabilities.argmax(axis=1) == reference.argmax(axis=1))),
        "labels_match_probabilities": matches,
        "note": "decoded and resized by TensorFlow inside the model (Flora's own loader uses Pillow/libjpeg-turbo)",
    }


def _representative(pixels: np.ndarray):
    def photos():
        for image in pixels:
            yield [image[None].astype(np.float32)]

    return photos


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


# On JAX (or PyTorch) every format still goes through TensorFlow: the SavedModel, ONNX (tf2onnx) and TFLite
# converters are TensorFlow's, and JAX-to-ONNX fails in onnxruntime. A JAX-only environment says so.
NO_TENSORFLOW = (
    "exports need TensorFlow (every format is converted and verified through it, also from a JAX session), and "
    "this environment has none: pip install tensorflow==2.21.0 (the CPU build is enough). Meanwhile the run's "
    "own Keras file, model.keras in its run folder, loads in Keras on any backend."
)


def tensorflow_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def export_in_subprocess(
    models_root: str | os.PathLike,
    run_id: str,
    fmt: str,
    out: str | os.PathLike,
    quantize: str | None = None,
    layout: str | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run `python -m core export ... --json` with the TensorFlow backend; its export.json contents.

    Raises:
        ExportError: the export failed or disagreed (the message carries the reason).
    """
    check_request(fmt, quantize, layout)
    if not tensorflow_installed():
        raise ExportError(NO_TENSORFLOW)
    command = [sys.executable, "-m", "core", "export", run_id, "--format", fmt, "--out", str(out), "--json"]
    command += ["--models-dir", str(models_root)]
    if quantize:
        command += ["--quantize", quantize]
    if layout:
        command += ["--layout", layout]

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=PROJECT_ROOT)
    try:
        result = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        result = None
    if done.returncode != 0 or result is None:
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        reason = lines[-1][7:] if lines else done.stderr.strip()[-1500:]
        raise ExportError(reason or f"the export process ended with status {done.returncode}")
    return result

"""What an export carries besides its model: `preprocessing.json` (how photos become the model's input, the classes,
the temperature, a multi-label run's threshold per label) and `predict.py` (core/export/predict_template.py), a
standalone script that reproduces `python -m core predict` with the runtime alone."""

from __future__ import annotations

from pathlib import Path

from core.fileio import write_json_atomic
from core.results.probabilities import class_thresholds, label_thresholds
from core.results.probabilities.calibration import run_temperature
from core.runs.record import Run

RECIPE_FILE = "preprocessing.json"
PREDICT_SCRIPT = "predict.py"


def write_recipe(run: Run, out: Path, model_file: str) -> list[Path]:
    """preprocessing.json (how photos become the model's input, the classes, the temperature) and predict.py,
    a standalone script that reproduces `python -m core predict` with the runtime alone."""

    config = run.train_config
    recipe = {
        "model_file": model_file,
        "classes": run.classes,
        "image_size": config.image_size,
        "cache_size": config.cache_size,
        "temperature": run_temperature(run),
        "input": "float32 [N, image_size, image_size, 3], RGB, 0-255 (not scaled: 'caffe' preprocessing is inside)",
        "resize": (
            "decode to RGB (EXIF orientation applied; transparency on white; 16-bit scaled to 8), resize the shorter "
            "side to cache_size around the centre square (bicubic, antialiased, when shrinking; bilinear when "
            "enlarging), then crop the centre image_size square"
        ),
        "outputs": {"logits": "[N, classes]", "probabilities": "[N, classes], softmax(logits) (T = 1)"},
        "calibrated": "softmax(logits / temperature): what Flora shows and serves",
        "class_thresholds": class_thresholds.load(run.directory),  # answers under their class's are held back
        "run_id": run.run_id,
    }
    if run.multilabel:  # a sigmoid per label; a photo has each label at or above its threshold (tuned on validation)
        recipe |= {
            "task": "multilabel",
            "outputs": {"logits": "[N, labels]", "probabilities": "[N, labels], sigmoid(logits), one per label"},
            "calibrated": "no temperature: the thresholds were tuned on these probabilities",
            "label_thresholds": dict(zip(run.classes, label_cuts(run), strict=True)),
        }
    recipe_path = out / RECIPE_FILE
    write_json_atomic(recipe_path, recipe)
    script = out / PREDICT_SCRIPT
    script.write_text((Path(__file__).parent / "predict_template.py").read_text())
    return [recipe_path, script]


def label_cuts(run: Run) -> list[float] | None:
    """A multi-label run's threshold for each of its labels, in its order (a label without one: the sigmoid's
    middle), as every predictor reads them; None for a single-label run."""
    if not run.multilabel:
        return None
    kept = label_thresholds.load(run.directory)
    return [kept.get(name, label_thresholds.UNTUNED) for name in run.classes]

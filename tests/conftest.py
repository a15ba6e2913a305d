"""Shared fixtures: tiny generated datasets, a subset of the real flower photos, a trained run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Plumbing tests build the tiny test backbone (core.network.backbones), ResNet-50's contract at a fraction of its
# cost; the processes they start inherit it. Tests about the network itself ask for the `resnet50` fixture
# (an empty value: no test backbone, so ResNet-50, also in a process that imports this file again).
os.environ.setdefault("FLORA_TEST_BACKBONE", "tiny")
# Which runtime runs a forward pass is measured once per machine and kept (core.runtimes.choice): tests keep
# theirs in a folder of the test runs, never in the person's ~/.cache, and reuse it between runs.
os.environ.setdefault("FLORA_MACHINE_CACHE", os.path.join(tempfile.gettempdir(), "flora-tests-machine-cache"))

# JAX compiles every jitted function with XLA (a model's weight initialisers, each train, eval and predict step):
# a JAX process training the tiny backbone spent 35 of its 50 CPU-s in 111 compilations, the same ones in every
# process and test. JAX's persistent compilation cache keeps the compiled programs on disk (keyed by the program,
# the devices and JAX's version), so the processes and tests after the first load them: 50 -> 15 CPU-s a process.
# The programs are the same; what runs is unchanged. Every one is kept (JAX's defaults skip those under 1 s). Set
# before `import core`, which turns a cache on for JAX processes in the machine cache (core.device.keep_jax_programs).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "flora-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")  # uncapped in /tmp: a capped one lists its folder a put

# OpenCV's import puts its library folder in front of LD_LIBRARY_PATH for the processes started after it. The whole
# suite's collection loads it before any test runs; loaded here too, a file run alone (the explanation tests, which
# import it lazily) does not count OpenCV's change as its first test's leak (the check in pytest_runtest_protocol).
import cv2  # noqa: F401
import numpy as np
import pytest
from PIL import Image

import core  # noqa: F401  (first: the test modules' imports of Keras and the rest then go through its finder)

JAX_TEST_CACHE = {  # the tests' JAX cache settings above, for the processes whose environment a test writes whole
    name: os.environ[name]
    for name in (
        "JAX_COMPILATION_CACHE_DIR",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
        "JAX_COMPILATION_CACHE_MAX_SIZE",
    )
}

# Keras on a backend other than TensorFlow sets TF_FORCE_GPU_ALLOW_GROWTH=true for good when it is imported
# (keras/src/backend/config.py); the whole suite's collection imports Keras before any test runs. Set here as Keras
# sets it, so a file that imports Keras lazily, run alone on JAX, does not count that as its first test's leak.
if os.environ.get("KERAS_BACKEND", "tensorflow").strip().lower() != "tensorflow":
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"

# XLA has LLVM optimise the machine code of every program it compiles at level 3 (by default): faster code, a dearer
# compile. A test's programs run a few steps on 32-64 px images, so the compile is what the test pays, and on a CI
# machine JAX's cache above starts empty: at level 0 the JAX subset took 235 CPU-s against 285 (cold cache, AMD EPYC,
# docs/PERFORMANCE.md). XLA's CPU fusion emitters (MLIR, on by default) then cost more than the rest of a tiny
# program's compile: without them, at level 1 (level 0 left the element-wise loops too slow for the tests that train
# 600 photos), the JAX subset from an empty cache took 220-247 CPU-s against 229-304, 40-57 less in each of two
# back-to-back pairs (Intel Xeon; "XLA's fusion emitters" there). The programs (XLA's HLO, every fusion and layout)
# are the same; only the code generator works less hard. Added to what XLA_FLAGS holds already (a test's virtual
# devices, a person's own flags); a flag already there keeps its value.
XLA_TEST_FLAGS = {"xla_backend_optimization_level": "1", "xla_cpu_use_fusion_emitters": "false"}


def xla_test_flags(flags: str = "") -> str:
    """`flags` with the tests' code-generation settings, each unless `flags` sets it already."""
    added = [f"--{name}={value}" for name, value in XLA_TEST_FLAGS.items() if name not in flags]
    return " ".join([flags, *added]).strip()


JAX_TEST_CACHE["XLA_FLAGS"] = xla_test_flags()  # for the processes whose environment a test writes whole
os.environ["XLA_FLAGS"] = xla_test_flags(os.environ.get("XLA_FLAGS", ""))

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _scan_streamlit_components_once() -> None:
    """Every new AppTest scans all ~300 installed distributions for Streamlit components (~0.4 s of CPU, and the
    suite makes hundreds of AppTests); the installed packages do not change while the tests run: scan once."""
    import functools

    from streamlit.components.v2 import manifest_scanner

    scan = manifest_scanner.scan_component_manifests
    if not hasattr(scan, "cache_info"):
        manifest_scanner.scan_component_manifests = functools.lru_cache(maxsize=1)(scan)


_scan_streamlit_components_once()


def _compile_app_scripts_once() -> None:
    """A Streamlit server compiles each script once (its Runtime's one ScriptCache: parse, magic, compile) and runs
    the bytecode on every rerun. AppTest gives every run two new caches, so each `at.run()` compiled
    streamlit_app.py and the page's view again (~25 ms for the Evaluate page, ~10% of the page tests' CPU). One
    cache for the process, as a server has; a script is never rewritten in place while the tests run."""
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test, local_script_runner

    shared = ScriptCache()
    for module in (app_test, local_script_runner):
        module.ScriptCache = lambda: shared


_compile_app_scripts_once()
# ../shared/data beside the project, unless FLORA_SHARED_DATA says where it is
SHARED_DATA = Path(os.environ.get("FLORA_SHARED_DATA") or PROJECT_ROOT.parent / "shared" / "data")
FLOWERS = SHARED_DATA / "flowers5-128"
OXFORD = SHARED_DATA / "oxford102"

# Distinct hues so that even a random-weights backbone separates the classes.
COLORS = [(220, 40, 40), (40, 190, 40), (40, 60, 220), (230, 220, 40), (200, 40, 200), (40, 210, 210)]


def make_image_dataset(
    root: Path,
    counts: dict[str, int],
    size: tuple[int, int] = (48, 40),
    seed: int = 0,
    suffix: str = ".png",
    colors: list[tuple[int, int, int]] | None = None,
) -> Path:
    """Write `counts[class]` small images per class folder: a class colour, a shape and noise."""
    rng = np.random.default_rng(seed)
    colors = colors or COLORS
    root.mkdir(parents=True, exist_ok=True)
    for k, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_class_image(folder / f"img_{i:03d}{suffix}", colors[k % len(colors)], size, rng)
    return root


def write_class_image(path: Path, color, size, rng) -> None:
    width, height = size
    base = np.empty((height, width, 3), dtype=np.float32)
    base[:] = color
    base += rng.normal(0, 18, size=base.shape)
    # a darker square somewhere, so images of a class are not all alike
    x, y = rng.integers(0, max(1, width // 2)), rng.integers(0, max(1, height // 2))
    base[y : y + height // 3, x : x + width // 3] *= 0.5
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB").save(path)


def link_subset(source: Path, target: Path, per_class: int) -> Path:
    """A dataset of symlinks to the first `per_class` photos of each class (the source stays read-only)."""
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        out = target / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for photo in sorted(class_dir.iterdir())[:per_class]:
            (out / photo.name).symlink_to(photo)
    return target


def require_shared(path: Path, what: str) -> Path:
    """`path` under the shared data (../shared/data, or FLORA_SHARED_DATA), or skip saying what is missing; with
    FLORA_REQUIRE_SHARED_DATA set (a machine that has the data and must check it) a missing file fails instead."""
    if not path.exists():
        message = f"{what} are not at {path} (../shared/data beside the project, or set FLORA_SHARED_DATA)"
        if os.environ.get("FLORA_REQUIRE_SHARED_DATA"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_flowers() -> Path:
    return require_shared(FLOWERS, "the shared flower photos (flowers5-128)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The tests of a module that share one of its module-scoped fixtures (a trained run, a server, a Ray cluster,
    an export) run on one worker, so the fixture is made once: handed out test by test, a module's tests landed on
    both workers and each built it (the MLflow server, the Ray cluster, the exports' runs twice). Runs before
    pytest-xdist's own hook, which turns the `xdist_group` marks into the work units `--dist loadgroup` schedules.
    A test with a group of its own keeps it."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        definitions = getattr(item, "_fixtureinfo", None)
        definitions = definitions.name2fixturedefs if definitions else {}
        scopes = {d.scope for name in item.fixturenames for d in definitions.get(name, ())}
        if scopes & {"module", "class"}:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True)
def _data_roots_for_tests(monkeypatch):
    """The app reads datasets only under its data roots (core.data.roots): in tests, the temporary folders
    the tests make datasets in, and the shared photos. A test about the roots sets its own."""
    import tempfile

    roots = [tempfile.gettempdir(), str(FLOWERS.parent.parent), str(PROJECT_ROOT.parent)]
    monkeypatch.setenv("FLORA_DATA_ROOTS", os.pathsep.join(roots))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test leaves the environment variables that Python and the frameworks read while they load as it found them,
    once its fixtures are torn down (monkeypatch puts back its own). A lasting change reaches every process the
    worker starts after it, and none of them then forks from the worker's warm launcher, whose key holds these
    variables: `import tf2onnx` setting TF_CPP_MIN_LOG_LEVEL=3 for good once made every job after the first ONNX
    export start the plain way. The variables are put back for the tests after it, and the session fails at its end
    naming each such test (its own reports are sent by then)."""
    from core.processes.launcher import import_variables

    before = import_variables(dict(os.environ))
    result = yield
    after = import_variables(dict(os.environ))
    if after != before:
        changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
        for name in set(after) - set(before):
            del os.environ[name]
        os.environ.update(before)
        _leaks.append(f"{item.nodeid} changed {', '.join(changed)}")
    return result


_leaks: list[str] = []


@pytest.fixture(autouse=True, scope="session")
def _no_test_changed_what_imports_read():
    yield
    assert not _leaks, "tests that changed variables the imports read for good:\n" + "\n".join(_leaks)


@pytest.fixture(autouse=True)
def _a_python_process_means_slow(request, monkeypatch):
    """A test that starts Flora in another Python process (a CLI call, a background run or task, a server
    process, an import check) is an end-to-end test: it must be marked slow, so `make test-fast`
    (-m "not slow and not browser") stays a quick inner loop. The job layer's own tests start bare
    `python -c "print(...)"` processes; those are allowed anywhere."""
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("browser"):
        return
    real_init = subprocess.Popen.__init__
    node = request.node.nodeid

    def check(args) -> None:
        words = [str(a) for a in args] if isinstance(args, list | tuple) else str(args).split()
        python = words and (words[0] == sys.executable or Path(words[0]).name.startswith("python"))
        if python and any(w == "core" or w.startswith("core.") or "import core" in w or "tests." in w for w in words):
            raise AssertionError(f"{node} starts Flora in a Python process ({args!r:.120}): mark it @pytest.mark.slow")

    def checked_init(self, args, *rest, **kwargs):
        check(args)
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked_init)
    from core.processes import launcher  # a job forked from the warm launcher is a Python process all the same

    real_spawn = launcher.spawn

    def checked_spawn(command, *rest, **kwargs):
        check(command)
        return real_spawn(command, *rest, **kwargs)

    monkeypatch.setattr(launcher, "spawn", checked_spawn)


@pytest.fixture(scope="session", autouse=True)
def _jobs_forked_from_a_warm_launcher(request):
    """The background jobs the tests launch (runs, tasks, servers, as the app launches them) fork from a warm
    launcher that imported Keras once for this worker (core.processes.launcher), as in the app: each starts ~4.5
    CPU-s sooner than a new process. Only the slow tests launch jobs (`_a_python_process_means_slow`): a selection
    with few of them (`make test-fast`, the JAX subset's 5, a few files) does without, as the launcher's own import
    would cost more than it saves."""
    from core.processes import keep_warm_launcher, launcher

    if sum(1 for item in request.session.items if item.get_closest_marker("slow")) >= 20:
        keep_warm_launcher()
    yield
    launcher.stop_all()


@pytest.fixture
def resnet50(monkeypatch) -> str:
    """The real ResNet-50 for this test (and the processes it starts): where the network is the subject."""
    from core.network.backbones import RESNET50, TEST_BACKBONE_ENV

    monkeypatch.setenv(TEST_BACKBONE_ENV, "")
    return RESNET50


def script_as_main(tmp_path, monkeypatch) -> Path:
    """A `__main__` like the app's (Streamlit makes `streamlit_app.py` the main module of its script runs) whose
    running leaves a mark: the file it returns."""
    import types

    marker = tmp_path / "main-ran"
    script = tmp_path / "app_script.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('ran')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    return marker


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """3 classes x 12 generated images."""
    return make_image_dataset(tmp_path / "tiny", {"red": 12, "green": 12, "blue": 12})


@pytest.fixture(scope="session")
def flowers_subset(tmp_path_factory) -> Path:
    """40 real photos per class of the 5 flower classes (symlinks into ../shared/data)."""
    source = require_flowers()
    return link_subset(source, tmp_path_factory.mktemp("flowers") / "flowers-subset", per_class=40)


# The one trained run every test that only reads a run shares (tests/ and tests/pages/): 4 classes where
# "red" and "crimson" share a colour, so the model confuses them and the matrix has mistakes to click.
TRAINED_CLASSES = {"blue": 14, "crimson": 14, "green": 14, "red": 14}
TRAINED_COLORS = [(40, 60, 220), (220, 40, 40), (40, 190, 40), (220, 40, 40)]


def _train_shared(tmp_path_factory, name: str, make_dataset, config) -> dict:
    """Train `config` on the dataset `make_dataset(data_root)` writes, in the foreground (a session fixture's run), and
    say where it lies. Under pytest-xdist the first worker to ask trains it and every worker gets its own copy: the
    tests write into a shared run's data folder (corrections, a person's remembered choices), and the run is the same
    one each worker would have trained (trained once, not once a worker: 3 runs, one of them 1,497 real photos)."""
    import fcntl
    import json

    from core import run_job
    from core.runs.store import RunStore
    from core.train import jobs

    def train(base: Path) -> dict:
        store = RunStore(base / "models")
        dataset = make_dataset(base / "data")
        submission = jobs.submit(store, dataset, config)
        run_job.execute(store, submission, base / "data", console=False, ingest_workers=1)
        return {"run_id": submission.run_id, "dataset": dataset.name}

    base = tmp_path_factory.mktemp(name)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        trained = train(base)
    else:  # the workers of this test run share the folder above their own
        built = tmp_path_factory.getbasetemp().parent / f"built-once-{name}"
        with open(f"{built}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait while the first trains
            if not (built / "built.json").exists():
                shutil.rmtree(built, ignore_errors=True)  # what a worker that failed half-way left
                trained = train(built)
                (built / "built.json").write_text(json.dumps(trained))  # last: a folder with it is whole
        trained = json.loads((built / "built.json").read_text())
        base.rmdir()
        shutil.copytree(built, base, symlinks=True, copy_function=_copy_file)
        point_run_at(base / "models" / trained["run_id"], base / "data" / trained["dataset"])  # this worker's copy
    run_id, dataset = trained["run_id"], base / "data" / trained["dataset"]
    return {
        "store": RunStore(base / "models"),
        "run_id": run_id,
        "dataset": dataset,
        "data_root": base / "data",
        "models_root": base / "models",
        "config": config,
    }


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One finished run at 32 px (the tiny test backbone, weights none) on data/colours, shared read-only.

    Returns a dict with store, run_id, dataset, data_root, models_root, config. A test that changes a run
    copies it first (`copy_run`).
    """
    from core.settings.config import TrainConfig

    config = TrainConfig(
        image_size=32, weights="none", epochs=4, batch_size=16, head=(32,), seed=2, early_stopping_patience=0
    )
    return _train_shared(
        tmp_path_factory,
        "trained",
        lambda data_root: make_image_dataset(data_root / "colours", TRAINED_CLASSES, seed=4, colors=TRAINED_COLORS),
        config,
    )


@pytest.fixture(scope="session")
def multilabel_run(tmp_path_factory):
    """One finished multi-label run at 32 px (the tiny test backbone, weights none) on data/mosaics: 2x2 mosaics
    of four colours, a label for each colour present, some with none; shared read-only like `trained_run`."""
    from core.settings.config import TrainConfig
    from tests.train.test_multilabel import make_mosaics

    config = TrainConfig(image_size=32, weights="none", epochs=3, batch_size=16, head=(16,), seed=1)
    return _train_shared(
        tmp_path_factory,
        "multilabel",
        lambda data_root: make_mosaics(data_root / "mosaics", n=60, size=40, seed=3),
        config,
    )


def _copy_file(source: str, target: str) -> str:
    """model.keras is hard-linked (Flora never writes into one: a new model replaces it by rename); the rest copied."""
    if Path(source).name == "model.keras":
        try:
            os.link(source, target)
            return target
        except OSError:
            pass  # another file system: copy it
    return shutil.copy2(source, target)


def copy_run(source: Path, target: Path) -> Path:
    """A run folder (or a whole run store) copied for a test that changes it, its model hard-linked."""
    shutil.copytree(source, target, copy_function=_copy_file)
    return target


def multilabel_pair(multilabel_run: dict, models_root: Path, second: str = "b" * 12, shuffled: float = 0.5) -> str:
    """The shared multi-label run and a copy of it under `second` in `models_root`, the copy a second random start on
    the same split (seed 7, the first's split seed) whose test scores are shuffled across the labels on `shuffled` of
    the photos (a worse ranker, found by its stored evaluation). Returns the first run's id."""
    import json

    first = multilabel_run["run_id"]
    source = multilabel_run["store"].run_dir(first)
    copy_run(source, models_root / first)
    target = copy_run(source, models_root / second)
    config_file = target / "config.json"
    stored = json.loads(config_file.read_text())
    stored["config"]["split_seed"] = stored["config"].get("split_seed") or stored["config"]["seed"]
    stored["config"]["seed"] = 7
    config_file.write_text(json.dumps(stored))
    arrays_file = target / "multilabel_evaluation.npz"
    arrays = dict(np.load(arrays_file))
    scores = arrays["probabilities"]
    rows = np.random.default_rng(0).permutation(len(scores))[: int(len(scores) * shuffled)]
    scores[rows] = np.roll(scores[rows], 1, axis=1)  # each of these photos' scores given to another label
    arrays["probabilities"] = scores
    np.savez_compressed(arrays_file, **arrays)
    (target / "multilabel_evaluation.json").unlink()  # its figures computed again from the arrays
    return first


def multilabel_every_photo(multilabel_run: dict, models_root: Path) -> tuple[Path, list[str]]:
    """The shared multi-label run copied into `models_root` with its first label's threshold set to 0 and its second's
    to 1e-7 (what a best-F1 tuning gives a label the model does not separate: walk 54's run B), its evaluation made
    again at them. Returns the copy's folder and those two labels."""
    import json

    from core.results.evaluation.multilabel import MultilabelEvaluation

    run_id = multilabel_run["run_id"]
    target = copy_run(multilabel_run["store"].run_dir(run_id), models_root / run_id)
    stored = json.loads((target / "label_thresholds.json").read_text())
    labels = list(stored["thresholds"])[:2]
    stored["thresholds"].update({labels[0]: 0.0, labels[1]: 1e-7})
    (target / "label_thresholds.json").write_text(json.dumps(stored))
    old = MultilabelEvaluation.load(target)
    cut = [stored["thresholds"][name] for name in old.classes]
    MultilabelEvaluation(old.probabilities, old.targets, old.classes, old.paths, cut, old.cache_positions).save(target)
    return target, labels


def point_run_at(run_dir: Path, dataset: Path) -> None:
    """A copied run reads `dataset` (a copy of its own): the dataset path its config.json keeps."""
    import json

    config_file = run_dir / "config.json"
    config = json.loads(config_file.read_text())
    config["dataset"]["path"] = str(dataset.resolve())
    config_file.write_text(json.dumps(config))


def copy_run_and_dataset(trained_run: dict, base: Path) -> dict:
    """The shared run and its dataset copied under `base` (data/, models/), the run's config pointing at the copy:
    for a test that writes into the dataset folder (unlabelled photos, labelled copies)."""

    data_root, models_root = base / "data", base / "models"
    dataset = data_root / Path(trained_run["dataset"]).name
    shutil.copytree(trained_run["dataset"], dataset)
    point_run_at(
        copy_run(trained_run["models_root"] / trained_run["run_id"], models_root / trained_run["run_id"]), dataset
    )
    return {"data_root": data_root, "models_root": models_root, "dataset": dataset, "run_id": trained_run["run_id"]}


@pytest.fixture(scope="session")
def flower_run(tmp_path_factory):
    """One finished run on two classes of real photos (daisy 764 and sunflower 733: every photo of both, symlinks into
    ../shared/data) at 64 px with the tiny test backbone and a random start: for what needs real pictures (the 'none
    of these' check's image statistics) and a test split large enough to calibrate on (225 photos, 113 held out: at
    150 photos a class, 22 calibration photos were too few for 'at most 20% wrong' to find a threshold; issue 42).
    A random start tops out near 80% right here, so whether 'at most 20% wrong' finds a threshold depends on the draw
    (at seed 1 TensorFlow's run found one at 19% at the nearest, 21% without augmented views): seed 5 finds one at 13%
    (TensorFlow) and 17% (JAX), a margin round-off does not cross. No augmented views: its tests read the clean
    photos' features, and on JAX the two views cost 40 of the run's 59 CPU-s. Shared read-only, like trained_run."""
    from core.settings.config import TrainConfig

    source = require_flowers()

    def two_flowers(data_root: Path) -> Path:
        dataset = data_root / "two-flowers"
        for name in ("daisy", "sunflower"):
            folder = dataset / name
            folder.mkdir(parents=True)
            for photo in sorted((source / name).iterdir()):
                (folder / photo.name).symlink_to(photo)
        return dataset

    config = TrainConfig(image_size=64, weights="none", epochs=6, batch_size=32, head=(32,), seed=5, augmented_views=0)
    return _train_shared(tmp_path_factory, "flower-run", two_flowers, config)


@pytest.fixture(autouse=True)
def _patient_browser_assertions(request):
    """Browser tests' `expect(...)` waits up to 30 s, not Playwright's 5: a loaded 2-core machine (CI's) can take
    longer than 5 s to draw a page's first heading, and a slow draw is not what these tests are about."""
    if request.node.get_closest_marker("browser"):
        from playwright.sync_api import expect

        expect.set_options(timeout=30_000)


# FLORA_TEST_CPU_REPORT=FILE: each test's CPU seconds (its own and its waited-for child processes'), a JSON line per
# test, for finding what makes the suite slow on any machine (wall times depend on the load, CPU seconds much less).
if os.environ.get("FLORA_TEST_CPU_REPORT"):
    import json
    import resource
    import time

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        def used() -> tuple[float, float, float, int]:
            """CPU seconds (this process's, its waited-for children's), of them in the kernel, and minor page faults
            (memory the kernel handed over afresh: each one a fault and a zeroed page)."""
            me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return (
                me.ru_utime + me.ru_stime,
                children.ru_utime + children.ru_stime,
                me.ru_stime + children.ru_stime,
                me.ru_minflt + children.ru_minflt,
            )

        before, wall = used(), time.perf_counter()
        yield
        cpu, children, kernel, faults = (now - then for now, then in zip(used(), before, strict=True))
        line = {
            "test": item.nodeid,
            "cpu_s": round(cpu + children, 2),
            "children_cpu_s": round(children, 2),
            "kernel_cpu_s": round(kernel, 2),
            "minor_faults": faults,
            "wall_s": round(time.perf_counter() - wall, 2),
            "worker": os.environ.get("PYTEST_XDIST_WORKER", ""),
            "ended": round(time.time(), 1),
        }
        with open(os.environ["FLORA_TEST_CPU_REPORT"], "a") as report:
            report.write(json.dumps(line) + "\n")

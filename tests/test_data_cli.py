"""`python -m core data ...`: results on stdout, progress and errors on stderr, exit codes 0/1/2."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from core.cli import main
from core.cli.data import ConsoleStageBar
from tests.conftest import OXFORD, PROJECT_ROOT, require_shared
from tests.datafixtures import FileServer, jpeg_bytes, oxford_source, tf_flowers_members, tree, write_tgz, write_zip


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def zip_of_classes(path, classes=("daisy", "rose"), per_class=3):
    entries = [
        (f"{c}/{i}.jpg", jpeg_bytes(10 * k + i, (40, 32))) for k, c in enumerate(classes) for i in range(per_class)
    ]
    return write_zip(path, entries)


def test_get_list_and_check_the_demo_set(tmp_path, capsys):
    data = str(tmp_path / "data")
    code, out, err = run(capsys, "get", "demo", "--data-dir", data, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["name"], result["classes"], result["images"]) == ("demo", 5, 300)

    code, out, _ = run(capsys, "list", "--data-dir", data, "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["name"] == "demo" and row["synthetic"] is True and row["split"] == "seeded"  # as the Dataset page says
    code, out, _ = run(capsys, "list", "--data-dir", data)
    assert "demo (synthetic)" in out and "Demo flowers (synthetic)" in out

    code, out, _ = run(capsys, "check", "demo", "--data-dir", data, "--json")
    report = json.loads(out)
    assert code == 0 and report["images"] == 300 and report["ok"] is True
    assert [f["kind"] for f in report["findings"]] == ["small_images"]
    from core.health.table import CACHE_VERSION

    cached = (tmp_path / "data" / ".cache").iterdir()
    assert any(p.name.endswith(f"-health-v{CACHE_VERSION}.npz") for p in cached)
    code, out, _ = run(capsys, "check", "demo", "--data-dir", data, "--image-size", "96")
    assert code == 0 and "no problems found" in out and "(cached)" in out

    code, out, _ = run(capsys, "get", "demo", "--data-dir", data)
    assert code == 0 and "demo: already present, 5 classes, 300 images" in out


def test_check_text_report(tmp_path, capsys):
    root = tmp_path / "set"
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            (root / name / f"{i}.jpg").write_bytes(jpeg_bytes(100 * k + i))
    (root / "a" / "copy.jpg").write_bytes((root / "b" / "0.jpg").read_bytes())
    (root / "b" / "broken.jpg").write_text("not a photo")
    code, out, _ = run(capsys, "check", str(root), "--data-dir", str(tmp_path / "data"))
    assert code == 0
    assert out.startswith("set: 14 images in 2 classes, 13 readable; no split of its own")
    assert "[error] conflicting_labels: 1 picture filed under two or more classes" in out
    assert "a/copy.jpg (a)  =  b/0.jpg (b)" in out
    assert "[warning] unreadable: 1 file cannot be decoded (1 not images)" in out
    assert "b/broken.jpg (not an image" in out
    assert "--json lists every file" in out.splitlines()[-1]


def test_import_zip_and_refuse_a_hostile_one(tmp_path, capsys):
    data = tmp_path / "data"
    code, out, err = run(
        capsys, "import", "zip", str(zip_of_classes(tmp_path / "ok.zip")), "garden", "--data-dir", str(data)
    )
    assert code == 0, err
    assert out.splitlines()[0] == "garden: imported, 2 classes, 6 images"

    evil = write_zip(tmp_path / "evil.zip", [("daisy/a.jpg", jpeg_bytes()), ("../evil.txt", b"x")])
    code, out, err = run(capsys, "import", "zip", str(evil), "evil", "--data-dir", str(data))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == ["error: archive entry '../evil.txt' climbs out of the archive with '..'"]
    assert tree(data) == [
        "garden",
        *sorted(f"garden/{p.relative_to(data / 'garden').as_posix()}" for p in (data / "garden").rglob("*")),
    ]

    code, _, err = run(capsys, "import", "zip", str(tmp_path / "ok.zip"), "garden", "--data-dir", str(data))
    assert code == 1 and "already exists" in err
    code, out, _ = run(capsys, "import", "zip", str(tmp_path / "ok.zip"), "garden", "--force", "--data-dir", str(data))
    assert code == 0


def test_import_oxford102(tmp_path, capsys):
    require_shared(OXFORD / "setid.mat", "the Oxford 102 label files")
    source = oxford_source(tmp_path / "src", image_ids=[1, 17, 28, 77], as_tgz=True)
    code, out, err = run(
        capsys, "import", "oxford102", str(source), "--name", "ox", "--data-dir", str(tmp_path / "d"), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["name"] == "ox" and result["images"] == 4
    assert result["split"] == {"train": 1, "val": 1, "test": 2}
    assert len(result["skipped"]) == 8189 - 4


def test_get_tf_flowers_from_a_url(tmp_path, capsys):
    server = FileServer().start()
    try:
        url = server.add("/flowers.tgz", write_tgz(tmp_path / "f.tgz", tf_flowers_members()).read_bytes())
        code, out, err = run(capsys, "get", "tf_flowers", "--url", url, "--data-dir", str(tmp_path / "data"))
        assert code == 0, err
        assert out.splitlines()[0] == "tf_flowers: imported, 5 classes, 10 images"
        assert "not the official file" in out
        code, _, err = run(
            capsys,
            "get",
            "tf_flowers",
            "--url",
            server.url + "/nope.tgz",
            "--force",
            "--data-dir",
            str(tmp_path / "data"),
        )
        assert code == 1 and err.strip() == f"error: download of {server.url}/nope.tgz failed: HTTP 404 Not Found"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["check", "nowhere"], 1, "error: dataset not found: nowhere"),
        (["import", "zip", "missing.zip", "x"], 1, "error: zip file not found: missing.zip"),
        (["import", "zip", "missing.zip", "../x"], 1, "error: dataset name must not contain slashes"),
        (["get", "mnist"], 2, "invalid choice"),
        ([], 2, "usage:"),
        (["import"], 2, "usage:"),
    ],
)
def test_errors_and_usage(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLORA_DATA_DIR", str(tmp_path / "data"))
    try:
        got = main(["data", *argv])
    except SystemExit as e:  # argparse exits on an invalid choice
        got = e.code
    _, err = capsys.readouterr()
    assert got == code and message in err


def test_data_dir_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLORA_DATA_DIR", str(tmp_path / "env-data"))
    code, out, err = run(capsys, "import", "zip", str(zip_of_classes(tmp_path / "z.zip")), "from-env", "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == str(tmp_path / "env-data" / "from-env")
    code, out, _ = run(capsys, "list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["from-env"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_one_line_per_stage_otherwise():
    plain = io.StringIO()
    progress = ConsoleStageBar(plain)
    for done in range(0, 101, 10):
        progress("downloading", done * 1000, 100_000)
    progress("unpacking", 1, 2)
    progress.close()
    assert plain.getvalue() == "flora: downloading...\nflora: unpacking...\n"

    terminal = _Terminal()
    progress = ConsoleStageBar(terminal)
    progress("downloading", 50 * 1024, 100 * 1024)
    progress.close()
    assert "downloading" in terminal.getvalue() and "50.0k" in terminal.getvalue()


@pytest.mark.slow
def test_end_to_end_in_a_subprocess(tmp_path):
    """stdout carries only the result; progress goes to stderr; the exit status says how it went."""
    env = {**os.environ, "FLORA_DATA_DIR": str(tmp_path / "data")}
    archive = zip_of_classes(tmp_path / "z.zip")

    def flora(*args):
        return subprocess.run(
            [sys.executable, "-m", "core", "data", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    imported = flora("import", "zip", str(archive), "sub", "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["images"] == 6
    checked = flora("check", "sub", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["dataset"] == "sub"
    assert "flora: hashing..." in checked.stderr
    failed = flora("check", str(tmp_path / "nowhere"))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.strip().splitlines()[-1].startswith("error: dataset not found")

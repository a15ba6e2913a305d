"""House rules that hold for every module: an import of Flora's own modules inside a function says why."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def function_level_own_imports(path: Path) -> list[str]:
    """'file:line' of each import of core/pages inside a function with no '# heavy:' reason: on its own lines, or on
    the line above the run of imports it belongs to."""
    lines = path.read_text().splitlines()
    found = []
    for function in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for body in _bodies(function):
            block_start = None
            for node in body:
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    block_start = None
                    continue
                block_start = block_start or node.lineno
                module = (
                    ("." if node.level else node.module or "")
                    if isinstance(node, ast.ImportFrom)
                    else node.names[0].name
                )
                above = lines[block_start - 2].strip() if block_start > 1 else ""
                said = "\n".join(lines[block_start - 1 : node.end_lineno]) + (above if above.startswith("#") else "")
                if module.startswith(("core", "pages", ".")) and "# heavy:" not in said:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return sorted(set(found))


def _bodies(function: ast.AST):
    """Every statement list inside a function (its body, and those of its ifs, withs, tries, loops)."""
    for node in ast.walk(function):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(statements, list) and statements and isinstance(statements[0], ast.stmt):
                yield statements
        for handler in getattr(node, "handlers", []):
            yield handler.body


def test_every_function_level_import_of_floras_own_modules_says_why():
    files = [*ROOT.glob("core/**/*.py"), *ROOT.glob("pages/**/*.py"), ROOT / "streamlit_app.py"]
    unexplained = [place for path in files for place in function_level_own_imports(path)]
    assert not unexplained, f"imports inside functions without a '# heavy: <reason>': {unexplained}"


def test_the_check_finds_an_unexplained_import(tmp_path, monkeypatch):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "def light():\n    from core import paths\n\n"
        "def heavy():\n    # heavy: keras\n    from core.network import model\n    from core.train import training\n\n"
        "def after():\n    x = 1  # heavy: not an import\n    from core import paths\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert function_level_own_imports(planted) == ["planted.py:11", "planted.py:2"]

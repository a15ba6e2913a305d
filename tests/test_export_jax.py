"""Issue 20.1: exports from a JAX-only environment say that they need TensorFlow, and what to use meanwhile."""

from __future__ import annotations

import pytest

from core.export import ExportError


@pytest.mark.backend_agnostic
def test_an_export_without_tensorflow_installed_says_so(monkeypatch, tmp_path):
    from core.export import run as export

    monkeypatch.setattr(export, "tensorflow_installed", lambda: False)
    for fmt in ("keras", "onnx"):
        with pytest.raises(ExportError, match=r"exports need TensorFlow .* pip install tensorflow==2\.21\.0"):
            export.export_in_subprocess(tmp_path, "0123abcd", fmt, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing started, nothing half-made

"""Predict page: upload photos, see the top-k; a file that is not an image gets a clear message."""

from __future__ import annotations

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
    assert "**notes.png** could not be classified: not an image" in shown
    assert "ms (decode + forward pass)" in shown
    chart = at.get("plotly_chart")[0]
    assert '"orientation":"h"' in chart.proto.spec.replace(" ", "")


def test_top_k_follows_the_slider(app, workspace):
    at = app("predict")
    photo = next((workspace["dataset"] / "green").iterdir()).read_bytes()
    at.slider(key="predict_top_k").set_value(4)
    at.file_uploader(key="predict_upload").set_value(("g.png", photo, "image/png")).run()
    spec = at.get("plotly_chart")[0].proto.spec
    for name in ("blue", "crimson", "green", "red"):
        assert f'"{name}"' in spec

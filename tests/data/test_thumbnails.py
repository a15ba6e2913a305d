"""Gallery thumbnails keep the aspect ratio and turn every readable image into RGB."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.imaging import ImageError
from core.data.thumbnails import placeholder, thumbnail


@pytest.mark.parametrize(
    "mode, color", [("RGB", (10, 200, 30)), ("L", 90), ("RGBA", (0, 0, 255, 0)), ("CMYK", (0, 0, 0, 0))]
)
def test_thumbnails_are_rgb_and_keep_aspect(tmp_path, mode, color):
    path = tmp_path / ("t.jpg" if mode == "CMYK" else "t.png")
    Image.new(mode, (400, 200), color).save(path)
    out = thumbnail(path, 100)
    assert out.shape == (50, 100, 3) and out.dtype == np.uint8


def test_unreadable_files_raise_image_error(tmp_path):
    (tmp_path / "x.jpg").write_text("no")
    with pytest.raises(ImageError):
        thumbnail(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="not found"):
        thumbnail(tmp_path / "missing.jpg")
    assert placeholder(64).shape == (64, 64, 3)

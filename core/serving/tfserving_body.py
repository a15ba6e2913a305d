"""TF Serving's REST body (`{"instances": [...]}` or `{"inputs": ...}`) turned into encoded files or pixel arrays.

Kept apart from the endpoints (numpy only) so a large body can be parsed in a helper process: see body_parsing.py.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from core.serving.v2 import ProtocolError


def tfserving_inputs(raw: bytes) -> tuple[list[tuple[str, bytes]], list[tuple[str, np.ndarray]], bool, Any, Any]:
    """(encoded files, pixel arrays, columnar?, the body's prediction_set and max_error) from a TF Serving body.

    Raises ProtocolError."""
    try:
        return _tfserving_parse(raw)
    except RecursionError:
        raise ProtocolError("the request's JSON is nested too deeply") from None


def _tfserving_parse(raw: bytes) -> tuple[list[tuple[str, bytes]], list[tuple[str, np.ndarray]], bool, Any, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed JSON in the request: {e}") from None
    if not isinstance(body, dict) or not ({"instances", "inputs"} & set(body)):
        raise ProtocolError('the request must be a JSON object with "instances" (or "inputs")')
    columnar = "instances" not in body
    items = body["inputs"] if columnar else body["instances"]
    if isinstance(items, dict):  # {"inputs": {"image_bytes": [...]}}
        if len(items) != 1:
            raise ProtocolError("send one named input (e.g. image_bytes)")
        items = next(iter(items.values()))
    if not isinstance(items, list):
        raise ProtocolError('"instances" must be a list')
    files, arrays = [], []
    for i, item in enumerate(items):
        kind, value = _instance(item, i)
        (files if kind == "file" else arrays).append((f"instances[{i}]", value))
    if files and arrays:
        raise ProtocolError("send either encoded images ({'b64': ...}) or pixel arrays, not both in one request")
    return files, arrays, columnar, body.get("prediction_set"), body.get("max_error")


def _instance(item: Any, position: int) -> tuple[str, Any]:
    """('file', bytes) or ('pixels', array) from one TF Serving instance."""
    if isinstance(item, dict):
        if len(item) == 1 and not isinstance(next(iter(item.values())), str | list):
            item = next(iter(item.values()))  # {"image_bytes": {"b64": ...}}
        if isinstance(item, dict) and isinstance(item.get("b64"), str):
            try:
                return "file", base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(f"instances[{position}]: 'b64' is not valid base64") from None
        if isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), list):
            item = next(iter(item.values()))  # {"pixels": [[[...]]]}
    if isinstance(item, list):
        try:
            array = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError):
            raise ProtocolError(f"instances[{position}]: pixel data must be numbers in nested lists") from None
        if array.ndim != 3 or array.shape[2] != 3:
            raise ProtocolError(f"instances[{position}]: pixels must be H x W x 3. Received shape {list(array.shape)}")
        if not np.isfinite(array).all():
            raise ProtocolError(f"instances[{position}]: pixel values must be finite numbers (NaN or infinity sent)")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ProtocolError(f"instances[{position}]: pixel values must be in 0-255")
        return "pixels", array.round().astype(np.uint8)
    raise ProtocolError(f'instances[{position}]: expected {{"b64": "<base64 image>"}} or an H x W x 3 pixel array')

"""The Open Inference Protocol (KServe v2 / Triton) on the wire: JSON tensors and the binary tensor
data extension, so `tritonclient.http` works with its default settings.

Binary extension: the header `Inference-Header-Content-Length: n` says the first n bytes of the
body are the JSON; the tensors whose `parameters.binary_data_size` is set follow, in order, as raw
little-endian bytes (a BYTES tensor: each element a 4-byte little-endian length, then its bytes).
A response carries outputs the same way when the request asked (`binary_data` per output, or
`binary_data_output` for all).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InvalidInput

HEADER = "Inference-Header-Content-Length"
DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


class ProtocolError(InvalidInput):
    """A request that does not follow the protocol; the message says what is wrong (HTTP 400)."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray  # BYTES: an object array of bytes


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool] = field(default_factory=dict)  # requested output -> binary?
    binary_output: bool = False  # binary_data_output: every output in binary
    parameters: dict[str, Any] = field(default_factory=dict)

    def wants(self, name: str) -> bool:
        return not self.outputs or name in self.outputs

    def binary(self, name: str) -> bool:
        return self.outputs.get(name, self.binary_output) if self.outputs else self.binary_output


def json_part(body: bytes, header_length: str | None) -> bytes:
    """The JSON at the start of an infer request body (all of it without the binary extension's header)."""
    try:
        length = int(header_length) if header_length is not None else len(body)
    except ValueError:
        return body  # parse_request says what is wrong with the header
    return body[: max(0, length)]


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode an infer request body. Raises ProtocolError (for any shape of wrong input, never another error)."""
    try:
        return _parse_request(body, header_length)
    except RecursionError:
        raise ProtocolError("the request's JSON is nested too deeply") from None


def _parse_request(body: bytes, header_length: str | None) -> InferRequest:
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER} must be an integer. Received: {header_length!r}") from None
        if not 0 < length <= len(body):
            raise ProtocolError(f"{HEADER} is {length} but the body has {len(body)} bytes")
        head, binary = body[:length], memoryview(body)[length:]
    else:
        head, binary = body, memoryview(b"")
    try:
        request = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed JSON in the request: {e}") from None
    if not isinstance(request, dict):
        raise ProtocolError("the request must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("the request needs a non-empty 'inputs' list")
    offset = 0
    tensors = []
    for i, spec in enumerate(inputs):
        tensor, used = _tensor(spec, i, binary[offset:])
        offset += used
        tensors.append(tensor)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data after the last input were not claimed")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' must be an object")
    outputs = {}
    requested = request.get("outputs") or []
    if not isinstance(requested, list):
        raise ProtocolError("'outputs' must be a list of {'name': ...} objects")
    for spec in requested:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProtocolError("each requested output needs a 'name'")
        output_parameters = spec.get("parameters") or {}
        if not isinstance(output_parameters, dict):
            raise ProtocolError(f"output {spec['name']!r}: 'parameters' must be an object")
        outputs[spec["name"]] = bool(output_parameters.get("binary_data", False))
    return InferRequest(
        id=request.get("id"),
        inputs=tensors,
        outputs=outputs,
        binary_output=bool(parameters.get("binary_data_output", False)),
        parameters=parameters,
    )


def _tensor(spec: Any, position: int, binary: memoryview) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise ProtocolError(f"input {position} must be an object with name, datatype, shape and data")
    name = spec.get("name")
    datatype = spec.get("datatype")
    shape = spec.get("shape")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"input {position} has no 'name'")
    if datatype not in DTYPES:
        raise ProtocolError(f"input {name!r}: unknown datatype {datatype!r}; one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers. Received: {shape!r}")
    count = math.prod(shape)
    parameters = spec.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise ProtocolError(f"input {name!r}: binary_data_size {size!r} exceeds the binary data sent")
        raw = bytes(binary[:size])
        data = _from_binary(raw, datatype, count, name)
        return Tensor(name, datatype, shape, data.reshape(shape) if datatype != "BYTES" else data), size
    if "data" not in spec:
        raise ProtocolError(f"input {name!r} has neither 'data' nor binary_data_size")
    data = _from_json(spec["data"], datatype, count, name)
    return Tensor(name, datatype, shape, data.reshape(shape) if datatype != "BYTES" else data), 0


def _from_binary(raw: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ProtocolError(f"input {name!r}: a BYTES element's 4-byte length is cut off")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise ProtocolError(f"input {name!r}: a BYTES element says {length} bytes but fewer remain")
            items.append(raw[offset : offset + length])
            offset += length
        if len(items) != count:
            raise ProtocolError(f"input {name!r}: the shape holds {count} elements but {len(items)} were sent")
        return _object_array(items)
    dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise ProtocolError(
            f"input {name!r}: the shape needs {count * dtype.itemsize} bytes of {datatype}, {len(raw)} were sent"
        )
    return np.frombuffer(raw, dtype=dtype).astype(DTYPES[datatype])


def _from_json(data: Any, datatype: str, count: int, name: str) -> np.ndarray:
    flat = list(_flatten(data))
    if len(flat) != count:
        raise ProtocolError(f"input {name!r}: the shape holds {count} elements but {len(flat)} were sent")
    if datatype == "BYTES":
        return _object_array([_json_bytes(item, name) for item in flat])
    try:
        array = np.asarray(flat, dtype=np.float64 if datatype.startswith("FP") else None)
        if array.dtype == object or (array.size and not np.issubdtype(array.dtype, np.number) and datatype != "BOOL"):
            raise ValueError("not numbers")
        if datatype.startswith(("UINT", "INT")) and array.size and not np.all(np.mod(array, 1) == 0):
            raise ValueError("not integers")
        info = np.iinfo(DTYPES[datatype]) if datatype.startswith(("UINT", "INT")) else None
        if info is not None and array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"outside {datatype}'s range {info.min}..{info.max}")
        return array.astype(DTYPES[datatype])
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"input {name!r}: data are not valid {datatype} values ({e})") from None


def _flatten(data: Any):
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _json_bytes(item: Any, name: str) -> bytes:
    """A BYTES element in JSON: {"b64": "..."} or a base64 string (an encoded file is not valid UTF-8 text)."""
    if isinstance(item, dict) and isinstance(item.get("b64"), str):
        item = item["b64"]
    if not isinstance(item, str):
        raise ProtocolError(f"input {name!r}: a BYTES element in JSON must be a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            f"input {name!r}: BYTES elements in JSON must be base64 (or use the binary tensor extension)"
        ) from None


def _object_array(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def encode_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: list[tuple[str, str, np.ndarray]],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    head: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": []}
    if request.id is not None:
        head["id"] = request.id
    if parameters:
        head["parameters"] = parameters
    blobs = []
    for name, datatype, array in outputs:
        if not request.wants(name):
            continue
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.binary(name):
            blob = _to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [item.decode("utf-8", "replace") for item in array.reshape(-1)]
        else:
            entry["data"] = array.reshape(-1).tolist()
        head["outputs"].append(entry)
    text = json.dumps(head).encode()
    if not blobs:
        return text, None
    return text + b"".join(blobs), len(text)


def _to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(item)) + item for item in array.reshape(-1))
    return np.ascontiguousarray(array, dtype=np.dtype(DTYPES[datatype]).newbyteorder("<")).tobytes()

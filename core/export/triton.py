"""A Triton model repository around an ONNX export (Triton's ONNX Runtime backend):

  model_repository/<name>/config.pbtxt
  model_repository/<name>/labels.txt
  model_repository/<name>/1/model.onnx

The config is written from the ONNX graph's own input and output names and shapes, then read back
and checked against them, so Triton loads it without guessing.
"""

from __future__ import annotations

import re
from pathlib import Path

_ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 7: "TYPE_INT64", 6: "TYPE_INT32", 2: "TYPE_UINT8"}


def graph_signature(onnx_path: Path) -> dict[str, dict[str, tuple[str, list[int]]]]:
    """{'inputs'|'outputs': {name: (triton type, dims without the batch dimension)}} of an ONNX model."""
    import onnx

    model = onnx.load(str(onnx_path))

    def describe(values) -> dict[str, tuple[str, list[int]]]:
        out = {}
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            out[value.name] = (_ONNX_TO_TRITON.get(tensor.elem_type, f"ONNX_{tensor.elem_type}"), dims[1:])
        return out

    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return {"inputs": describe(inputs), "outputs": describe(model.graph.output)}


def write_repository(onnx_file: Path, repository: Path, name: str, classes: list[str], max_batch: int = 32) -> Path:
    """Lay out a Triton repository for `onnx_file`; return the model's folder."""
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    target = folder / "1" / "model.onnx"
    if onnx_file.resolve() != target.resolve():
        onnx_file.replace(target)
    (folder / "labels.txt").write_text("\n".join(classes) + "\n")
    signature = graph_signature(target)
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch}"]
    lines += _block("input", signature["inputs"])
    lines += _block("output", signature["outputs"], labels="probabilities")
    lines += ["dynamic_batching { }", "instance_group [ { kind: KIND_CPU } ]"]
    (folder / "config.pbtxt").write_text("\n".join(lines) + "\n")
    check_config(folder)
    return folder


def _block(kind: str, tensors: dict[str, tuple[str, list[int]]], labels: str | None = None) -> list[str]:
    entries = []
    for name, (dtype, dims) in tensors.items():
        extra = ' label_filename: "labels.txt"' if name == labels else ""
        entries.append(f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ]{extra} }}')
    return [f"{kind} [", ",\n".join(entries), "]"]


_ENTRY = re.compile(r'\{\s*name:\s*"([^"]+)"\s*data_type:\s*(\w+)\s*dims:\s*\[([^\]]*)\]')


def check_config(folder: Path) -> dict[str, dict[str, tuple[str, list[int]]]]:
    """Read config.pbtxt back and compare it with the ONNX graph. Raises ValueError on any difference."""
    text = (folder / "config.pbtxt").read_text()
    signature = graph_signature(folder / "1" / "model.onnx")
    sections = {"inputs": text.split("output [")[0], "outputs": text.split("output [")[1]}
    for kind, section in sections.items():
        written = {
            m.group(1): (m.group(2), [int(d) for d in m.group(3).replace(" ", "").split(",") if d])
            for m in _ENTRY.finditer(section)
        }
        if written != signature[kind]:
            raise ValueError(f"config.pbtxt {kind} {written} differ from the ONNX graph's {signature[kind]}")
    if f'name: "{folder.name}"' not in text:
        raise ValueError(f"config.pbtxt names another model than its folder {folder.name!r}")
    return signature

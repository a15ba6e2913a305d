"""A Keras inference graph written as an ONNX graph from its layers and weights, in a second, on any backend.

tf2onnx traces the graph through TensorFlow: about 20 CPU-seconds for ResNet-50 (50-80 s on these shared cores),
and only under the TensorFlow backend. The frozen forward pass is paid at every cold run, so this writes the graph
directly from the layers Flora's networks are made of (`SUPPORTED`), reading the weights as numpy arrays: it runs
the same under JAX, costs about a second, and gives onnxruntime and OpenVINO an NCHW graph with every
BatchNormalization after a convolution folded into it. A layer it does not know raises `Unsupported`; the caller
then keeps Keras (the runtimes) or converts with tf2onnx (the ONNX exports, core.export.convert). Every graph it
writes is checked against Keras on real pixels before it is used (core.runtimes.choice, core.export.run).

Input `image` is (N, S, S, 3) float32 raw 0-255 RGB, as the Keras model takes it; 4-D tensors are NCHW
inside and outputs are what the Keras model returns (2-D here: pooled features, logits, probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import Unavailable

CONVERTER_VERSION = 1  # part of a converted graph's cache key: a change here converts again
OPSET = 17
INPUT = "image"
SUPPORTED = (
    "InputLayer",
    "Functional",
    "ResNetPreprocess",
    "ZeroPadding2D",
    "Conv2D",
    "BatchNormalization",
    "Activation",
    "ReLU",
    "MaxPooling2D",
    "AveragePooling2D",
    "Add",
    "GlobalAveragePooling2D",
    "Dense",
    "Dropout",
)
_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, "caffe" mode


class Unsupported(Unavailable, ValueError):
    """The model has a layer (or a layer setting) this converter does not write; the caller keeps Keras."""


@dataclass
class _Conv:
    """A convolution kept open until the graph is built, so a BatchNormalization after it folds into it."""

    inputs: str
    output: str
    kernel: np.ndarray  # ONNX layout (out, in / groups, kh, kw)
    bias: np.ndarray
    attrs: dict
    activation: str | None = None  # applied after (and then nothing folds into it)


@dataclass
class _Graph:
    nodes: list = field(default_factory=list)  # onnx NodeProto or _Conv, in order
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    convs: dict[str, _Conv] = field(default_factory=dict)  # by output name
    uses: dict[str, int] = field(default_factory=dict)  # how many nodes read each tensor
    counter: int = 0

    def name(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}__{self.counter}"

    def const(self, hint: str, value) -> str:
        name = self.name(hint)
        self.weights[name] = np.asarray(value)
        return name


def convert(model, output_names: list[str] | None = None):
    """`model` (a Keras functional model, raw pixels in) as an onnx.ModelProto with a dynamic batch.

    Args:
        model: a functional model whose one input is (None, S, S, 3) and whose layers are all in `SUPPORTED`.
        output_names: the graph's output names, in `model.outputs` order (default: output0, output1, ...).

    Raises:
        Unsupported: a layer or setting not written here (the message names it).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise Unsupported(f"one (N, H, W, C) image input expected. Received: {[t.shape for t in model.inputs]}")
    outputs = list(output_names or [f"output{i}" for i in range(len(model.outputs))])
    if len(outputs) != len(model.outputs):
        raise Unsupported(f"{len(model.outputs)} outputs, {len(outputs)} names")
    graph = _Graph()
    _count_uses(model, graph.uses)
    nchw = graph.name("nchw")
    graph.nodes.append(helper.make_node("Transpose", [INPUT], [nchw], perm=[0, 3, 1, 2]))
    names = {id(model.inputs[0]): nchw}
    _emit_model(model, names, graph)
    final = []
    for tensor, out_name in zip(model.outputs, outputs, strict=True):
        source = names[id(tensor)]
        if len(tensor.shape) == 4:
            graph.nodes.append(helper.make_node("Transpose", [source], [out_name], perm=[0, 2, 3, 1]))
        else:
            graph.nodes.append(helper.make_node("Identity", [source], [out_name]))
        final.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", *tensor.shape[1:]]))
    nodes = []
    for node in graph.nodes:
        nodes += _conv_nodes(node, graph, helper) if isinstance(node, _Conv) else [node]
    size = list(model.inputs[0].shape[1:])
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *size])]
    initializers = [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in graph.weights.items()]
    onnx_graph = helper.make_graph(nodes, model.name or "flora", inputs, final, initializer=initializers)
    proto = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="flora")
    proto.ir_version = 8  # what onnxruntime and OpenVINO of this generation read for opset 17
    onnx.checker.check_model(proto)
    return proto


def _nodes_in_order(model):
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first
        yield from model._nodes_by_depth[depth]


def _count_uses(model, uses: dict) -> None:
    """How many nodes read each Keras tensor (by id), through nested models: a convolution whose output only its
    BatchNormalization reads may absorb it."""
    for node in _nodes_in_order(model):
        operation = node.operation
        for tensor in node.input_tensors:
            uses[id(tensor)] = uses.get(id(tensor), 0) + 1
        if type(operation).__name__ in ("Functional", "Sequential") and hasattr(operation, "_nodes_by_depth"):
            _count_uses(operation, uses)
    for tensor in model.outputs:
        uses[id(tensor)] = uses.get(id(tensor), 0) + 1


def _emit_model(model, names: dict, graph: _Graph) -> None:
    """Emit every node of `model`, its inputs already named in `names` (Keras tensor id -> ONNX name)."""
    for node in _nodes_in_order(model):
        layer = node.operation
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind not in SUPPORTED:
            raise Unsupported(f"layer {layer.name!r} ({kind}) has no ONNX writer here")
        inputs = [names[id(t)] for t in node.input_tensors]
        if kind == "Functional":
            for inner, outer in zip(layer.inputs, inputs, strict=True):
                names[id(inner)] = outer
            _emit_model(layer, names, graph)
            for inner, outer in zip(layer.outputs, node.outputs, strict=True):
                names[id(outer)] = names[id(inner)]
            continue
        if len(node.outputs) != 1:
            raise Unsupported(f"layer {layer.name!r} has {len(node.outputs)} outputs")
        shape = tuple(node.input_tensors[0].shape)
        out = graph.name(layer.name)
        _EMITTERS[kind](layer, inputs, out, shape, graph, id(node.input_tensors[0]))
        names[id(node.outputs[0])] = out


def _node(graph: _Graph, op: str, inputs: list[str], output: str, **attrs) -> None:
    from onnx import helper

    graph.nodes.append(helper.make_node(op, inputs, [output], **attrs))


def _activation(layer, source: str, out: str, graph: _Graph, name: str | None = None) -> None:
    name = name or _activation_name(layer.activation)
    if name == "linear":
        _node(graph, "Identity", [source], out)
    elif name == "softmax":
        _node(graph, "Softmax", [source], out, axis=-1)
    elif name in _ACTIVATIONS:
        _node(graph, _ACTIVATIONS[name], [source], out)
    else:
        raise Unsupported(f"layer {layer.name!r}: activation {name!r}")


def _activation_name(function) -> str:
    return getattr(function, "__name__", str(function))


def _numpy(variable) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def _check_channels_last(layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise Unsupported(f"layer {layer.name!r}: data_format {layer.data_format!r}")


def _same_pads(size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int], dilation=(1, 1)):
    """TensorFlow's "same" padding for a 2-D window: (top, left, bottom, right), the odd pixel at the end."""
    before, after = [], []
    for n, k, s, d in zip(size, kernel, strides, dilation, strict=True):
        effective = (k - 1) * d + 1
        total = max((-(-n // s) - 1) * s + effective - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


def _emit_preprocess(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    if getattr(layer, "compute_dtype", "float32") != "float32":
        raise Unsupported(f"layer {layer.name!r} computes in {layer.compute_dtype}")
    flipped = graph.name("bgr")
    _node(graph, "Gather", [inputs[0], graph.const("bgr_order", np.array([2, 1, 0], dtype=np.int64))], flipped, axis=1)
    mean = np.array(CAFFE_MEAN_BGR, dtype=np.float32).reshape(1, 3, 1, 1)
    _node(graph, "Sub", [flipped, graph.const("mean", mean)], out)


def _emit_zero_padding(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    _check_channels_last(layer)
    (top, bottom), (left, right) = layer.padding
    pads = np.array([0, 0, top, left, 0, 0, bottom, right], dtype=np.int64)
    _node(graph, "Pad", [inputs[0], graph.const("pads", pads)], out, mode="constant")


def _emit_conv(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    _check_channels_last(layer)
    if layer.padding not in ("valid", "same"):
        raise Unsupported(f"layer {layer.name!r}: padding {layer.padding!r}")
    kernel = _numpy(layer.kernel)  # (kh, kw, in / groups, out)
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1], dtype=np.float32)
    size = tuple(int(s) for s in shape[1:3])
    pads = [0, 0, 0, 0]
    if layer.padding == "same":
        pads = _same_pads(size, kernel.shape[:2], layer.strides, layer.dilation_rate)
    attrs = {
        "kernel_shape": list(kernel.shape[:2]),
        "strides": list(layer.strides),
        "dilations": list(layer.dilation_rate),
        "pads": [int(p) for p in pads],
        "group": int(layer.groups),
    }
    activation = _activation_name(layer.activation)
    graph.convs[out] = _Conv(
        inputs[0], out, kernel.transpose(3, 2, 0, 1), bias, attrs, None if activation == "linear" else activation
    )
    graph.nodes.append(graph.convs[out])


def _emit_batch_norm(layer, inputs, out, shape, graph: _Graph, source_id) -> None:
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    if axis is None or axis not in (-1, len(shape) - 1):
        raise Unsupported(f"layer {layer.name!r}: BatchNormalization over axis {layer.axis!r}")
    mean, variance = _numpy(layer.moving_mean), _numpy(layer.moving_variance)
    gamma = _numpy(layer.gamma) if layer.scale else np.ones_like(mean)
    beta = _numpy(layer.beta) if layer.center else np.zeros_like(mean)
    scale = (gamma / np.sqrt(variance + np.float32(layer.epsilon))).astype(np.float32)
    shift = (beta - mean * scale).astype(np.float32)
    conv = graph.convs.get(inputs[0])
    if conv is not None and conv.activation is None and graph.uses.get(source_id, 0) == 1:
        conv.kernel = conv.kernel * scale[:, None, None, None]
        conv.bias = conv.bias * scale + shift
        graph.convs[out] = graph.convs.pop(inputs[0])
        conv.output = out
        return
    broadcast = (1, -1, 1, 1) if len(shape) == 4 else (1, -1)
    scaled = graph.name(f"{layer.name}_scaled")
    _node(graph, "Mul", [inputs[0], graph.const("bn_scale", scale.reshape(broadcast))], scaled)
    _node(graph, "Add", [scaled, graph.const("bn_shift", shift.reshape(broadcast))], out)


def _emit_activation(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    name = _activation_name(layer.activation)
    if name == "softmax" and len(shape) != 2:
        raise Unsupported(f"layer {layer.name!r}: softmax over a {len(shape)}-D tensor")
    _activation(layer, inputs[0], out, graph, name)


def _emit_relu(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    plain = layer.max_value is None and not float(layer.negative_slope) and not float(layer.threshold)
    if not plain:
        raise Unsupported(f"layer {layer.name!r}: ReLU with a cap, slope or threshold")
    _node(graph, "Relu", [inputs[0]], out)


def _emit_pooling(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    _check_channels_last(layer)
    size = tuple(int(s) for s in shape[1:3])
    pads = [0, 0, 0, 0] if layer.padding == "valid" else _same_pads(size, layer.pool_size, layer.strides)
    attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides), "pads": [int(p) for p in pads]}
    if type(layer).__name__ == "MaxPooling2D":
        _node(graph, "MaxPool", inputs, out, **attrs)
    else:  # TensorFlow averages over the window's pixels inside the image only
        _node(graph, "AveragePool", inputs, out, count_include_pad=0, **attrs)


def _emit_add(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    _node(graph, "Sum" if len(inputs) > 2 else "Add", inputs, out)


def _emit_global_average(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    _check_channels_last(layer)
    if layer.keepdims:
        raise Unsupported(f"layer {layer.name!r}: keepdims=True")
    pooled = graph.name(f"{layer.name}_4d")
    _node(graph, "GlobalAveragePool", inputs, pooled)
    _node(graph, "Flatten", [pooled], out, axis=1)


def _emit_dense(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    if len(shape) != 2:
        raise Unsupported(f"layer {layer.name!r}: Dense on a {len(shape)}-D tensor")
    kernel = graph.const(f"{layer.name}_kernel", _numpy(layer.kernel))
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros(int(layer.units), dtype=np.float32)
    activation = _activation_name(layer.activation)
    target = out if activation == "linear" else graph.name(f"{layer.name}_linear")
    _node(graph, "Gemm", [inputs[0], kernel, graph.const(f"{layer.name}_bias", bias)], target)
    if activation != "linear":
        _activation(layer, target, out, graph, activation)


def _emit_identity(layer, inputs, out, shape, graph: _Graph, _source) -> None:
    _node(graph, "Identity", inputs, out)  # Dropout: nothing at inference


def _conv_nodes(conv: _Conv, graph: _Graph, helper) -> list:
    kernel = graph.const(f"{conv.output}_kernel", conv.kernel.astype(np.float32))
    bias = graph.const(f"{conv.output}_bias", conv.bias.astype(np.float32))
    if conv.activation is None:
        return [helper.make_node("Conv", [conv.inputs, kernel, bias], [conv.output], **conv.attrs)]
    if conv.activation not in _ACTIVATIONS:
        raise Unsupported(f"convolution {conv.output!r}: activation {conv.activation!r}")
    linear = graph.name(f"{conv.output}_linear")
    return [
        helper.make_node("Conv", [conv.inputs, kernel, bias], [linear], **conv.attrs),
        helper.make_node(_ACTIVATIONS[conv.activation], [linear], [conv.output]),
    ]


_EMITTERS = {
    "ResNetPreprocess": _emit_preprocess,
    "ZeroPadding2D": _emit_zero_padding,
    "Conv2D": _emit_conv,
    "BatchNormalization": _emit_batch_norm,
    "Activation": _emit_activation,
    "ReLU": _emit_relu,
    "MaxPooling2D": _emit_pooling,
    "AveragePooling2D": _emit_pooling,
    "Add": _emit_add,
    "GlobalAveragePooling2D": _emit_global_average,
    "Dense": _emit_dense,
    "Dropout": _emit_identity,
}

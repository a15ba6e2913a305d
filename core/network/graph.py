"""The inference graph of a run: raw pixels -> preprocessing -> backbone -> pooled features -> logits
-> probabilities, with no augmentation layers and in float32.

The saved classifier keeps its augmentation layers (they only act when training), but tools that
call a model without `training=False` (`model.export()`, converters) would switch them on, and a
model trained under mixed precision computes in float16. Serving and every export use this graph
instead: the same weights, copied into a fresh float32 model whose outputs are named
`probabilities`, `logits` and `features` (the pooled backbone features, 2048 for ResNet-50): core.network.layer_names.
"""

from __future__ import annotations

import keras
import numpy as np

from core.network import backbones
from core.network import layer_names as names
from core.network.model import backbone_of, build_head, head_of, head_task, head_units, with_weights
from core.network.saved import made_values_first

OUTPUTS = names.INFERENCE_OUTPUTS


def inference_model(
    classifier: keras.Model, outputs: tuple[str, ...] = OUTPUTS, share_backbone: bool = False
) -> keras.Model:
    """A float32 copy of `classifier` without augmentation, with the named outputs (in that order).

    `share_backbone` (the server): when the classifier's backbone already computes in float32, the graph calls
    that very backbone instead of building a second ResNet-50 and copying its weights (about a second of a
    switch's load). Exports keep a fresh copy, as converters see it.

    Raises:
        ValueError: an unknown output name.
    """
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"outputs must be among {OUTPUTS}. Received: {sorted(unknown)}")
    size = int(classifier.input_shape[1])
    entry = backbones.find_in(classifier)
    source_head = head_of(classifier)
    num_classes = int(source_head.output_shape[-1])
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        trained = classifier.get_layer(entry.name)
        if share_backbone and _computes_in_float32(trained):
            backbone = trained
        else:
            values = trained.get_weights()
            backbone = made_values_first(lambda: with_weights(entry.build((size, size, 3), None, entry.name), values))
        head = build_head(
            num_classes,
            head_units(source_head),
            dropout=0.0,
            feature_dim=entry.feature_dim,
            task=head_task(source_head),  # a multi-label run's sigmoid, not a softmax
        )
        head.set_weights(source_head.get_weights())
        inputs = keras.Input((size, size, 3), name=names.IMAGE, dtype="float32")  # raw 0-255 RGB
        x = entry.preprocess(names.PREPROCESS)(inputs)
        x = backbone(x)
        features = keras.layers.GlobalAveragePooling2D(name=names.FEATURES)(x)
        x = features
        for layer in head.layers[1:]:
            if layer.name == names.LOGITS:
                break
            x = layer(x)
        logits = head.get_layer(names.LOGITS)(x)
        probabilities = head.get_layer(names.PROBABILITIES)(logits)
    finally:
        keras.config.set_dtype_policy(previous)
    tensors = {names.PROBABILITIES: probabilities, names.LOGITS: logits, names.FEATURES: features}
    return keras.Model(inputs, [tensors[name] for name in outputs], name=f"flora_{names.HEAD}_inference")


def _computes_in_float32(model: keras.Model) -> bool:
    return all(layer.dtype_policy.compute_dtype == "float32" for layer in [model, *model.layers])


def run_outputs(model: keras.Model, images, batch_size: int = 64, on_batch=None) -> dict[str, np.ndarray]:
    """Every output of an `inference_model` for (N, size, size, 3) pixels, in batches, as numpy arrays.
    `on_batch(n)`: told after each batch how many images it held (a progress count)."""
    names = [name.split("/")[0] for name in model.output_names]
    parts: dict[str, list] = {name: [] for name in names}
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        out = model.predict_on_batch(batch)
        out = out if isinstance(out, list | tuple) else [out]
        for name, value in zip(names, out, strict=True):
            parts[name].append(keras.ops.convert_to_numpy(value).astype(np.float32))
        if on_batch is not None:
            on_batch(len(batch))
    return {name: np.concatenate(values) if values else np.zeros((0,)) for name, values in parts.items()}


def features_and_logits_model(classifier):
    """The classifier's own layers as image -> (pooled features, logits): one pass gives both, weights shared."""
    head = head_of(classifier)
    size = classifier.input_shape[1]
    inputs = keras.Input((size, size, 3), name=names.IMAGE)
    x = classifier.get_layer(names.PREPROCESS)(inputs)
    pooled = classifier.get_layer(names.AVG_POOL)(backbone_of(classifier)(x))
    logits = head_logits_model(head)(pooled)
    return keras.Model(inputs, [pooled, logits], name="features_and_logits")


def head_logits_model(head):
    """The head without its softmax: pooled features -> logits (shares the head's weights)."""
    return keras.Model(head.input, head.get_layer(names.LOGITS).output, name="head_logits")

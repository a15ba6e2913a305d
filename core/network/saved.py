"""Reading a saved `.keras` model without paying for the starting values its file then overwrites.

Keras's `load_model` rebuilds the model from its config, and every variable it makes is first filled by its
initializer (a random draw for each kernel: 25 M numbers for ResNet-50), then overwritten by the weights the file
holds. A ResNet-50 run's model (32 px, fine-tuned) took 1.8-2.6 CPU-s to load here on TensorFlow and 1.4-1.8 on JAX
(2 cores, AVX2 EPYC), about a third of it those fills; read this way 1.1-1.6 and 0.9-1.0 (docs/PERFORMANCE.md). The
server's and `core predict`'s start, each export and every analysis of a run load one. Keras already knows how to make a
variable without a value: inside a `keras.StatelessScope` a variable made from an initializer waits, uninitialised,
and an assignment is recorded in the scope instead of written. So the file is read inside one, and each variable is
then given the value the file assigned it (Keras's own `_initialize`, as its variables get their first value), or,
where the file held none (a random layer's seed state), its initializer's, as Keras would have.

The model is the one `keras.saving.load_model(path, compile=False)` returns: the same layers, configs and weights
(tests/network/test_saved.py compares them, and the predictions, on both backends). Keras's internals used here are
those of the pinned Keras (requirements.txt); where they are missing, the plain load runs.

One kind of file cannot be read that way: one whose inner model was saved compiled. A run's head is trained as a
model of its own (`fit_head`) and then sits inside the classifier; Keras saved its compile settings and its Adam's
moments with it, and `load_model` compiles such an inner model as it reads it (`compile=False` leaves out only the
outer model's), making an optimizer whose step counter starts from a value, which a stateless scope refuses. Flora
never reads that state back (every load here is `compile=False`, and a head is compiled again before each fit), so
`without_inner_training_state` leaves it out as a run's model is saved; a file saved before (or by someone else) that
still holds it is read the plain way, as is a file one of whose layers makes a variable from a value (Keras refuses
that inside the scope; a model from elsewhere given as starting weights may).
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Callable
from typing import TypeVar

import keras

try:  # Keras's own bookkeeping of variables made inside a stateless scope
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import in_stateless_scope
except ImportError:  # another Keras: the plain load below
    global_state = None

_PENDING = "uninitialized_variables"  # Keras's per-thread list of variables waiting for a value
STATELESS_REFUSAL = "while in a stateless scope"  # Keras's words for a variable made from a value inside one
T = TypeVar("T")


def load_keras_file(path: str | os.PathLike) -> keras.Model:
    """`keras.saving.load_model(path, compile=False)`, without first filling the weights the file overwrites."""
    if _holds_inner_training_state(path):
        return keras.saving.load_model(path, compile=False)
    return made_values_first(lambda: keras.saving.load_model(path, compile=False))


def made_values_first(make: Callable[[], T]) -> T:
    """`make()` (which makes variables and then assigns each its value: a model loaded from a file, a backbone built
    with a weights file), its variables given the values it assigned instead of first filled by their initializers.

    Also a backbone built from a weights file paid for the fills it then overwrote: ResNet-50 with ImageNet's weights
    on JAX compiles each initializer for each kernel shape (22 programs, ~10 CPU-s from cold) before loading them.
    Where Keras's internals are missing, or a variable is made from a value (refused inside the scope), `make()` runs
    the plain way."""
    if global_state is None or in_stateless_scope():
        return make()
    try:
        return _values_first(make)
    except ValueError as e:
        if STATELESS_REFUSAL not in str(e):
            raise
        # a layer makes a variable from a value (a model from elsewhere, given as starting weights)
        return make()


def _values_first(make: Callable[[], T]) -> T:
    waiting = list(global_state.get_global_attribute(_PENDING) or [])  # someone else's: left waiting, as they were
    global_state.set_global_attribute(_PENDING, [])
    scope = keras.StatelessScope(initialize_variables=False)
    try:
        with scope:
            return make()
    finally:  # also after a failed load: nothing made here stays without a value
        made = global_state.get_global_attribute(_PENDING) or []
        global_state.set_global_attribute(_PENDING, waiting)
        for variable in made:
            value = scope.get_current_value(variable)
            if value is None:
                variable._deferred_initialize()  # its initializer's value, as a plain load leaves it
            else:
                variable._initialize(value)


@contextlib.contextmanager
def without_inner_training_state(model: keras.Model):
    """While saving `model`: its inner models (a run's head) as if never compiled, so the file holds neither their
    compile settings nor their optimizers' state. The outer model's own are kept, as Keras saves them."""
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.compiled]
    kept = [(layer, layer.optimizer) for layer in inner]
    try:
        for layer in inner:
            layer.compiled = False
            layer.optimizer = None
        yield
    finally:
        for layer, optimizer in kept:
            layer.optimizer = optimizer
            layer.compiled = True


def _holds_inner_training_state(path: str | os.PathLike) -> bool:
    """Whether the file's config has an inner model saved compiled (config.json: a compile config below the top)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return True  # not a file this can look into: Keras's own load says what is wrong with it

    def compiled_below(node, depth: int) -> bool:
        if isinstance(node, dict):
            if depth > 0 and node.get("compile_config"):
                return True
            return any(compiled_below(value, depth + 1) for value in node.values())
        if isinstance(node, list):
            return any(compiled_below(value, depth + 1) for value in node)
        return False

    return compiled_below(config, 0)

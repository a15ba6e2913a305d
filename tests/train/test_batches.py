"""Training batches: one shape for every step of an epoch (one trace, one compile), every photo seen."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from core.train.batches import FeatureBatches, ImageBatches, whole_batch
from tests.conftest import make_image_dataset


def test_a_short_last_batch_is_filled_from_the_start_of_the_same_epochs_order():
    order = np.array([7, 3, 9, 1, 4, 8, 0, 2, 6, 5])
    batches = [whole_batch(order, i, 4, fill=True) for i in range(3)]
    assert [b.tolist() for b in batches] == [[7, 3, 9, 1], [4, 8, 0, 2], [6, 5, 7, 3]]
    assert whole_batch(order, 2, 4, fill=False).tolist() == [6, 5]  # validation and prediction: as they are
    assert whole_batch(order[:3], 0, 4, fill=True).tolist() == [7, 3, 9]  # fewer photos than a batch: all of them


@pytest.mark.backend_agnostic
def test_each_training_epoch_is_whole_batches_that_see_every_photo(tmp_path):
    dataset = make_image_dataset(tmp_path / "photos", {"a": 6, "b": 5})
    cache = ingest(scan_dataset(dataset), 32, tmp_path / "cache", workers=1)
    positions = np.arange(len(cache))
    train = ImageBatches(cache, positions, 2, 32, 4, shuffle=True, seed=1)
    val = ImageBatches(cache, positions, 2, 32, 4)
    views = np.random.default_rng(0).normal(size=(2, 11, 16)).astype(np.float16)
    head = FeatureBatches(views, cache.labels, 2, 4, seed=1)
    for source in (train, head):
        for _epoch in range(2):
            shapes = [source[i][0].shape[0] for i in range(len(source))]
            assert len(source) == 3 and shapes == [4, 4, 4]
            seen = np.concatenate([whole_batch(source._order, i, 4, True) for i in range(len(source))])
            assert sorted(set(seen.tolist())) == list(range(11))  # each photo at least once
            source.on_epoch_end()
    assert [val[i][0].shape[0] for i in range(len(val))] == [4, 4, 3]


@pytest.mark.backend_agnostic
def test_a_phase_over_a_split_that_batches_do_not_divide_traces_its_step_once():
    """11 photos in batches of 4: with a short last batch, JAX compiled the training step twice (TensorFlow's
    dataset over the batches leaves their first dimension open). Counted by the Python of `train_step`, which runs
    only while a step is traced."""
    import keras

    from core.train.objective import compile_for

    rng = np.random.default_rng(0)
    batches = FeatureBatches(rng.normal(size=(2, 11, 16)).astype(np.float16), rng.integers(0, 3, 11), 3, 4)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(3, "softmax")])
    traced = []
    train_step = model.train_step
    model.train_step = lambda *args: traced.append(1) or train_step(*args)
    compile_for(model, 1e-2, 0.0)
    model.fit(batches, epochs=2, verbose=0)
    assert len(traced) == 1

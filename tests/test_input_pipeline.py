"""Tests of model/input_pipeline.py on a synthetic split whose pixels encode each image's index."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model.data import Split
from model.input_pipeline import epoch_permutation, eval_dataset, train_dataset_fn

N = 1000


@pytest.fixture(scope="module")
def split() -> Split:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 28, 28), dtype=np.uint8)
    index = np.arange(N)
    images[:, 0, 0] = index // 256  # pixels 0 and 1 encode the image's index
    images[:, 0, 1] = index % 256
    labels = (index * 7 % 10).astype(np.uint8)
    images.flags.writeable = False
    labels.flags.writeable = False
    return Split(images=images, labels=labels)


def decode(images: np.ndarray) -> np.ndarray:
    pixels = np.rint(images[:, :2] * 255).astype(np.int64)
    return pixels[:, 0] * 256 + pixels[:, 1]


def batches(split, global_batch, count, *, seed=0, start_step=0, pipelines=1, pipeline_id=0,
            replicas=None):
    context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=replicas or pipelines)
    dataset = train_dataset_fn(split, seed=seed, start_step=start_step)(global_batch, context)
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


def indices(batch_list) -> list[np.ndarray]:
    return [decode(x) for x, _ in batch_list]


# --------------------------------------------------------------------------
# (e) contents and types


def test_batches_hold_the_source_pixels_and_labels(split):
    for images, labels in batches(split, 100, 12, seed=3):
        assert images.dtype == np.float32 and images.shape == (100, 784)
        assert labels.dtype == np.int32 and labels.shape == (100,)
        assert images.min() >= 0.0 and images.max() <= 1.0
        idx = decode(images)
        expected = split.images[idx].reshape(-1, 784).astype(np.float32) / np.float32(255)
        np.testing.assert_allclose(images, expected, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(labels, split.labels[idx].astype(np.int32))


def test_element_spec_is_static(split):
    # Fixed batch shapes (drop_remainder): the compiled loop never retraces.
    context = tf.distribute.InputContext()
    dataset = train_dataset_fn(split, seed=0)(50, context)
    images_spec, labels_spec = dataset.element_spec
    assert images_spec.dtype == tf.float32 and images_spec.shape.as_list() == [50, 784]
    assert labels_spec.dtype == tf.int32 and labels_spec.shape.as_list() == [50]


# --------------------------------------------------------------------------
# (c) epochs are permutations, (d) seeds


def test_each_epoch_is_a_permutation(split):
    # 100 divides 1000: ten batches per epoch.
    idx = indices(batches(split, 100, 30))
    epochs = [np.concatenate(idx[e * 10:(e + 1) * 10]) for e in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(N))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])


def test_epochs_are_permutations_when_batches_straddle_epochs(split):
    # 96 does not divide 1000: batch 10 holds the end of epoch 0 and the start of epoch 1.
    stream = np.concatenate(indices(batches(split, 96, 21)))
    assert stream.size == 2016
    for e in range(2):
        np.testing.assert_array_equal(np.sort(stream[e * N:(e + 1) * N]), np.arange(N))


def test_order_is_the_documented_stateless_permutation(split):
    stream = np.concatenate(indices(batches(split, 100, 20, seed=42)))
    for e in range(2):
        np.testing.assert_array_equal(stream[e * N:(e + 1) * N],
                                      epoch_permutation(N, 42, e).numpy())


def test_the_order_is_shuffled(split):
    order = np.concatenate(indices(batches(split, 100, 10)))
    assert not np.array_equal(order, np.arange(N))
    assert abs(np.corrcoef(order, np.arange(N))[0, 1]) < 0.2


def test_same_seed_same_order_different_seed_different_order(split):
    a = np.concatenate(indices(batches(split, 100, 15, seed=7)))
    b = np.concatenate(indices(batches(split, 100, 15, seed=7)))
    c = np.concatenate(indices(batches(split, 100, 15, seed=8)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a != c).mean() > 0.9


# --------------------------------------------------------------------------
# (a) resuming


@pytest.mark.parametrize("global_batch,start_step", [
    (100, 1), (100, 9), (100, 10), (100, 13),  # 10 steps per epoch
    (96, 1), (96, 10), (96, 11), (96, 21),  # step 10 crosses the epoch boundary
    (300, 4),  # a global batch bigger than a quarter of the epoch
])
def test_resuming_gives_the_uninterrupted_batches(split, global_batch, start_step):
    total = 25
    full = batches(split, global_batch, total, seed=5)
    resumed = batches(split, global_batch, total - start_step, seed=5, start_step=start_step)
    assert len(resumed) == total - start_step
    for (x_full, y_full), (x_res, y_res) in zip(full[start_step:], resumed, strict=True):
        np.testing.assert_array_equal(x_res, x_full)
        np.testing.assert_array_equal(y_res, y_full)


def test_resuming_far_into_training(split):
    # Step 1234 of global batch 96 starts inside epoch 118: check against the formula.
    step, gb, seed = 1234, 96, 1
    start = step * gb
    epoch, offset = divmod(start, N)
    expected = np.concatenate([epoch_permutation(N, seed, epoch).numpy()[offset:],
                               epoch_permutation(N, seed, epoch + 1).numpy()])[:3 * gb]
    got = np.concatenate(indices(batches(split, gb, 3, seed=seed, start_step=step)))
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------
# (b) several input pipelines and replicas


@pytest.mark.parametrize("start_step", [0, 7])
def test_two_pipelines_make_up_the_global_batch(split, start_step):
    one = batches(split, 100, 12, start_step=start_step)
    parts = [batches(split, 100, 12, start_step=start_step, pipelines=2, pipeline_id=i)
             for i in range(2)]
    for step, (x, y) in enumerate(one):
        assert parts[0][step][0].shape == (50, 784)
        np.testing.assert_array_equal(np.concatenate([parts[0][step][0], parts[1][step][0]]), x)
        np.testing.assert_array_equal(np.concatenate([parts[0][step][1], parts[1][step][1]]), y)


def test_four_pipelines_with_an_odd_per_pipeline_batch(split):
    one = batches(split, 96, 12)
    parts = [batches(split, 96, 12, pipelines=4, pipeline_id=i) for i in range(4)]
    for step, (x, _) in enumerate(one):
        np.testing.assert_array_equal(np.concatenate([p[step][0] for p in parts]), x)


def test_two_replicas_on_one_pipeline_get_consecutive_halves(split):
    one = batches(split, 100, 8)
    per_replica = batches(split, 100, 16, pipelines=1, replicas=2)
    for step, (x, y) in enumerate(one):
        assert per_replica[2 * step][0].shape == (50, 784)
        np.testing.assert_array_equal(
            np.concatenate([per_replica[2 * step][0], per_replica[2 * step + 1][0]]), x)
        np.testing.assert_array_equal(
            np.concatenate([per_replica[2 * step][1], per_replica[2 * step + 1][1]]), y)


def test_two_workers_with_two_replicas_each(split):
    # Pipeline i feeds replicas 2i and 2i+1: in replica order they make up the global batch.
    one = batches(split, 100, 6, start_step=3)
    parts = [batches(split, 100, 12, start_step=3, pipelines=2, pipeline_id=i, replicas=4)
             for i in range(2)]
    for step, (x, y) in enumerate(one):
        replica_batches = [parts[i][2 * step + r] for i in range(2) for r in range(2)]
        assert all(b[0].shape == (25, 784) for b in replica_batches)
        np.testing.assert_array_equal(np.concatenate([b[0] for b in replica_batches]), x)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in replica_batches]), y)


def test_global_batch_must_split_over_replicas(split):
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                         num_replicas_in_sync=3)
    with pytest.raises(ValueError, match="does not split evenly"):
        train_dataset_fn(split, seed=0)(100, context)


def test_auto_sharding_is_off(split):
    dataset = train_dataset_fn(split, seed=0)(100, tf.distribute.InputContext())
    assert (dataset.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.OFF)


# --------------------------------------------------------------------------
# Evaluation


def test_eval_dataset_covers_the_split_once_in_order(split):
    got = [(x.numpy(), y.numpy()) for x, y in eval_dataset(split, batch_size=300)]
    assert [len(y) for _, y in got] == [300, 300, 300, 100]
    images = np.concatenate([x for x, _ in got])
    labels = np.concatenate([y for _, y in got])
    assert images.dtype == np.float32 and images.shape == (N, 784)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(decode(images), np.arange(N))
    np.testing.assert_allclose(images, split.images.reshape(N, 784).astype(np.float32) / np.float32(255),
                               rtol=0, atol=1e-7)
    np.testing.assert_array_equal(labels, split.labels.astype(np.int32))


def test_eval_dataset_is_repeatable(split):
    dataset = eval_dataset(split, batch_size=1000)
    first = [y.numpy() for _, y in dataset]
    second = [y.numpy() for _, y in dataset]
    assert len(first) == 1
    np.testing.assert_array_equal(first[0], second[0])

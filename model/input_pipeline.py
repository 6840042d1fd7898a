"""tf.data pipelines in the `dataset_fn(global_batch_size, input_context)` form.

The training order is a pure function of (seed, global position): epoch e is
the permutation `stateless_shuffle(range(N), seed=[seed, e])`, cut into global
batches, and every input pipeline (one per worker) takes its slice of each
global batch. So a run resumed at step S sees exactly the batches an
uninterrupted run sees from step S, whatever the number of workers, and no
shuffle buffer has to be checkpointed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from model.data import Split

DatasetFn = Callable[[int, tf.distribute.InputContext], tf.data.Dataset]

_FOREVER = np.iinfo(np.int64).max


def _pixels_to_float(images_uint8: tf.Tensor) -> tf.Tensor:
    """uint8 [B, 28, 28] or [B, 784] -> float32 [B, 784] in [0, 1], as the tutorial feeds."""
    return tf.reshape(tf.cast(images_uint8, tf.float32) / 255.0, [-1, 784])


def epoch_permutation(num_examples: int, seed: int, epoch) -> tf.Tensor:
    """The example order of one epoch (int64 indices)."""
    seed_pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64), seed=seed_pair)


def train_dataset_fn(split: Split, *, seed: int, start_step: int = 0) -> DatasetFn:
    """Endless training batches starting at global step `start_step`."""
    num_examples = len(split)
    images = split.images.reshape(num_examples, 784)
    labels = split.labels.astype(np.int32)

    def dataset_fn(global_batch_size: int, input_context: tf.distribute.InputContext):
        pipelines = input_context.num_input_pipelines
        replicas = input_context.num_replicas_in_sync
        if global_batch_size % replicas:
            raise ValueError(f"global batch {global_batch_size} does not split evenly "
                             f"over {replicas} replicas")
        per_replica = global_batch_size // replicas
        per_pipeline = global_batch_size // pipelines
        lo = input_context.input_pipeline_id * per_pipeline

        start = start_step * global_batch_size
        first_epoch, offset = divmod(start, num_examples)
        image_table = tf.constant(images)  # uint8 in memory: 43 MB for the full train split
        label_table = tf.constant(labels)

        indices = (tf.data.Dataset.range(first_epoch, _FOREVER)
                   .flat_map(lambda e: tf.data.Dataset.from_tensor_slices(
                       epoch_permutation(num_examples, seed, e)))
                   .skip(offset)
                   .batch(global_batch_size, drop_remainder=True)
                   .map(lambda idx: idx[lo:lo + per_pipeline]))
        if per_pipeline != per_replica:  # several GPUs on this worker: one batch each
            indices = indices.unbatch().batch(per_replica, drop_remainder=True)
        dataset = indices.map(
            lambda idx: (_pixels_to_float(tf.gather(image_table, idx)), tf.gather(label_table, idx)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        # Endless by construction, but flat_map hides that from tf.data; said
        # explicitly, the distributed iterator skips its per-step all-reduce
        # of "does every worker still have data" (get_next_as_optional).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
        return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


def eval_dataset(split: Split, batch_size: int = 1000) -> tf.data.Dataset:
    """The whole split once, in order, for a single evaluating process."""
    return (tf.data.Dataset.from_tensor_slices((split.images, split.labels.astype(np.int32)))
            .batch(batch_size)
            .map(lambda x, y: (_pixels_to_float(x), y))
            .cache()
            .prefetch(tf.data.AUTOTUNE))

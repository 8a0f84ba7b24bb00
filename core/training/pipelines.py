"""The tf.data pipelines of the image path, and how many batches an epoch has (the cached path counts the same).

The training pipeline shuffles (seeded, a new order each epoch), batches, augments and one-hot encodes; the
test pipeline only batches and one-hot encodes. Both shard by batch under a multi-worker strategy.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from core.augment import build_augmenter

# Drop the last, smaller batch only when it is a small share of an epoch (the notebook always drops it).
DROP_REMAINDER_MIN_BATCHES = 10
# Training images wait in the shuffle buffer as uint8; this bounds its memory.
SHUFFLE_BUFFER_BYTES = 512 * 2**20


def drop_remainder(num_train: int, batch_size: int) -> bool:
    return num_train >= DROP_REMAINDER_MIN_BATCHES * batch_size


def batches_per_epoch(num_train: int, batch_size: int) -> int:
    if drop_remainder(num_train, batch_size):
        return num_train // batch_size
    return max(1, math.ceil(num_train / batch_size))


def _shuffle_buffer(num_train: int, image_size: int, batch_size: int) -> int:
    return max(1, min(num_train, max(batch_size, SHUFFLE_BUFFER_BYTES // (image_size * image_size * 3))))


def _distribution_options() -> tf.data.Options:
    """Multi-worker runs shard batches, not files (our sources are not always files)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def training_pipeline(
    train: tf.data.Dataset,
    *,
    num_train: int,
    num_classes: int,
    image_size: int,
    batch_size: int,
    augment: Any,
    seed: int,
) -> tf.data.Dataset:
    """Shuffle (seeded, new order each epoch) -> batch -> augment (a fresh augmenter) -> one-hot -> prefetch.

    Images wait in the shuffle buffer as uint8, four times smaller than float32 (the data module
    already caches small splits, before augmentation)."""
    augmenter = build_augmenter(augment)
    ds = train.map(
        lambda image, label: (tf.cast(tf.round(image), tf.uint8), label), num_parallel_calls=tf.data.AUTOTUNE
    )
    ds = ds.shuffle(_shuffle_buffer(num_train, image_size, batch_size), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder(num_train, batch_size))
    ds = ds.map(
        lambda images, labels: (augmenter(images, training=True), tf.one_hot(labels, num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.with_options(_distribution_options()).prefetch(tf.data.AUTOTUNE)


def test_pipeline(test: tf.data.Dataset, *, num_classes: int, batch_size: int) -> tf.data.Dataset:
    """Batch -> one-hot -> prefetch; never augmented."""
    ds = test.batch(batch_size).map(
        lambda images, labels: (images, tf.one_hot(labels, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.with_options(_distribution_options()).prefetch(tf.data.AUTOTUNE)

"""What every data source ends as: a ``DatasetInfo`` describing it and ``Splits`` holding its pipelines.

Also the piece the sources share: ``finish_pipeline``, the last steps of every ``tf.data`` pipeline. TensorFlow is
imported only inside ``finish_pipeline``, so describing a dataset stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Keep decoded uint8 images in memory when the split is smaller than this; stream from disk otherwise.
CACHE_IN_MEMORY_BYTES = 1_500_000_000
UNBALANCED_RATIO = 3
"""Warn when the largest class has more than this many times the training images of the smallest."""
NAMED_IN_MESSAGES = 5


@dataclass(frozen=True)
class DatasetInfo:
    """What a page needs to describe a dataset."""

    source: str
    class_names: list[str]
    num_train: int
    num_test: int
    skipped_files: int = 0
    train_counts: list[int] = field(default_factory=list)
    test_counts: list[int] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def warnings(self) -> list[str]:
        """What a person should know before training on this data: skipped files, classes left out, imbalance."""
        found = []
        if self.skipped_files:
            found.append(f"{self.skipped_files} file(s) could not be read as images and were skipped.")
        for counts, split, consequence in (
            (self.train_counts, "training", "the model cannot learn them"),
            (self.test_counts, "test", "their accuracy is never measured"),
        ):
            empty = [name for name, count in zip(self.class_names, counts) if count == 0]
            if counts and empty:
                found.append(
                    f"{len(empty)} of {self.num_classes} classes have no {split} images "
                    f"({_named(empty)}), so {consequence}: raise the number of {split} images to "
                    f"at least {self.num_classes}, or use them all."
                )
        present = [(count, name) for name, count in zip(self.class_names, self.train_counts) if count]
        if len(present) > 1:
            (least, small), (most, big) = min(present), max(present)
            if most > UNBALANCED_RATIO * least:
                found.append(
                    f"The classes are unbalanced: '{big}' has {most} training images and '{small}' only "
                    f"{least}, so the model will favour the big classes; add images to the small ones "
                    "if you can."
                )
        return found


@dataclass(frozen=True)
class Splits:
    """Unbatched train/test pipelines plus their description."""

    train: Any
    test: Any
    info: DatasetInfo


def _named(items: list[str]) -> str:
    shown = ", ".join(f"'{item}'" for item in items[:NAMED_IN_MESSAGES])
    return shown + (f" and {len(items) - NAMED_IN_MESSAGES} more" if len(items) > NAMED_IN_MESSAGES else "")


def without_autotuning(ds):
    """``ds`` with tf.data's model-based autotuning off: its AUTOTUNE maps then run one call per core, and its
    prefetch buffers still grow on their own.

    Why: a pipeline with a Python generator in it (the decoded-image cache reads and writes through one) was
    often not destroyed at once when a pass ended. Destroying its iterator waited for the autotuner's thread,
    which wakes on its own schedule, while the thread destroying it held the GIL: 4-9 s at the end of most
    passes over dogs10 (py-spy: ~LogicalThreadWrapper under EagerTensor_dealloc), a warm extraction falling
    from 66-74 to 38 images/s, and each split of a cold run paying it. Without it: no such stall in 16 passes.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def finish_pipeline(ds, count: int, image_size: int, *, in_memory: bool = True):
    """Cache small splits as uint8 (4x smaller than float), then hand out float32 0..255 images, without
    autotuning (``without_autotuning``). ``in_memory=False``: the images are read from a memory map already, a
    second copy would only cost memory."""
    import tensorflow as tf

    if in_memory and count * image_size * image_size * 3 <= CACHE_IN_MEMORY_BYTES:
        ds = ds.cache()

    def to_float(image, label):
        return tf.cast(image, tf.float32), label

    return without_autotuning(ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE))

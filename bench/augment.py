"""Is augmentation fast enough? Preview latency and tf.data throughput vs frozen-head training.

Prints one JSON line: ``preview_9_median_s`` (9 previews of a 224 px image, notebook preset, median
after warm-up), ``pipeline_img_per_s`` (tf.data, notebook preset, batch 64, 224 px) and
``frozen_train_img_per_s`` (EfficientNetB0 frozen + the notebook head, batch 32, 224 px), plus their
ratio, which should be at least 3 so that augmentation never limits training.

Run: ``python -m bench.augment`` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from core.augment import build_augmenter, preview  # noqa: E402
from core.config import AUGMENT_PRESETS

SIZE = 224
NUM_CLASSES = 10


def preview_median_s(repeats: int = 7) -> tuple[float, float]:
    """Median seconds for ``preview(image, cfg, 9)`` (new augmenter each time, as on the page)."""
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    results = []
    for name in ("notebook", "strong"):
        preview(image, AUGMENT_PRESETS[name])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            preview(image, AUGMENT_PRESETS[name], 9)
            times.append(time.perf_counter() - start)
        results.append(statistics.median(times))
    return results[0], results[1]


def pipeline_img_per_s(preset: str, images: int = 512, batch: int = 64, epochs: int = 2) -> float:
    """Images per second through a batched tf.data pipeline mapping the augmenter (no model)."""
    import tensorflow as tf

    pixels = np.random.default_rng(1).integers(0, 256, (images, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.zeros(images, dtype=np.int32)
    augmenter = build_augmenter(AUGMENT_PRESETS[preset])
    ds = (
        tf.data.Dataset.from_tensor_slices((pixels, labels))
        .batch(batch)
        .map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    for _ in ds.take(2):
        pass
    start = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        for x, _ in ds:
            seen += int(x.shape[0])
    return seen / (time.perf_counter() - start)


def frozen_train_img_per_s(batches: int = 10, warmup: int = 3, batch: int = 32) -> float:
    """Training throughput of the notebook's frozen EfficientNetB0 + head (random weights, same cost)."""
    import keras

    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    backbone.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-4, weight_decay=0.01), "categorical_crossentropy")

    rng = np.random.default_rng(2)
    count = batch * (batches + warmup)
    images = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8).astype(np.float32)
    labels = keras.utils.to_categorical(rng.integers(0, NUM_CLASSES, count), NUM_CLASSES)

    class BatchClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch_index: int, logs: dict | None = None) -> None:
            ends.append(time.perf_counter())

    ends: list[float] = []
    model.fit(images, labels, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[BatchClock()])
    timed = ends[warmup - 1 :]
    return batch * (len(timed) - 1) / (timed[-1] - timed[0])


def main() -> None:
    preview_notebook, preview_strong = preview_median_s()
    pipeline = pipeline_img_per_s("notebook")
    pipeline_strong = pipeline_img_per_s("strong")
    frozen = frozen_train_img_per_s()
    print(
        json.dumps(
            {
                "preview_9_median_s": round(preview_notebook, 4),
                "pipeline_img_per_s": round(pipeline, 1),
                "frozen_train_img_per_s": round(frozen, 1),
                "pipeline_over_frozen": round(pipeline / frozen, 2),
                "preview_9_strong_median_s": round(preview_strong, 4),
                "pipeline_strong_img_per_s": round(pipeline_strong, 1),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()

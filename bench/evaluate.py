"""Is evaluation fast enough? Our prediction loop vs ``model.predict``, and the 120-class heatmap.

Prints one JSON line:

- ``eval_img_per_s``: ``core.predictions.predict_dataset`` (the loop inside ``predict_split``) over
  the demo test split at 224 px (256 images, batch 64), EfficientNetB0 with random weights;
- ``predict_img_per_s``: ``model.predict`` on the same batched, already cached dataset;
  each is timed on a freshly loaded model (so both pay their one trace), best of ``ROUNDS``,
  alternating, because other processes share the CPU. The goal: ``eval_vs_predict`` >= 0.9;
- ``predict_split_total_s``: one full ``predict_split`` without cache (data pipeline, model
  loading, trace, inference), and ``cached_reopen_s``: the same call answered from its cache;
- ``heatmap_build_s``: the first ``confusion_heatmap`` of a random 120-class matrix in cluster
  order, serialised with ``to_json`` (the page's cost), and ``heatmap_build_warm_s`` the next one.

Run: ``python -m bench.evaluate`` (a few minutes on 2 cores; draws the 224 px demo set on first use).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from core import evaluation, figures, predictions  # noqa: E402
from core.config import DataConfig  # noqa: E402
from core.data import load_splits  # noqa: E402
from core.models import load_saved_model  # noqa: E402

SIZE = 224
TEST_IMAGES = 256
BATCH = 64
ROUNDS = 3
HEATMAP_CLASSES = 120


def heatmap_seconds() -> tuple[float, float]:
    rng = np.random.default_rng(0)
    cm = rng.poisson(0.4, (HEATMAP_CLASSES, HEATMAP_CLASSES)) + np.diag(rng.integers(20, 60, HEATMAP_CLASSES))
    names = [f"breed number {i}" for i in range(HEATMAP_CLASSES)]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        figures.confusion_heatmap(cm, names, evaluation.cluster_order(cm)).to_json()
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    import keras
    import tensorflow as tf

    heatmap_cold, heatmap_warm = heatmap_seconds()
    config = DataConfig(source="demo", max_test_images=TEST_IMAGES)
    splits = load_splits(config, SIZE)
    batches = splits.test.batch(BATCH).prefetch(tf.data.AUTOTUNE)
    count = sum(int(labels.shape[0]) for _, labels in batches)  # fills the in-memory cache
    with tempfile.TemporaryDirectory() as folder:
        model_path = Path(folder) / "model.keras"
        keras.applications.EfficientNetB0(weights=None, classes=splits.info.num_classes).save(model_path)

        def ours() -> float:
            model = load_saved_model(model_path, compile=False)
            start = time.perf_counter()
            predictions.predict_dataset(model, batches, splits.info.class_names, count)
            return count / (time.perf_counter() - start)

        def keras_predict() -> float:
            model = load_saved_model(model_path, compile=False)
            start = time.perf_counter()
            model.predict(batches, verbose=0)
            return count / (time.perf_counter() - start)

        rates: dict[str, list[float]] = {"ours": [], "predict": []}
        for _ in range(ROUNDS):
            rates["predict"].append(keras_predict())
            rates["ours"].append(ours())

        cache = Path(folder) / "predictions.npz"
        start = time.perf_counter()
        predictions.predict_split(model_path, config, SIZE, cache, batch_size=BATCH)
        total = time.perf_counter() - start
        start = time.perf_counter()
        predictions.predict_split(model_path, config, SIZE, cache, batch_size=BATCH)
        reopen = time.perf_counter() - start

    eval_rate, predict_rate = max(rates["ours"]), max(rates["predict"])
    print(
        json.dumps(
            {
                "eval_img_per_s": round(eval_rate, 1),
                "predict_img_per_s": round(predict_rate, 1),
                "eval_vs_predict": round(eval_rate / predict_rate, 3),
                "eval_rounds_img_per_s": [round(r, 1) for r in rates["ours"]],
                "predict_rounds_img_per_s": [round(r, 1) for r in rates["predict"]],
                "test_images": count,
                "image_size": SIZE,
                "batch_size": BATCH,
                "predict_split_total_s": round(total, 2),
                "cached_reopen_s": round(reopen, 3),
                "heatmap_build_s": round(heatmap_cold, 3),
                "heatmap_build_warm_s": round(heatmap_warm, 3),
                "heatmap_classes": HEATMAP_CLASSES,
            }
        )
    )


if __name__ == "__main__":
    main()

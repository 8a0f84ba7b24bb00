"""Is classifying fast enough? One photo's latency and a folder's throughput, EfficientNetB0 at 224 px.

Prints one JSON line:

- ``single_latency_median_ms``: ``classify(classifier, [file])`` for one 400x300 JPEG (read, decode, resize,
  predict), warm, median over 30 files. Target: at most 40 ms on 2 cores.
- ``folder_img_per_s``: ``classify`` over a folder of 64 such JPEGs (decoding included), best of 3 rounds.
- ``batched_predict_img_per_s``: ``model.predict`` (batch 32) on the same 64 images already decoded and
  resized, best of 3 rounds interleaved with the folder rounds. Target: folder at least 80% of this.
- also ``folder_vs_predict`` (the ratio), ``compiled_call_ms`` (the bare compiled model call on one image) and
  ``prepare_ms`` (reading, decoding and resizing one file): the latency is about their sum.

Weights are random (``weights=None``): they do not change the timing. Other processes sharing the CPU make
the numbers noisy; run it twice if they look odd. Run: ``python -m bench.predict`` (about a minute).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from core import demo  # noqa: E402
from core.data_home import data_home  # noqa: E402
from core.images import read_image_file  # noqa: E402
from core.serving.classification import classify  # noqa: E402
from core.serving.classifiers import Classifier, classifier_from_file  # noqa: E402

SIZE = 224
NUM_CLASSES = 10
FOLDER_IMAGES = 64
PHOTO_SIZE = (400, 300)
SINGLE_REPEATS = 30
ROUNDS = 3


def write_photos(folder: Path) -> list[Path]:
    """64 demo pictures saved as 400x300 JPEGs, like phone photos scaled down."""
    paths = []
    for i in range(FOLDER_IMAGES):
        path = folder / f"photo_{i:02d}.jpg"
        demo.render(i % len(demo.CLASS_NAMES), "test", i, PHOTO_SIZE[0]).resize(PHOTO_SIZE).save(path, quality=90)
        paths.append(path)
    return paths


def b0_classifier(folder: Path) -> Classifier:
    import keras

    path = folder / "b0.keras"
    keras.applications.EfficientNetB0(weights=None, classes=NUM_CLASSES, input_shape=(SIZE, SIZE, 3)).save(path)
    return classifier_from_file(path, [f"class {i}" for i in range(NUM_CLASSES)])


def single_latency_ms(classifier: Classifier, paths: list[Path]) -> float:
    for path in paths[:3]:
        classify(classifier, [path])
    times = []
    for path in paths[:SINGLE_REPEATS]:
        start = time.perf_counter()
        [result] = classify(classifier, [path])
        times.append(time.perf_counter() - start)
        assert result.ok, result.error
    return 1000 * statistics.median(times)


def prepare_ms(classifier: Classifier, paths: list[Path]) -> float:
    """Read, decode and resize one file: the part of the latency outside the model."""
    times = []
    for path in paths[:SINGLE_REPEATS]:
        start = time.perf_counter()
        classifier.prepare(read_image_file(path))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def compiled_call_ms(classifier: Classifier, image: np.ndarray) -> float:
    times = []
    for _ in range(SINGLE_REPEATS):
        start = time.perf_counter()
        classifier.predict(image[None])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def throughputs(classifier: Classifier, paths: list[Path], prepared: np.ndarray) -> tuple[float, float]:
    """(folder img/s, model.predict img/s), each the best of interleaved rounds."""
    classify(classifier, paths)
    classifier.model.predict(prepared, batch_size=32, verbose=0)
    folder, predict = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        results = classify(classifier, paths)
        folder.append(len(paths) / (time.perf_counter() - start))
        assert all(r.ok for r in results)
        start = time.perf_counter()
        classifier.model.predict(prepared, batch_size=32, verbose=0)
        predict.append(len(prepared) / (time.perf_counter() - start))
    return max(folder), max(predict)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-predict-", dir=data_home()) as temporary:
        folder = Path(temporary)
        paths = write_photos(folder)
        classifier = b0_classifier(folder)
        classifier.warm_up()
        prepared = np.stack([classifier.prepare(read_image_file(path)) for path in paths])
        single = single_latency_ms(classifier, paths)
        bare = compiled_call_ms(classifier, prepared[0])
        preparing = prepare_ms(classifier, paths)
        folder_rate, predict_rate = throughputs(classifier, paths, prepared)
    print(
        json.dumps(
            {
                "single_latency_median_ms": round(single, 1),
                "folder_img_per_s": round(folder_rate, 1),
                "batched_predict_img_per_s": round(predict_rate, 1),
                "folder_vs_predict": round(folder_rate / predict_rate, 2),
                "compiled_call_ms": round(bare, 1),
                "prepare_ms": round(preparing, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

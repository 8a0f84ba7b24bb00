"""Is an export the same model? Its answers on the run's test split against the Keras model's, its size, its speed.

``verify`` runs the exported file through its own runtime one image at a time (as a deployed app does) and
compares each top-1 class with the Keras model's prediction of the same test image (``core.predictions``).
Latency is a warm single-image call: three calls to warm up, then the median of ``LATENCY_CALLS``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.errors import ExportError
from core.exports.formats import FORMATS, ExportFormat
from core.predictions import Predictions
from core.progress import Progress

WARM_UP_CALLS = 3
LATENCY_CALLS = 15


@dataclass(frozen=True)
class Report:
    """One export's verification, as the page's table and the CLI's line show it."""

    format: str
    size_mb: float
    agreement: float  # share of test images whose top-1 class is the Keras model's
    accuracy: float  # the export's own test accuracy
    keras_accuracy: float
    latency_ms: float  # one image, warm, median
    images: int  # test images compared
    threshold: float

    @property
    def passed(self) -> bool:
        return self.agreement >= self.threshold

    def line(self) -> str:
        verdict = "verified" if self.passed else f"FLAGGED: agreement below {self.threshold:.2f}"
        return (
            f"{self.format}: {verdict}; {self.size_mb:.2f} MB, top-1 agreement {self.agreement:.3f} with Keras on "
            f"{self.images} test images, accuracy {self.accuracy:.3f} (Keras {self.keras_accuracy:.3f}), "
            f"{self.latency_ms:.1f} ms per image"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Report:
        return cls(**{name: values[name] for name in cls.__dataclass_fields__})

    @property
    def export_format(self) -> ExportFormat:
        return FORMATS[self.format]


def size_mb(path: Path) -> float:
    """A file's size, or a folder's (a SavedModel) summed over its files."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def verify(
    export_format: ExportFormat,
    model_file: Path,
    test_images: Iterable[tuple[int, np.ndarray]],
    keras: Predictions,
    progress: Progress | None = None,
) -> Report:
    """Run the export on ``test_images`` ((position in the test split, uint8 image)) and compare with ``keras``."""
    run = export_format.runner(model_file)
    agreed = correct = done = 0
    first = None
    total = keras.num_examples
    for position, image in test_images:
        first = image if first is None else first
        top = int(np.argmax(run(image)))
        agreed += top == keras.predicted[position]
        correct += top == keras.labels[position]
        done += 1
        if progress and done % 10 == 0:
            progress(done, total, f"verified {done} of {total} test images")
    if not done or first is None:
        raise ExportError("The run's test split is empty, so the export cannot be verified. Use data with test images.")
    for _ in range(WARM_UP_CALLS):
        run(first)
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        run(first)
        times.append(time.perf_counter() - start)
    return Report(
        format=export_format.name,
        size_mb=round(size_mb(model_file), 3),
        agreement=round(agreed / done, 4),
        accuracy=round(correct / done, 4),
        keras_accuracy=round(float(np.mean(keras.predicted == keras.labels)), 4),
        latency_ms=round(1000 * statistics.median(times), 2),
        images=done,
        threshold=export_format.threshold,
    )

"""The Keras callbacks a run trains with, whichever path it takes (every image, or cached features).

- ``RunRecorder``: each epoch's metrics and the live progress into the run store; a stop asked in the
  store ends ``fit`` within one batch (the cut-short epoch is neither saved nor recorded).
- ``EpochCheckpoint``: ``model_last.keras`` / ``model_best.keras`` after each finished epoch (``checkpoints``).
- ``EpochReporter``: one line per epoch for the CLI.
- ``tensorboard_logger``: TensorBoard event logs, scalars only, to keep them light.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from core import runs
from core.errors import RunError
from core.progress import Progress
from core.training import checkpoints

PROGRESS_EVERY_S = 1.0  # the least time between two live-progress writes to the store


class NonFiniteLoss(RunError):
    """The loss became NaN or infinite."""


class RunRecorder(keras.callbacks.Callback):
    """Writes numbers to the run store (epoch metrics, live progress) and honours stop requests.

    A stop sets ``stop_training`` (and ``stop_evaluating`` during validation), so ``fit`` returns
    after the current batch; the cut-short epoch is not recorded."""

    def __init__(self, run_id: str, *, num_train: int, batch_size: int, batches: int):
        super().__init__()
        self.run_id = run_id
        self.num_train = num_train
        self.batch_size = batch_size
        self.batches = batches
        self.stopping = False
        self._epoch = 0
        self._started = 0.0
        self._train_seconds = 0.0
        self._images = 0
        self._last_write = 0.0

    def _stop(self) -> None:
        self.stopping = True
        self.model.stop_training = True
        self.model.stop_evaluating = True

    def _check_stop(self) -> None:
        if not self.stopping and runs.stop_requested(self.run_id):
            self._stop()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._check_stop()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1
        self._started = time.perf_counter()
        self._images = 0
        runs.record_progress(self.run_id, phase=runs.TRAINING, epoch=self._epoch, batch=0, batches=self.batches)
        self._last_write = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(
                f"The loss became {float(loss)} at epoch {self._epoch}, batch {batch + 1}: the "
                "learning rate is probably too high for this model. Lower it and start again."
            )
        self._images = min((batch + 1) * self.batch_size, self.num_train)
        self._train_seconds = time.perf_counter() - self._started
        self._check_stop()
        if time.monotonic() - self._last_write >= PROGRESS_EVERY_S or batch + 1 >= self.batches:
            runs.record_progress(self.run_id, phase=runs.TRAINING, batch=batch + 1, images_per_s=self._speed())
            self._last_write = time.monotonic()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self.stopping:
            self.model.stop_evaluating = True
        else:
            runs.record_progress(self.run_id, phase="validating")

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._check_stop()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.stopping:
            return
        runs.record_epoch(
            self.run_id, epoch + 1, logs or {}, seconds=time.perf_counter() - self._started, images_per_s=self._speed()
        )

    def _speed(self) -> float | None:
        return self._images / self._train_seconds if self._train_seconds > 0 else None

    def epoch_timing(self) -> tuple[float, float | None]:
        """The current epoch's seconds so far and training speed, as ``on_epoch_end`` records them."""
        return time.perf_counter() - self._started, self._speed()


class EpochCheckpoint(keras.callbacks.Callback):
    """``model_last.keras`` after every finished epoch, ``model_best.keras`` on the best val_accuracy, each with
    the note of the epoch it holds (``checkpoints``). ``saves``: the model to save when it is not the one ``fit``
    trains (the cached-features path trains a head and saves the whole model); ``timing``: the epoch's
    (seconds, images/s) for the note, usually ``RunRecorder.epoch_timing``."""

    def __init__(
        self,
        folder: Path,
        best_val_accuracy: float | None = None,
        *,
        saves: Any = None,
        timing: Callable[[], tuple[float | None, float | None]] | None = None,
    ):
        super().__init__()
        self.folder = folder
        self.best = best_val_accuracy
        self.saves = saves
        self.timing = timing

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.stop_training:
            return  # the epoch was cut short by a stop: keep the previous checkpoint
        seconds, images_per_s = self.timing() if self.timing else (None, None)
        self.best = checkpoints.save(
            self.model if self.saves is None else self.saves,
            self.folder,
            epoch=epoch + 1,
            metrics=logs or {},
            best_val_accuracy=self.best,
            seconds=seconds,
            images_per_s=images_per_s,
        )


class EpochReporter(keras.callbacks.Callback):
    """Calls ``progress(epoch, epochs, line)`` after each epoch (the CLI prints the line)."""

    def __init__(self, progress: Progress, epochs: int):
        super().__init__()
        self.progress = progress
        self.epochs = epochs
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.stop_training:
            return
        shown = ", ".join(f"{name} {float(logs[name]):.4f}" for name in runs.METRICS if name in (logs or {}))
        self.progress(
            epoch + 1,
            self.epochs,
            f"epoch {epoch + 1}/{self.epochs}: {shown} ({time.perf_counter() - self._started:.1f} s)",
        )


def tensorboard_logger(log_dir: Path) -> list[Any]:
    """Keras' TensorBoard callback, scalars per epoch only (no graph, histograms or profiling), or nothing
    when the ``tensorboard`` package (which ``tf.summary`` needs) is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        print("TensorBoard logs skipped: `pip install tensorboard` to get them.", file=sys.stderr)
        return []
    return [
        keras.callbacks.TensorBoard(
            log_dir=str(log_dir),
            histogram_freq=0,
            write_graph=False,
            write_images=False,
            update_freq="epoch",
            profile_batch=0,
        )
    ]

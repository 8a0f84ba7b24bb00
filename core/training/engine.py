"""The run skeleton: one run, from its stored config to recorded epochs and saved models.

A run trains in its own process (``python -m core.training.worker --run-id ID``, started by
``core.runs.start_run``) or in the foreground of the CLI (``python -m core.training``); both go through
``execute``, which records how the run ends. ``train`` owns the run whichever way its model is fitted:
it creates the strategy scope, the callbacks, the checkpoints, the recorder and TensorBoard logs, checks
for stops and resumes; a training path (``path.TrainingPath``) supplies only what differs: the models,
the data of each segment of epochs. ``fit`` runs with callbacks that

- save ``model_last.keras`` after every epoch and ``model_best.keras`` on the best validation
  accuracy, with the epoch they hold (``checkpoints``: written to a temporary file and renamed, so a
  killed process never leaves half a model, and the store and the checkpoint agree after any kill);
- record each epoch's metrics and the live progress in the run store, and stop within one batch
  when the store says so (``callbacks.RunRecorder``);
- write TensorBoard event logs (scalars only, to keep them light).

A stopped, interrupted or failed run resumes from ``model_last.keras`` with the next epoch number.
An epoch cut short by a stop is neither saved nor recorded.

This module imports TensorFlow; pages use ``core.runs`` instead.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from core import devices, runs
from core.config import RunConfig
from core.data import load_splits
from core.data_home import FULL, READ_ONLY, cannot_write, home_path
from core.errors import RunError, TransferLabError
from core.models import parameter_counts
from core.progress import Progress
from core.training import checkpoints, keras_compat
from core.training.cached_features import CachedFeaturePath, uses_feature_cache
from core.training.callbacks import EpochCheckpoint, EpochReporter, RunRecorder, tensorboard_logger
from core.training.image_path import ImagePath
from core.training.path import Models, StopRequested, TrainingPath
from core.training.pipelines import batches_per_epoch


@dataclass
class Outcome:
    """How a run ended, with the last finished epoch's metrics (empty when none finished)."""

    run_id: str | None
    status: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None


def training_path(config: RunConfig, run_id: str | None, progress: Progress | None = None) -> TrainingPath:
    """Frozen runs with ``feature_cache`` train their head on cached backbone features; every other run
    sends every image through the whole network."""
    kind = CachedFeaturePath if uses_feature_cache(config) else ImagePath
    return kind(config.resolved(), run_id, progress)


def train(
    config: RunConfig,
    run_id: str | None,
    strategy: Any,
    device: str,
    *,
    progress: Progress | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[dict[str, float | None], bool]:
    """Train ``config`` under ``strategy``. With a ``run_id`` everything is recorded in the store and saved
    in the run's folder; without one (a non-chief worker) nothing is. Returns (last epoch's metrics, stopped).
    Settings left to the machine (batch size, 'auto' precision) are filled in first; a stored run has them already
    (``create_run`` stores them), so a resume on another machine keeps what the run started with."""
    config = config.resolved()
    path = training_path(config, run_id, progress)
    train_cfg = config.train

    precision = devices.apply_precision(train_cfg.mixed_precision)
    keras.utils.set_random_seed(train_cfg.seed)
    path.note("loading data")
    splits = load_splits(config.data, config.model.effective_image_size, progress=progress)
    done = checkpoints.epochs_done(run_id) if run_id else 0
    epochs = config.effective_epochs
    if run_id and runs.stop_requested(run_id):
        return stopped_early(run_id)

    path.note("building model")
    with strategy.scope():
        models = path.build(splits.info.num_classes, done, devices.jit_compile_setting())
    if run_id and runs.stop_requested(run_id):
        return stopped_early(run_id)
    try:
        fitting = path.prepare(splits, done)
    except StopRequested:
        return stopped_early(run_id)
    if strategy is not tf.distribute.get_strategy():
        keras_compat.fit_under_multi_worker_strategy(models.fitted, fitting.test)

    recorder = None
    hooks: list[Any] = []
    if run_id:
        recorder = RunRecorder(
            run_id,
            num_train=fitting.num_train,
            batch_size=train_cfg.batch_size,
            batches=batches_per_epoch(fitting.num_train, train_cfg.batch_size),
        )
        hooks += stored_run_callbacks(run_id, path, models, device, precision, recorder)
    if progress is not None:
        hooks.append(EpochReporter(progress, epochs))
    hooks += list(callbacks)

    history = None
    for start, stop in path.segments(done, epochs):
        if start > done and ((recorder and recorder.stopping) or models.fitted.stop_training):
            break
        try:
            train_data = path.training_data(start, stop)
        except StopRequested:
            return stopped_early(run_id)
        path.note(runs.TRAINING, epoch=start + 1)
        history = models.fitted.fit(
            train_data,
            steps_per_epoch=fitting.steps_per_epoch,
            validation_data=fitting.test,
            epochs=stop,
            initial_epoch=start,
            callbacks=hooks,
            verbose=0,
            shuffle=False,
        )
    return fit_outcome(run_id, history, recorder)


def stopped_early(run_id: str | None) -> tuple[dict[str, float | None], bool]:
    """What ``train`` returns when a stop came before a ``fit`` could see it: the metrics recorded so far."""
    return (last_recorded(run_id) if run_id else {}), True


def stored_run_callbacks(
    run_id: str, path: TrainingPath, models: Models, device: str, precision: str, recorder: RunRecorder
) -> list[Any]:
    """Record what the run built, and the callbacks that checkpoint, record and log each epoch of it."""
    folder = runs.run_folder(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    total, trainable = parameter_counts(models.saved)
    shown_device = device if precision == "float32" else f"{device}, {precision}"
    runs.record_setup(
        run_id,
        device=shown_device + path.device_note,
        total_params=total,
        trainable_params=trainable,
        unfrozen_layers=models.unfrozen,
    )
    keras_compat.cache_saving_skipsets()
    return [
        EpochCheckpoint(
            folder, runs.get_run(run_id).best_val_accuracy, saves=models.saved, timing=recorder.epoch_timing
        ),
        recorder,
        *tensorboard_logger(folder / runs.TENSORBOARD_DIR),
    ]


def fit_outcome(run_id: str | None, history: Any, recorder: RunRecorder | None) -> tuple[dict[str, float | None], bool]:
    """What ``train`` returns after ``fit``: the last epoch's metrics (the store's, for a stored run)
    and whether a stop was asked."""
    stopped = bool(recorder and recorder.stopping)
    if run_id:
        return last_recorded(run_id), stopped
    trained = history.history.items() if history is not None else ()
    return {name: float(values[-1]) for name, values in trained if values}, stopped


def last_recorded(run_id: str) -> dict[str, float | None]:
    """The metrics of a run's last recorded epoch ({} before its first)."""
    recorded = runs.epochs(run_id)
    return recorded[-1].metrics() if recorded else {}


def friendly_error(error: BaseException, config: RunConfig | None = None) -> str:
    """One or two sentences for the run list."""
    if isinstance(error, TransferLabError):
        return str(error)
    if isinstance(error, OSError) and error.errno in FULL + READ_ONLY:
        where = Path(error.filename).parent if isinstance(error.filename, str) else home_path()
        return str(cannot_write(where, error, then="resume the run"))
    text = str(error).strip()
    if isinstance(error, MemoryError) or type(error).__name__ == "ResourceExhaustedError" or "OOM" in text:
        what = ""
        if config is not None:
            what = (
                f" training {config.model.backbone} at {config.model.effective_image_size} px with batch size "
                f"{config.effective_batch_size}"
            )
        return f"Ran out of memory{what}. Lower the batch size or the image size, then resume or start again."
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]


def execute(run_id: str, *, progress: Progress | None = None, callbacks: Sequence[Any] = ()) -> Outcome:
    """Train a run the store has marked running for this process, recording how it ends."""
    record = runs.get_run(run_id)
    if record.status != runs.RUNNING:
        raise RunError(f"Run {run_id} is {record.status}, not running: start it with start_run or resume_run.")
    config = record.config
    try:
        strategy, device = devices.create_strategy()
        with runs.keep_open():
            metrics, stopped = train(config, run_id, strategy, device, progress=progress, callbacks=callbacks)
    except (KeyboardInterrupt, SystemExit) as error:
        runs.finish_run(
            run_id,
            runs.INTERRUPTED,
            "Training was interrupted (Ctrl-C or the process was asked to "
            "end). Resume the run to continue from its last checkpoint.",
        )
        raise error
    except Exception as error:  # every failure becomes a readable status; epochs so far stay recorded
        traceback.print_exc(file=sys.stderr)
        message = friendly_error(error, config)
        runs.finish_run(run_id, runs.FAILED, message)
        return Outcome(run_id, runs.FAILED, last_recorded(run_id), message)
    status = runs.STOPPED if stopped else runs.COMPLETED
    runs.finish_run(run_id, status)
    return Outcome(run_id, status, metrics)


def train_foreground(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    waiting: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
) -> Outcome:
    """Train in this process (the CLI), recorded in the same store; waits its turn if a run is training.

    In a multi-worker cluster only the chief records; the other workers train unrecorded."""
    if not devices.is_chief():
        strategy, device = devices.create_strategy()
        metrics, _ = train(config, None, strategy, device, progress=progress)
        return Outcome(None, runs.COMPLETED, metrics)
    run_id = runs.create_run(config, runs.FOREGROUND)
    told = False
    try:
        while not runs.claim_foreground(run_id):
            if waiting is not None and not told:
                busy = runs.running_run()
                waiting(
                    f"Run {run_id} is queued (position {runs.queue_position(run_id)}); "
                    + (f"waiting for run {busy.id} to finish." if busy else "waiting for its turn.")
                )
                told = True
            time.sleep(poll_s)
    except (KeyboardInterrupt, SystemExit):
        runs.request_stop(run_id)
        raise
    return execute(run_id, progress=progress)

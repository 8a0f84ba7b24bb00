"""The training engine: one run, from its stored config to recorded epochs and saved models.

A run trains in its own process (``python -m core.training --run-id ID``, started by
``core.runs.start_run``) or in the foreground of the CLI (``core.train``); both go through
``execute``. One ``model.fit(epochs=N)`` does the whole run, with callbacks that

- save ``model_last.keras`` after every epoch and ``model_best.keras`` on the best validation
  accuracy, with the epoch they hold (``core.checkpoints``: written to a temporary file and renamed, so a
  killed process never leaves half a model, and the store and the checkpoint agree after any kill);
- record each epoch's metrics and the live progress in the run store, and stop within one batch
  when the store says so (``RunRecorder``);
- write TensorBoard event logs (scalars only, to keep it light).

A stopped, interrupted or failed run resumes from ``model_last.keras`` with the next epoch number.
An epoch cut short by a stop is neither saved nor recorded.

This module imports TensorFlow; pages use ``core.runs`` instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from core import checkpoints, devices, features, runs
from core.augment import build_augmenter
from core.data import Splits, load_splits
from core.errors import ConfigError, RunError, TransferLabError
from core.home import FULL, READ_ONLY, cannot_write, home_path
from core.models import build_model, compile_model, load_saved_model, parameter_counts, unfreeze_for_finetune
from core.config import RunConfig

Progress = Callable[[int, int, str], None]

# Drop the last, smaller batch only when it is a small share of an epoch (the notebook always drops it).
DROP_REMAINDER_MIN_BATCHES = 10
# Training images wait in the shuffle buffer as uint8; this bounds its memory.
SHUFFLE_BUFFER_BYTES = 512 * 2**20
PROGRESS_EVERY_S = 1.0


class NonFiniteLoss(RunError):
    """The loss became NaN or infinite."""


@dataclass
class Outcome:
    """How a run ended, with the last finished epoch's metrics (empty when none finished)."""

    run_id: str | None
    status: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None


# ---------------------------------------------------------------------------------------------- pipelines

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


def training_pipeline(train: tf.data.Dataset, *, num_train: int, num_classes: int, image_size: int,
                      batch_size: int, augment: Any, seed: int) -> tf.data.Dataset:
    """Shuffle (seeded, new order each epoch) -> batch -> augment (a fresh augmenter) -> one-hot -> prefetch.

    Images wait in the shuffle buffer as uint8, four times smaller than float32 (the data module
    already caches small splits, before augmentation)."""
    augmenter = build_augmenter(augment)
    ds = train.map(lambda image, label: (tf.cast(tf.round(image), tf.uint8), label),
                   num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.shuffle(_shuffle_buffer(num_train, image_size, batch_size), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder(num_train, batch_size))
    ds = ds.map(lambda images, labels: (augmenter(images, training=True), tf.one_hot(labels, num_classes)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.with_options(_distribution_options()).prefetch(tf.data.AUTOTUNE)


def test_pipeline(test: tf.data.Dataset, *, num_classes: int, batch_size: int) -> tf.data.Dataset:
    """Batch -> one-hot -> prefetch; never augmented."""
    ds = test.batch(batch_size).map(lambda images, labels: (images, tf.one_hot(labels, num_classes)),
                                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.with_options(_distribution_options()).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------- callbacks

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
        runs.record_progress(self.run_id, phase="training", epoch=self._epoch, batch=0, batches=self.batches)
        self._last_write = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(f"The loss became {float(loss)} at epoch {self._epoch}, batch {batch + 1}: the "
                                "learning rate is probably too high for this model. Lower it and start again.")
        self._images = min((batch + 1) * self.batch_size, self.num_train)
        self._train_seconds = time.perf_counter() - self._started
        self._check_stop()
        if time.monotonic() - self._last_write >= PROGRESS_EVERY_S or batch + 1 >= self.batches:
            runs.record_progress(self.run_id, phase="training", batch=batch + 1, images_per_s=self._speed())
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
        runs.record_epoch(self.run_id, epoch + 1, logs or {}, seconds=time.perf_counter() - self._started,
                          images_per_s=self._speed())

    def _speed(self) -> float | None:
        return self._images / self._train_seconds if self._train_seconds > 0 else None

    def epoch_timing(self) -> tuple[float, float | None]:
        """The current epoch's seconds so far and training speed, as ``on_epoch_end`` records them."""
        return time.perf_counter() - self._started, self._speed()


class EpochCheckpoint(keras.callbacks.Callback):
    """``model_last.keras`` after every finished epoch, ``model_best.keras`` on the best val_accuracy, each with
    the note of the epoch it holds (``core.checkpoints``). ``saves``: the model to save when it is not the one
    ``fit`` trains (the cached-features path trains a head and saves the whole model); ``timing``: the epoch's
    (seconds, images/s) for the note, usually ``RunRecorder.epoch_timing``."""

    def __init__(self, folder: Path, best_val_accuracy: float | None = None, *, saves: Any = None,
                 timing: Callable[[], tuple[float | None, float | None]] | None = None):
        super().__init__()
        self.folder = folder
        self.best = best_val_accuracy
        self.saves = saves
        self.timing = timing

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.stop_training:
            return  # the epoch was cut short by a stop: keep the previous checkpoint
        seconds, images_per_s = self.timing() if self.timing else (None, None)
        self.best = checkpoints.save(self.model if self.saves is None else self.saves, self.folder, epoch=epoch + 1,
                                     metrics=logs or {}, best_val_accuracy=self.best, seconds=seconds,
                                     images_per_s=images_per_s)


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
        self.progress(epoch + 1, self.epochs,
                      f"epoch {epoch + 1}/{self.epochs}: {shown} ({time.perf_counter() - self._started:.1f} s)")


def tensorboard_logger(log_dir: Path) -> list[Any]:
    """Keras' TensorBoard callback, scalars per epoch only (no graph, histograms or profiling), or nothing
    when the ``tensorboard`` package (which ``tf.summary`` needs) is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        print("TensorBoard logs skipped: `pip install tensorboard` to get them.", file=sys.stderr)
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0, write_graph=False,
                                        write_images=False, update_freq="epoch", profile_batch=0)]


def _work_around_keras_under_strategies(model: Any, dataset: tf.data.Dataset) -> None:
    """Two Keras 3.15 defects break ``fit`` under MultiWorkerMirroredStrategy; both are bypassed here.

    1. Before training, ``fit`` builds its metrics by ``strategy.reduce``-ing a whole distributed (x, y)
       batch as one value ("Attempt to convert a value (PerReplica...)"). Only shapes matter for that
       build, so it gets one local batch instead.
    2. After each step it averages the scalar logs across workers with ``axis=0`` ("Invalid reduction
       dimension 0 for input with 0 dimensions"); the mean across replicas needs ``axis=None``.
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    batch = next(iter(dataset.take(1)))
    build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=batch)

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "averages_across_workers", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and keras_tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.averages_across_workers = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


# ---------------------------------------------------------------------------------------------- the run

def _check_classes(model: Any, num_classes: int, source: str) -> None:
    outputs = model.output_shape[-1]
    if outputs != num_classes:
        raise ConfigError(f"{source} predicts {outputs} classes but this data has {num_classes}: use the same "
                          "data source as the run it continues.")


def resumed_model(run_id: str, done: int, num_classes: int) -> Any:
    """The compiled model a run saved after its last recorded epoch (``done``), to continue from."""
    record = runs.get_run(run_id)
    if record.last_model is None:
        raise RunError(f"“{record.name}” recorded {done} epoch(s) but its model_last.keras is gone, so it cannot "
                       "resume. Start a new run.")
    model = load_saved_model(record.last_model, compile=True)
    _check_classes(model, num_classes, f"The saved model of “{record.name}”")
    return model


def _model_for(config: RunConfig, run_id: str | None, num_classes: int, done: int,
               jit_compile: bool | str) -> tuple[Any, list[str] | None]:
    """The compiled model to train, and the layers a fine-tune unfroze (None when not fine-tuning now)."""
    model_cfg = config.model
    if done:
        return resumed_model(run_id, done, num_classes), None
    unfrozen = None
    if model_cfg.regime == "finetune":
        parent = runs.get_run(model_cfg.parent_run_id)
        if parent.last_model is None:
            raise RunError(f"The frozen run “{parent.name}” has no saved model to fine-tune.")
        model = load_saved_model(parent.last_model, compile=False)
        _check_classes(model, num_classes, f"The frozen run “{parent.name}”")
        unfrozen = unfreeze_for_finetune(model, model_cfg.unfreeze_top_layers, model_cfg.unfreeze_from_block)
    else:
        model = build_model(model_cfg, num_classes)
    compile_model(model, config.effective_learning_rate, config.effective_weight_decay, jit_compile=jit_compile)
    return model, unfrozen


def train(config: RunConfig, run_id: str | None, strategy: Any, device: str, *,
          progress: Progress | None = None, callbacks: Sequence[Any] = ()) -> tuple[dict[str, float | None], bool]:
    """Train ``config`` under ``strategy``. With a ``run_id`` everything is recorded in the store and saved
    in the run's folder; without one (a non-chief worker) nothing is. Returns (last epoch's metrics, stopped).
    Frozen runs with ``feature_cache`` train their head on cached backbone features (``core.features``)."""
    if features.uses_feature_cache(config):
        return features.train_on_features(config, run_id, strategy, device, progress=progress, callbacks=callbacks)
    model_cfg, train_cfg = config.model, config.train
    note = (lambda phase: runs.record_progress(run_id, phase=phase)) if run_id else (lambda phase: None)
    stop_asked = (lambda: runs.stop_requested(run_id)) if run_id else (lambda: False)

    precision = devices.apply_precision(train_cfg.mixed_precision)
    keras.utils.set_random_seed(train_cfg.seed)
    note("loading data")
    image_size = model_cfg.effective_image_size
    splits: Splits = load_splits(config.data, image_size, progress=progress)
    info = splits.info
    done = checkpoints.epochs_done(run_id) if run_id else 0
    epochs = config.effective_epochs
    if stop_asked():
        return last_recorded(run_id), True

    note("building model")
    with strategy.scope():
        model, unfrozen = _model_for(config, run_id, info.num_classes, done, devices.jit_compile_setting())
    if stop_asked():
        return last_recorded(run_id), True
    batches = batches_per_epoch(info.num_train, train_cfg.batch_size)
    train_ds = training_pipeline(splits.train, num_train=info.num_train, num_classes=info.num_classes,
                                 image_size=image_size, batch_size=train_cfg.batch_size, augment=config.augment,
                                 seed=train_cfg.seed)
    test_ds = test_pipeline(splits.test, num_classes=info.num_classes, batch_size=train_cfg.batch_size)
    if strategy is not tf.distribute.get_strategy():
        _work_around_keras_under_strategies(model, test_ds)

    hooks: list[Any] = []
    recorder = None
    if run_id:
        folder = runs.run_folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        total, trainable = parameter_counts(model)
        shown_device = device if precision == "float32" else f"{device}, {precision}"
        runs.record_setup(run_id, device=shown_device, total_params=total, trainable_params=trainable,
                          unfrozen_layers=unfrozen)
        recorder = RunRecorder(run_id, num_train=info.num_train, batch_size=train_cfg.batch_size, batches=batches)
        hooks += [EpochCheckpoint(folder, runs.get_run(run_id).best_val_accuracy, timing=recorder.epoch_timing),
                  recorder,
                  *tensorboard_logger(folder / runs.TENSORBOARD_DIR)]
    if progress is not None:
        hooks.append(EpochReporter(progress, epochs))
    hooks += list(callbacks)

    note("training")
    # Our pipelines' length is unknown to Keras (sources may skip unreadable files); it warns every epoch.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    history = model.fit(train_ds, validation_data=test_ds, epochs=epochs, initial_epoch=done, callbacks=hooks,
                        verbose=0, shuffle=False)
    return fit_outcome(run_id, history, recorder)


def fit_outcome(run_id: str | None, history: Any, recorder: RunRecorder | None
                ) -> tuple[dict[str, float | None], bool]:
    """What a training path returns after ``fit``: the last epoch's metrics (the store's, for a stored run)
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
            what = (f" training {config.model.backbone} at {config.model.effective_image_size} px with batch size "
                    f"{config.train.batch_size}")
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
        runs.finish_run(run_id, runs.INTERRUPTED, "Training was interrupted (Ctrl-C or the process was asked to "
                                                  "end). Resume the run to continue from its last checkpoint.")
        raise error
    except Exception as error:  # every failure becomes a readable status; epochs so far stay recorded
        traceback.print_exc(file=sys.stderr)
        message = friendly_error(error, config)
        runs.finish_run(run_id, runs.FAILED, message)
        return Outcome(run_id, runs.FAILED, last_recorded(run_id), message)
    status = runs.STOPPED if stopped else runs.COMPLETED
    runs.finish_run(run_id, status)
    return Outcome(run_id, status, metrics)


def train_foreground(config: RunConfig, *, progress: Progress | None = None,
                     waiting: Callable[[str], None] | None = None, poll_s: float = 1.0) -> Outcome:
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
                waiting(f"Run {run_id} is queued (position {runs.queue_position(run_id)}); "
                        + (f"waiting for run {busy.id} to finish." if busy else "waiting for its turn."))
                told = True
            time.sleep(poll_s)
    except (KeyboardInterrupt, SystemExit):
        runs.request_stop(run_id)
        raise
    return execute(run_id, progress=progress)


# ---------------------------------------------------------------------------------------------- worker process

# Phases with no batch to stop after: a stop asked then ends the worker at once (a kill -9 there loses nothing).
BEFORE_TRAINING = ("starting", "loading data", "building model")
WATCH_EVERY_S = 0.5
# A worker still alive this long after its run ended is stuck in interpreter shutdown: end it.
LINGER_LIMIT_S = 20.0


OWNER_GONE_MESSAGE = ("The app that started this run was shut down, so the run stopped with it after {done} "
                      "finished epoch(s). Resume it to continue from its last checkpoint.")


class RunGuard(threading.Thread):
    """Watches the store for the worker's run, beside the training thread.

    - A stop asked while data loads or the model is built (phases with no batch to stop after) is
      recorded and the process ends at once, instead of after the data is ready.
    - When the app that started the worker is gone (shut down), the run stops as it would on Stop and
      is recorded as interrupted (resumable); no worker outlives the app.
    - A run that is no longer this process's (deleted, or resumed by another worker after this one was
      given up for dead) ends the process without writing anything.
    - A process still alive well after its run ended ends too.
    """

    def __init__(self, run_id: str, owner: str | None):
        super().__init__(name=f"run-guard-{run_id}", daemon=True)
        self.run_id = run_id
        self.owner = owner
        self.owner_gone = threading.Event()

    def run(self) -> None:
        while True:
            time.sleep(WATCH_EVERY_S)
            try:
                verdict = self._verdict()
            except Exception:  # a store busy or briefly unreadable: look again next time
                continue
            if verdict is not None:
                print(f"run {self.run_id}: {verdict}", flush=True)
                end_worker(0, kick=verdict == runs.STOPPED and not self.owner_gone.is_set())

    def _verdict(self) -> str | None:
        try:
            record = runs.get_run(self.run_id)
        except RunError:
            return "deleted while its process ran; ending it"
        if record.pid != os.getpid():
            return "taken over by another process; ending this one"
        if record.status != runs.RUNNING:
            lingering = time.time() - (record.finished_at or time.time())
            return f"ended {lingering:.0f} s ago but its process lingered; ending it" if (
                lingering > LINGER_LIMIT_S) else None
        if self.owner and not self.owner_gone.is_set() and not runs.owner_alive(self.owner):
            self.owner_gone.set()
            runs.request_stop(self.run_id)
            record = runs.get_run(self.run_id)
        if record.stop_requested and runs.progress(self.run_id).phase in BEFORE_TRAINING:
            self.finish_stopped()
            return runs.STOPPED
        return None

    def finish_stopped(self) -> str:
        """Record a stopped run: interrupted (with why) when the app is gone, else stopped. Returns the status."""
        if self.owner_gone.is_set():
            done = len(runs.epochs(self.run_id))
            runs.finish_run(self.run_id, runs.INTERRUPTED, OWNER_GONE_MESSAGE.format(done=done))
            return runs.INTERRUPTED
        runs.finish_run(self.run_id, runs.STOPPED)
        return runs.STOPPED


def end_worker(code: int, *, kick: bool = True) -> None:
    """End the worker process now that its run is recorded, after starting the next queued run.

    ``os._exit`` skips interpreter shutdown on purpose: there, destroying a ``tf.data`` iterator waits
    for its in-flight ``numpy_function`` calls, which wait for the lock the exiting thread holds, and a
    stopped worker hung for ever (1.8 GB each). Everything a run keeps is already in the store and on
    disk when this is called."""
    try:
        if kick:
            runs.kick_queue()
    except Exception:  # the next run then starts on the next page load (reconcile)
        traceback.print_exc(file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _end_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _wait_to_be_marked_running(run_id: str, timeout_s: float = 30.0) -> None:
    """The launcher records 'running' with our pid just after starting us; make sure we see it."""
    deadline = time.monotonic() + timeout_s
    while runs.get_run(run_id).status == runs.QUEUED and time.monotonic() < deadline:
        time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a background worker: train one run, start the next queued one, end."""
    parser = argparse.ArgumentParser(description="Train one queued run (started by core.runs.start_run).")
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _end_on_sigterm)
    code = 1
    guard = RunGuard(args.run_id, os.environ.get(runs.OWNER_ENV))
    try:
        _wait_to_be_marked_running(args.run_id)
        guard.start()
        outcome = execute(args.run_id)
        status = guard.finish_stopped() if outcome.status == runs.STOPPED else outcome.status
        print(f"run {args.run_id}: {status}" + (f" ({outcome.error})" if outcome.error else ""), flush=True)
        code = 0 if outcome.status != runs.FAILED else 1
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else 1
    except BaseException:
        traceback.print_exc(file=sys.stderr)
    finally:
        end_worker(code, kick=not guard.owner_gone.is_set())  # no app: queued runs wait for its next start
    return code


if __name__ == "__main__":
    sys.exit(main())

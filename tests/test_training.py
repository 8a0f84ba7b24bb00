"""The training engine: each regime trains on the demo set at 32 px and lands in the run store; stops,
failures, killed workers, the queue and resuming behave as the pages expect."""

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from core import demo, runs
from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
engine = pytest.importorskip("core.training.engine")
pipelines = pytest.importorskip("core.training.pipelines")
recording = pytest.importorskip("core.training.callbacks")


def demo_config(
    regime: str = "frozen", *, epochs: int = 1, train_images: int = 32, batch_size: int = 4, **model
) -> RunConfig:
    """A tiny run through the full pipeline (every image through the backbone every epoch, the notebook's
    way); the frozen regime's cached-features path has its own tests in test_features.py."""
    weights = {} if regime == "finetune" else {"weights": "none"}
    return RunConfig(
        data=DataConfig(source="demo", max_train_images=train_images, max_test_images=16),
        augment=AUGMENT_PRESETS["notebook"],
        model=ModelConfig(regime=regime, image_size=32, **weights, **model),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, feature_cache=False),
    )


def link_demo(home: Path, folder: Path) -> None:
    """Reuse one drawing of the demo set (it takes seconds) in every data directory."""
    (home / "datasets").mkdir(parents=True, exist_ok=True)
    link = home / "datasets" / folder.name
    if not link.exists():
        link.symlink_to(folder, target_is_directory=True)


@pytest.fixture(scope="module")
def demo_32(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("demo-32")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        return demo.demo_folder(32)


@pytest.fixture(autouse=True)
def demo_in_every_home(demo_32, transfer_lab_home):
    link_demo(transfer_lab_home, demo_32)


def run_in_this_process(config: RunConfig, callbacks=()) -> engine.Outcome:
    run_id = runs.create_run(config, runs.FOREGROUND)
    assert runs.claim_foreground(run_id)
    return engine.execute(run_id, callbacks=callbacks)


class StopRequest(keras.callbacks.Callback):
    """Asks the store to stop the run after a given batch of a given epoch, and counts what ran after."""

    def __init__(self, run_id: str, epoch: int, after_batches: int):
        super().__init__()
        self.run_id, self.epoch, self.after_batches = run_id, epoch, after_batches
        self.batches_in_epoch = 0
        self._current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current, self.batches_in_epoch = epoch + 1, 0

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch:
            self.batches_in_epoch += 1
            if self.batches_in_epoch == self.after_batches:
                runs.request_stop(self.run_id)


class Boom(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("the disk caught fire")


# ---------------------------------------------------------------------------------------------- pipelines


def test_training_batches_are_augmented_one_hot_and_test_batches_are_untouched():
    images = np.random.default_rng(0).uniform(0, 255, (10, 32, 32, 3)).astype("float32")
    labels = np.arange(10, dtype="int64") % 3
    source = tf.data.Dataset.from_tensor_slices((images, labels))
    train = pipelines.training_pipeline(
        source, num_train=10, num_classes=3, image_size=32, batch_size=4, augment=AUGMENT_PRESETS["notebook"], seed=1
    )
    sizes, seen = [], []
    for x, y in train:
        assert x.dtype == tf.float32 and y.shape[1:] == (3,)
        assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255
        sizes.append(int(x.shape[0]))
        seen.extend(np.argmax(y, axis=1))
    assert sizes == [4, 4, 2]  # too few batches to be worth dropping the last one
    assert sorted(seen) == sorted(labels)
    test = pipelines.test_pipeline(source, num_classes=3, batch_size=4)
    x, y = next(iter(test))
    np.testing.assert_array_equal(x.numpy(), images[:4])
    np.testing.assert_array_equal(np.argmax(y, axis=1), labels[:4])


def test_the_last_small_batch_is_dropped_only_when_it_is_a_small_share():
    assert not pipelines.drop_remainder(num_train=40, batch_size=8)
    assert pipelines.drop_remainder(num_train=805, batch_size=8)
    assert pipelines.batches_per_epoch(805, 8) == 100 and pipelines.batches_per_epoch(41, 8) == 6


# ---------------------------------------------------------------------------------------------- failures in words


def test_a_nan_loss_stops_training_with_advice():
    run_id = runs.create_run(demo_config())
    recorder = recording.RunRecorder(run_id, num_train=32, batch_size=4, batches=8)
    recorder.on_epoch_begin(0)
    with pytest.raises(recording.NonFiniteLoss, match="learning rate"):
        recorder.on_train_batch_end(2, {"loss": float("nan")})


def test_out_of_memory_is_explained():
    error = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [64,112,112,96]")
    message = engine.friendly_error(error, demo_config())
    assert "Ran out of memory" in message and "batch size 4" in message


def test_a_run_that_raises_is_marked_failed_with_its_message():
    config = demo_config().replace(data=DataConfig(source="folder:/no/such/photos"))
    outcome = run_in_this_process(config)
    record = runs.get_run(outcome.run_id)
    assert outcome.status == record.status == "failed"
    assert "/no/such/photos" in record.error and record.error == outcome.error
    assert record.finished_at is not None and not record.is_active


# ---------------------------------------------------------------------------------------------- the regimes


@pytest.fixture(scope="module")
def stopped_frozen_run(tmp_path_factory, demo_32):
    """A 2-epoch frozen run asked to stop after batch 2 of epoch 2; its home is reused by the fine-tune."""
    home = tmp_path_factory.mktemp("frozen-home")
    link_demo(home, demo_32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        run_id = runs.create_run(demo_config(epochs=2), runs.FOREGROUND)
        assert runs.claim_foreground(run_id)
        stopper = StopRequest(run_id, epoch=2, after_batches=2)
        outcome = engine.execute(run_id, callbacks=[stopper])
    return {"home": home, "run_id": run_id, "outcome": outcome, "stopper": stopper}


@pytest.fixture
def frozen_home(stopped_frozen_run, monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(stopped_frozen_run["home"]))
    return stopped_frozen_run


@pytest.mark.slow
def test_frozen_regime_trains_an_epoch_into_the_store(frozen_home):
    record = runs.get_run(frozen_home["run_id"])
    done = runs.epochs(record.id)
    assert [e.epoch for e in done] == [1]
    assert all(value is not None and math.isfinite(value) for value in done[0].metrics().values())
    assert done[0].seconds > 0 and done[0].images_per_s > 0
    classes = len(demo.CLASS_NAMES)
    assert record.trainable_params == 2 * 1280 + 1280 * classes + classes and record.total_params > 4_000_000
    assert record.device.startswith("CPU")
    assert record.last_model and record.best_model
    assert any(record.tensorboard_dir.rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_a_stop_request_ends_the_run_within_one_batch_and_keeps_the_last_checkpoint(frozen_home):
    record = runs.get_run(frozen_home["run_id"])
    assert frozen_home["outcome"].status == record.status == "stopped"
    assert frozen_home["stopper"].batches_in_epoch <= 2 + 1  # the batch during which it was asked, at most
    assert not record.stop_requested and record.can_resume
    assert record.last_model is not None  # epoch 1's, untouched by the cut-short epoch 2
    assert record.last_model.stat().st_mtime <= runs.epochs(record.id)[0].recorded_at
    assert not list(record.folder.glob("partial-*"))


@pytest.mark.slow
def test_finetune_unfreezes_exactly_the_top_layers_but_no_batch_norm(frozen_home):
    parent_id = frozen_home["run_id"]
    parent = runs.get_run(parent_id)
    parent_model = keras.models.load_model(parent.last_model, compile=False)
    top = parent_model.layers[-20:]
    expected = [layer.name for layer in top if not isinstance(layer, keras.layers.BatchNormalization)]
    backbone_bn = [
        layer.name
        for layer in parent_model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.trainable
    ]

    config = runs.finetune_config(parent_id, unfreeze_top_layers=20)
    config = config.replace(train=config.train.replace(epochs=2))
    outcome = run_in_this_process(config, callbacks=[Boom(epoch=2)])

    record = runs.get_run(outcome.run_id)
    assert record.unfrozen_layers == expected
    assert record.trainable_params > parent.trainable_params
    assert [e.epoch for e in runs.epochs(record.id)] == [1]  # the fine-tune's own epoch, recorded
    child_model = keras.models.load_model(record.last_model, compile=False)
    for name in backbone_bn:
        layer = child_model.get_layer(name)
        assert not layer.trainable
        np.testing.assert_array_equal(layer.moving_mean.numpy(), parent_model.get_layer(name).moving_mean.numpy())
    assert not np.allclose(
        child_model.get_layer("top_conv").kernel.numpy(), parent_model.get_layer("top_conv").kernel.numpy()
    )
    # The exception in epoch 2: failed, in words, with epoch 1 kept and resumable.
    assert outcome.status == record.status == "failed"
    assert record.error == "RuntimeError: the disk caught fire" and record.can_resume


# ---------------------------------------------------------------------------------------------- background workers


def wait_for(predicate, timeout_s: float = 300.0, poll_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll_s)


@pytest.mark.slow
def test_background_runs_queue_survive_a_kill_and_resume_where_they_stopped():
    first = runs.start_run(demo_config(epochs=3, train_images=64))
    second = runs.start_run(demo_config(epochs=1))
    assert runs.get_run(first).status == "running"
    assert runs.get_run(second).status == "queued" and runs.queue_position(second) == 1

    wait_for(lambda: runs.epochs(first) or not runs.get_run(first).is_active)
    pid = runs.get_run(first).pid
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: not runs.process_alive(pid))
    assert first in runs.reconcile()
    assert runs.get_run(first).status == "interrupted"
    kept = runs.epochs(first)
    assert 1 <= len(kept) < 3
    assert runs.get_run(second).status == "running"  # the queue moved on

    runs.resume_run(first)
    assert runs.get_run(first).status == "queued" and runs.queue_position(first) == 1
    finished = runs.wait_until_finished(first, timeout_s=600)
    assert finished.status == "completed", (finished.error, finished.log_file.read_text()[-3000:])
    assert finished.resumed == 1
    done = runs.epochs(first)
    assert [e.epoch for e in done] == [1, 2, 3]
    assert done[: len(kept)] == kept  # epochs before the kill are untouched; numbering continued
    assert all(e.recorded_at > killed_at for e in done[len(kept) :])
    other = runs.get_run(second)
    assert other.status == "completed" and len(runs.epochs(second)) == 1
    assert finished.started_at >= other.finished_at  # resumed only after the other run finished

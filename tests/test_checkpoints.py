"""Checkpoints under faults, on both training paths (every image through the backbone, cached features):
a disk that fills during a save leaves no partial file and a resumable run that says where to free space;
a process killed between saving a checkpoint and recording its epoch resumes after the epoch the checkpoint
holds, never training it twice (counted in the optimizer's steps)."""

import errno
import os
import signal

import pytest

import faults
from core import runs
from core.catalog import LITE0
from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig

keras = pytest.importorskip("keras")
engine = pytest.importorskip("core.training.engine")

TRAIN_IMAGES, BATCH = 24, 8
BATCHES = TRAIN_IMAGES // BATCH  # 3 batches per epoch (too few to drop a remainder; there is none)
# The optimizer's step counter per epoch: on a dataset of unknown length Keras counts one more step than there
# are batches (the one that finds the data exhausted); with cached features fit is told the number of steps.
STEPS = {"full backbone": BATCHES + 1, "cached features": BATCHES}
PATHS = {"full backbone": False, "cached features": True}
QUICK_PATHS = [pytest.param("full backbone", marks=pytest.mark.slow), "cached features"]


def tiny_config(feature_cache: bool, epochs: int) -> RunConfig:
    return RunConfig(
        data=DataConfig(source="demo", max_train_images=TRAIN_IMAGES, max_test_images=8),
        augment=AUGMENT_PRESETS["none"],
        model=ModelConfig(backbone=LITE0, regime="frozen", weights="none", image_size=32),
        train=TrainConfig(
            epochs=epochs, batch_size=BATCH, learning_rate=1e-2, feature_cache=feature_cache, cached_views=1
        ),
    )


@pytest.fixture(autouse=True)
def demo_32_in_every_home(demo_32_linked):
    """Every test here trains on the 32 px demo set, drawn once per session."""


def optimizer_steps(path) -> int:
    return int(keras.models.load_model(path, compile=True).optimizer.iterations.numpy())


def resume_here(run_id: str, monkeypatch) -> engine.Outcome:
    """Resume in this process (not a background worker) and train to the end."""
    monkeypatch.setattr("core.runs.controls.kick_queue", lambda: None)  # where resume_run looks it up
    runs.resume_run(run_id)
    assert runs.claim_foreground(run_id)
    return engine.execute(run_id)


def assert_best_model_is_the_best_epoch(record) -> None:
    recorded = runs.epochs(record.id)
    best_epoch = max(recorded, key=lambda e: (e.val_accuracy, -e.epoch)).epoch
    assert runs.checkpoint_note(record.best_model)["epoch"] == best_epoch
    assert runs.checkpoint_note(record.last_model)["epoch"] == recorded[-1].epoch


def test_a_full_or_read_only_disk_anywhere_in_a_run_is_one_sentence_naming_the_folder(tmp_path):
    written = tmp_path / "cache" / "features" / "abc.partial-1.npy"
    written.parent.mkdir(parents=True)
    full = engine.friendly_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(written)))
    assert full.startswith(f"The disk is full: free space in {written.parent} ") and "resume the run" in full
    read_only = engine.friendly_error(OSError(errno.EROFS, os.strerror(errno.EROFS), str(written)))
    assert read_only.startswith(f"The data directory {written.parent} is read-only") and "Errno" not in read_only


class FillTheDiskAt(keras.callbacks.Callback):
    """Leaves room for ``budget`` more bytes when (1-based) ``epoch`` begins."""

    def __init__(self, disk: faults.DiskFull, epoch: int, budget: int):
        super().__init__()
        self.disk, self.epoch, self.budget = disk, epoch, budget

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.disk.fill(self.budget)


@pytest.mark.parametrize("path", QUICK_PATHS)
def test_a_disk_that_fills_during_a_checkpoint_leaves_no_partial_file_and_a_resumable_run(path, monkeypatch):
    run_id = runs.create_run(tiny_config(PATHS[path], epochs=2), runs.FOREGROUND)
    assert runs.claim_foreground(run_id)
    folder = runs.run_folder(run_id)
    disk = faults.DiskFull(folder, budget=None).install(monkeypatch)
    outcome = engine.execute(run_id, callbacks=[FillTheDiskAt(disk, epoch=2, budget=1_000_000)])

    record = runs.get_run(run_id)
    assert outcome.status == record.status == runs.FAILED
    assert record.error.startswith(f"The disk is full: free space in {folder} "), record.error
    assert "resume the run" in record.error and "Errno" not in record.error
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [runs.BEST_MODEL, runs.LAST_MODEL]
    assert [e.epoch for e in runs.epochs(run_id)] == [1] and record.can_resume
    assert runs.checkpoint_note(record.last_model)["epoch"] == 1
    assert optimizer_steps(record.last_model) == STEPS[path]  # epoch 1's checkpoint, intact

    disk.free()
    resumed = resume_here(run_id, monkeypatch)
    assert resumed.status == runs.COMPLETED, resumed.error
    record = runs.get_run(run_id)
    assert [e.epoch for e in runs.epochs(run_id)] == [1, 2]
    assert optimizer_steps(record.last_model) == 2 * STEPS[path]
    assert_best_model_is_the_best_epoch(record)


@pytest.mark.slow
@pytest.mark.parametrize("path", list(PATHS))
def test_a_kill_between_the_checkpoint_and_the_record_resumes_after_the_epoch_the_checkpoint_holds(
    path, transfer_lab_home, monkeypatch
):
    flags = [
        "--dataset",
        "demo",
        "--max-train-images",
        str(TRAIN_IMAGES),
        "--max-test-images",
        "8",
        "--augment",
        "none",
        "--backbone",
        LITE0,
        "--regime",
        "frozen",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--epochs",
        "3",
        "--batch-size",
        str(BATCH),
        "--learning-rate",
        "1e-2",
        "--cached-views",
        "1",
        "--feature-cache" if PATHS[path] else "--no-feature-cache",
    ]
    killed = faults.run_python(
        "import faults, runpy, sys\n"
        f"faults.kill_after_replacing({runs.LAST_MODEL!r}, 2)\n"  # epoch 2's checkpoint, before its record
        f"sys.argv = ['core.training', *{flags!r}]\n"
        "runpy.run_module('core.training', run_name='__main__', alter_sys=True)\n",
        transfer_lab_home,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run_id,) = [record.id for record in runs.list_runs()]

    assert runs.reconcile() == [run_id]
    record = runs.get_run(run_id)
    assert record.status == runs.INTERRUPTED
    assert [e.epoch for e in runs.epochs(run_id)] == [1, 2]  # epoch 2, recorded from its checkpoint
    assert optimizer_steps(record.last_model) == 2 * STEPS[path]
    assert not list(record.folder.glob(f"{runs.PARTIAL}*"))

    resumed = resume_here(run_id, monkeypatch)
    assert resumed.status == runs.COMPLETED, resumed.error
    record = runs.get_run(run_id)
    assert [e.epoch for e in runs.epochs(run_id)] == [1, 2, 3]
    assert optimizer_steps(record.last_model) == 3 * STEPS[path]  # the planned epochs' steps, none twice
    assert_best_model_is_the_best_epoch(record)

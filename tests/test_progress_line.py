"""The Train page's progress line: "~m:ss left" from the pace of the epochs, never from the setup before the first
one; each phase with its own batches."""

from core import runs
from core.config import RunConfig
from core.runs import EpochRecord, RunProgress
from core.training.cached_features import PHASE, CachedFeaturePath

STARTED = 1_000.0


def progress(phase: str = "training", epoch: int = 1, batch: int = 0, batches: int = 10, status=runs.RUNNING):
    return RunProgress(
        status=status,
        phase=phase,
        epoch=epoch,
        epochs=5,
        batch=batch,
        batches=batches,
        images_per_s=None,
        updated_at=None,
        queue_position=None,
    )


def epoch(number: int, recorded_at: float, seconds: float = 4.0) -> EpochRecord:
    return EpochRecord(number, 1.0, 0.5, 0.9, 1.0, 0.5, 0.9, seconds, 100.0, recorded_at)


def test_before_the_first_epoch_there_is_no_estimate():
    """The live demo showed "~1:47 left" while extracting features 19 s in, and ended 10 s later: the setup and
    the extraction said nothing about the epochs to come."""
    assert progress("extracting features", batch=18, batches=23).seconds_left([], STARTED) is None
    assert progress("training", batch=9).seconds_left([], STARTED) is None


def test_the_pace_is_the_last_time_between_epochs_and_the_current_epoch_counts():
    epochs = [epoch(1, STARTED + 30), epoch(2, STARTED + 50), epoch(3, STARTED + 60)]
    # The last epoch took 10 s (the next view's extraction and validation included), 2 epochs of 5 are left, and
    # epoch 4 is half trained: 1.5 epochs remain.
    assert progress("training", epoch=4, batch=5).seconds_left(epochs, STARTED) == 15.0
    # While an epoch validates or its view is extracted, it still counts whole.
    assert progress("validating", epoch=4, batch=10).seconds_left(epochs, STARTED) == 20.0
    assert progress("extracting features", epoch=4, batch=3).seconds_left(epochs, STARTED) == 20.0


def test_one_epoch_is_not_a_pace():
    """Its own seconds leave out the next view's extraction: a cached run's epoch 1 trains the head in 1 s, and
    epoch 2 first extracts its view for 20."""
    assert progress("extracting features", epoch=2).seconds_left([epoch(1, STARTED + 30, seconds=1.0)], STARTED) is None


def test_epochs_from_before_a_resume_do_not_set_the_pace():
    """A resumed run: the hour it spent stopped is not an epoch's pace."""
    earlier = [epoch(1, STARTED - 3600), epoch(2, STARTED - 3590)]
    assert progress("training", epoch=3).seconds_left(earlier, STARTED) is None
    assert progress("training", epoch=3).seconds_left([*earlier, epoch(3, STARTED + 20)], STARTED) is None
    now = [epoch(3, STARTED + 20), epoch(4, STARTED + 25)]
    assert progress("training", epoch=5).seconds_left(earlier + now, STARTED) == 5.0


def test_only_a_running_run_has_time_left():
    epochs = [epoch(1, STARTED + 30), epoch(2, STARTED + 40)]
    for status in (runs.QUEUED, runs.COMPLETED, runs.STOPPED, runs.FAILED):
        assert progress(status=status).seconds_left(epochs, STARTED) is None
    assert progress("training", epoch=5, batch=10).seconds_left(epochs + [epoch(5, STARTED + 70)], STARTED) == 0.0


def test_a_new_phase_does_not_show_the_last_phases_batches(transfer_lab_home):
    """Between an epoch's validation and the next view's extraction the line read "Extracting features · epoch 3
    of 5 · batch 16/16": the validation's epoch and the training's batches."""
    run_id = runs.create_run(RunConfig())
    runs.record_progress(run_id, phase="validating", epoch=3, batch=16, batches=16)
    CachedFeaturePath(RunConfig(), run_id).note(PHASE, epoch=4)
    now = runs.progress(run_id)
    assert (now.phase, now.epoch, now.batch, now.batches) == (PHASE, 4, 0, 0)
    assert now.fraction == 3 / now.epochs  # three epochs done: the bar does not step back

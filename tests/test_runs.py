"""The run store and its queue, without TensorFlow: workers are stood in for by sleeping processes."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from core import runs
from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, RunError


def config(**model) -> RunConfig:
    model = {"regime": "frozen", "weights": "none", "image_size": 32, **model}
    return RunConfig(
        data=DataConfig(source="demo", max_train_images=16, max_test_images=8),
        augment=AUGMENT_PRESETS["none"],
        model=ModelConfig(**model),
        train=TrainConfig(epochs=3, batch_size=8),
    )


@pytest.fixture
def sleepers(monkeypatch):
    """Replace the training worker with a process that just sleeps; kill them all afterwards."""
    started: list[subprocess.Popen] = []

    def spawn(run_id):
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        started.append(worker)
        return worker

    monkeypatch.setattr("core.runs.queueing.spawn_worker", spawn)  # where kick_queue looks it up
    yield started
    for worker in started:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def set_running(run_id: str, pid: int) -> None:
    with runs.connect() as db:
        db.execute("UPDATE runs SET status = 'running', pid = ?, pid_started = NULL WHERE id = ?", (pid, run_id))


# ---------------------------------------------------------------------------------------------- configs and records


def test_run_config_round_trips_through_json_with_its_nested_configs():
    original = RunConfig(
        name="dogs",
        data=DataConfig(source="folder:/photos", max_train_images=100),
        augment=AUGMENT_PRESETS["strong"],
        model=ModelConfig(regime="scratch", image_size=64),
        train=TrainConfig(epochs=2, learning_rate=0.01),
    )
    again = RunConfig.from_json(original.to_json())
    assert again == original
    assert isinstance(again.model, ModelConfig) and isinstance(again.augment, type(AUGMENT_PRESETS["strong"]))


def test_a_run_without_a_name_is_named_after_its_settings():
    assert config().display_name() == "frozen EfficientNetB0 32px"
    assert RunConfig(name="  my run ").display_name() == "my run"


def test_created_runs_are_listed_newest_first_and_queued_in_order():
    first = runs.create_run(config())
    second = runs.create_run(config(), runs.FOREGROUND)
    assert [r.id for r in runs.list_runs()] == [second, first]
    assert [r.id for r in runs.queue()] == [first, second]
    assert (runs.queue_position(first), runs.queue_position(second)) == (1, 2)
    record = runs.get_run(first)
    assert (record.status, record.regime, record.backbone, record.epochs_planned) == (
        "queued",
        "frozen",
        "EfficientNetB0",
        3,
    )
    assert record.config == config().resolved()  # stored with the machine's defaults written in
    assert runs.get_run(second).pid == os.getpid()
    assert runs.store_path().is_file() and record.folder.is_dir()
    with runs.connect() as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_missing_run_is_a_readable_error():
    with pytest.raises(RunError, match="no run 'nope'"):
        runs.get_run("nope")


def test_epochs_and_progress_are_recorded():
    run_id = runs.create_run(config())
    runs.record_progress(run_id, phase="training", epoch=1, batch=3, batches=4, images_per_s=12.5)
    runs.record_epoch(
        run_id,
        1,
        {
            "loss": 2.0,
            "accuracy": 0.25,
            "top5_accuracy": 0.75,
            "val_loss": 2.1,
            "val_accuracy": 0.5,
            "val_top5_accuracy": float("nan"),
        },
        seconds=3.0,
    )
    runs.record_progress(run_id, phase="training", epoch=2, batch=2)
    runs.record_epoch(run_id, 2, {"loss": 1.5, "accuracy": 0.5, "val_accuracy": 0.375})
    done = runs.epochs(run_id)
    assert [e.epoch for e in done] == [1, 2]
    assert done[0].metrics() == {
        "loss": 2.0,
        "accuracy": 0.25,
        "top5_accuracy": 0.75,
        "val_loss": 2.1,
        "val_accuracy": 0.5,
        "val_top5_accuracy": None,
    }
    now = runs.progress(run_id)
    assert (now.epoch, now.batch, now.batches, now.images_per_s, now.epochs) == (2, 2, 4, 12.5, 3)
    assert now.fraction == pytest.approx((1 + 2 / 4) / 3)
    record = runs.get_run(run_id)
    assert (record.epochs_done, record.best_val_accuracy) == (2, 0.5)


def test_readers_are_not_blocked_by_a_writer():
    run_id = runs.create_run(config())
    writer = sqlite3.connect(runs.store_path(), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE runs SET phase = 'x' WHERE id = ?", (run_id,))
    started = time.monotonic()
    assert runs.get_run(run_id).id == run_id
    assert time.monotonic() - started < 2
    writer.execute("ROLLBACK")
    writer.close()


# ---------------------------------------------------------------------------------------------- queue


def test_two_runs_started_at_once_train_one_after_the_other(sleepers):
    ids: list[str] = []
    barrier = threading.Barrier(2)

    def start():
        barrier.wait()
        ids.append(runs.start_run(config()))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(runs.get_run(run_id).status for run_id in ids)
    assert statuses == ["queued", "running"] and len(sleepers) == 1
    first = runs.running_run().id
    second = next(run_id for run_id in ids if run_id != first)
    assert runs.progress(second).queue_position == 1
    runs.finish_run(first, runs.COMPLETED)  # what a finishing worker does, then it kicks the queue
    assert runs.kick_queue() == second
    assert runs.get_run(second).status == "running" and runs.get_run(second).pid == sleepers[1].pid


def test_a_foreground_run_waits_for_its_turn_and_is_not_started_by_the_queue(sleepers):
    background = runs.start_run(config())
    foreground = runs.create_run(config(), runs.FOREGROUND)
    assert not runs.claim_foreground(foreground)
    runs.finish_run(background, runs.COMPLETED)
    assert runs.kick_queue() is None and not sleepers[1:]
    assert runs.claim_foreground(foreground)
    assert runs.get_run(foreground).status == "running"


def test_reconcile_marks_runs_whose_process_is_gone_as_interrupted_and_starts_the_next(sleepers):
    lost = runs.create_run(config())
    alive = runs.create_run(config())
    set_running(lost, dead_pid())
    assert runs.reconcile() == [lost]
    record = runs.get_run(lost)
    assert record.status == "interrupted" and "Resume" in record.error
    assert runs.get_run(alive).status == "running"  # the queue moved on
    assert runs.reconcile() == []
    assert runs.get_run(alive).status == "running"


def test_a_killed_worker_is_found(sleepers):
    run_id = runs.start_run(config())
    os.kill(sleepers[0].pid, signal.SIGKILL)
    sleepers[0].wait()
    assert runs.reconcile() == [run_id]
    assert runs.get_run(run_id).status == "interrupted"


def test_a_queued_cli_run_whose_process_died_leaves_the_queue():
    run_id = runs.create_run(config(), runs.FOREGROUND)
    with runs.connect() as db:
        db.execute("UPDATE runs SET pid = ?, pid_started = NULL WHERE id = ?", (dead_pid(), run_id))
    assert runs.reconcile() == [run_id]
    assert runs.queue() == []


# ---------------------------------------------------------------------------------------------- controls


def test_stopping_a_queued_run_removes_it_from_the_queue():
    run_id = runs.create_run(config())
    assert runs.request_stop(run_id) == "stopped"
    assert runs.queue() == [] and runs.get_run(run_id).status == "stopped"


def test_stopping_a_running_run_asks_its_process(sleepers):
    run_id = runs.start_run(config())
    assert not runs.stop_requested(run_id)
    assert runs.request_stop(run_id) == "running"
    assert runs.stop_requested(run_id) and runs.get_run(run_id).stop_requested
    runs.finish_run(run_id, runs.STOPPED)
    with pytest.raises(RunError, match="nothing to stop"):
        runs.request_stop(run_id)


def test_resume_queues_a_stopped_run_again_keeping_its_epochs(sleepers):
    run_id = runs.create_run(config())
    runs.record_epoch(run_id, 1, {"loss": 1.0})
    runs.finish_run(run_id, runs.STOPPED)
    assert runs.get_run(run_id).can_resume
    runs.resume_run(run_id)
    record = runs.get_run(run_id)
    assert (record.status, record.resumed, record.epochs_done, record.error) == ("running", 1, 1, None)


def test_resume_refuses_running_and_finished_runs():
    run_id = runs.create_run(config())
    with pytest.raises(RunError, match="only stopped, interrupted or failed"):
        runs.resume_run(run_id)
    for epoch in (1, 2, 3):
        runs.record_epoch(run_id, epoch, {"loss": 1.0})
    runs.finish_run(run_id, runs.FAILED, "boom")
    with pytest.raises(RunError, match="already trained all 3 epochs"):
        runs.resume_run(run_id)


def test_delete_removes_a_finished_run_and_its_folder():
    run_id = runs.create_run(config())
    (runs.run_folder(run_id) / runs.LAST_MODEL).write_bytes(b"model")
    runs.record_epoch(run_id, 1, {"loss": 1.0})
    with pytest.raises(RunError, match="stop it before deleting"):
        runs.delete_run(run_id)
    runs.finish_run(run_id, runs.COMPLETED)
    runs.delete_run(run_id)
    assert runs.list_runs() == [] and not runs.run_folder(run_id).exists()
    with runs.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 0


# ---------------------------------------------------------------------------------------------- fine-tune parents


def test_a_fine_tune_needs_a_frozen_parent_with_a_saved_model_and_the_same_network():
    scratch = runs.create_run(config(regime="scratch"))
    frozen = runs.create_run(config())
    with pytest.raises(ConfigError, match="frozen-backbone run"):
        runs.create_run(config(regime="finetune", weights=None, parent_run_id=scratch))
    with pytest.raises(ConfigError, match="no saved model"):
        runs.create_run(config(regime="finetune", weights=None, parent_run_id=frozen))
    (runs.run_folder(frozen) / runs.LAST_MODEL).write_bytes(b"model")
    runs.finish_run(frozen, runs.COMPLETED)
    with pytest.raises(ConfigError, match="keeps its backbone and image size") as refused:
        runs.create_run(config(regime="finetune", weights=None, parent_run_id=frozen, image_size=64))
    assert "finetune_config" not in str(refused.value) and runs.get_run(frozen).name in str(refused.value)
    other_data = config(regime="finetune", weights=None, parent_run_id=frozen, image_size=32)
    with pytest.raises(ConfigError, match="continues on the same data"):
        runs.create_run(other_data.replace(data=DataConfig(source="folder:/photos")))
    with pytest.raises(RunError, match="no run"):
        runs.create_run(config(regime="finetune", weights=None, parent_run_id="missing"))
    assert [r.id for r in runs.finetune_parents()] == [frozen]
    child = runs.finetune_config(frozen, unfreeze_top_layers=30)
    assert (child.model.regime, child.model.parent_run_id, child.model.image_size) == ("finetune", frozen, 32)
    assert child.data == config().data and child.model.unfreeze_top_layers == 30
    child_id = runs.create_run(child)
    assert runs.get_run(child_id).parent_id == frozen
    with pytest.raises(RunError, match="starting point of fine-tune"):
        runs.delete_run(frozen)


def test_config_summary_fills_in_regime_defaults():
    summary = runs.config_summary(config(regime="scratch", weights=None, image_size=None))
    assert summary == {
        "backbone": "EfficientNetB0",
        "regime": "scratch",
        "image_size": 224,
        "weights": "none",
        "epochs": 3,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
    }

"""The background worker process: it ends once its run is recorded, whatever the phase it was stopped in,
and it never outlives a run that is no longer its own."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import runs
from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig

pytest.importorskip("tensorflow")


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for: {what}"
        time.sleep(poll_s)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three classes of 60 noisy 48 px PNG files: decoded by the folder source's numpy_function pipeline."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir()
        for k in range(60):
            pixels = rng.integers(0, 90, (48, 48, 3), dtype=np.uint8)
            pixels[..., index] += 150
            Image.fromarray(pixels).save(root / name / f"{k:03d}.png")
    return root


def folder_run(photos: Path, *, epochs: int, name: str = "") -> RunConfig:
    return RunConfig(
        name=name,
        data=DataConfig(source=f"folder:{photos}"),
        augment=AUGMENT_PRESETS["notebook"],
        model=ModelConfig(regime="scratch", weights="none", image_size=32),
        train=TrainConfig(epochs=epochs, batch_size=4, feature_cache=False),
    )


def in_training(run_id: str) -> bool:
    progress = runs.progress(run_id)
    return progress.status != runs.RUNNING or (progress.phase == "training" and progress.batch >= 2)


@pytest.mark.slow
def test_a_worker_stopped_mid_epoch_exits_and_a_worker_whose_run_was_taken_over_exits_without_writing(photos):
    """Seen at HEAD: the stopped worker hung for ever in interpreter shutdown (a tf.data iterator waiting
    for its numpy_function calls), ~1.8 GB each."""
    first = runs.start_run(folder_run(photos, epochs=5, name="first"))
    second = runs.start_run(folder_run(photos, epochs=5, name="second"))
    first_pid = runs.get_run(first).pid
    wait_for(lambda: in_training(first), 240, "the first run's second batch")
    runs.request_stop(first)
    wait_for(lambda: not runs.get_run(first).is_active, 30, "the stop to be recorded")
    assert runs.get_run(first).status == runs.STOPPED
    wait_for(lambda: not runs.process_alive(first_pid), 15, f"the stopped worker {first_pid} to exit")

    # The queued run started; now it is given up for dead by a page and resumed by another process.
    wait_for(
        lambda: runs.get_run(second).status == runs.RUNNING and in_training(second),
        240,
        "the second run's second batch",
    )
    second_pid = runs.get_run(second).pid
    with runs.connect() as db:
        db.execute("UPDATE runs SET pid = ?, pid_started = NULL WHERE id = ?", (os.getpid(), second))
    wait_for(lambda: not runs.process_alive(second_pid), 10, f"the displaced worker {second_pid} to exit")
    record = runs.get_run(second)
    assert record.status == runs.RUNNING and record.pid == os.getpid()  # it wrote no final status
    assert record.epochs_done < 5


@pytest.mark.slow
def test_a_stop_while_the_data_is_prepared_takes_effect_at_once(tmp_path, monkeypatch):
    """Drawing the demo set at 160 px takes tens of seconds; a stop must not wait for it."""
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(tmp_path))
    config = RunConfig(
        data=DataConfig(source="demo"),
        augment=AUGMENT_PRESETS["none"],
        model=ModelConfig(regime="scratch", weights="none", image_size=160),
        train=TrainConfig(epochs=1, batch_size=8, feature_cache=False),
    )
    run_id = runs.start_run(config)
    pid = runs.get_run(run_id).pid
    wait_for(lambda: runs.progress(run_id).phase == "loading data", 60, "the worker to start loading data")
    time.sleep(1.0)
    asked = time.monotonic()
    runs.request_stop(run_id)
    wait_for(lambda: not runs.get_run(run_id).is_active, 8, "the stop to be recorded")
    wait_for(lambda: not runs.process_alive(pid), 8, "the worker to exit")
    record = runs.get_run(run_id)
    assert record.status == runs.STOPPED and record.epochs_done == 0
    assert time.monotonic() - asked < 10


@pytest.mark.slow
def test_when_the_app_that_started_a_worker_is_shut_down_its_run_is_interrupted_and_the_worker_exits(
    photos, transfer_lab_home
):
    """No worker outlives the app: its run ends as interrupted (resumable) and the queue waits for the app."""
    import signal
    import subprocess
    import sys

    launch = (
        f"from core import runs; from tests.test_worker import folder_run; from pathlib import Path; "
        f"first = runs.start_run(folder_run(Path({str(photos)!r}), epochs=5)); "
        f"runs.start_run(folder_run(Path({str(photos)!r}), epochs=1, name='queued')); "
        "import time; time.sleep(600)"
    )
    app = subprocess.Popen(
        [sys.executable, "-c", launch],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "TRANSFER_LAB_HOME": str(transfer_lab_home)},
    )
    try:
        wait_for(lambda: len(runs.list_runs()) == 2, 60, "the app to queue two runs")
        first = next(r for r in runs.list_runs() if r.name != "queued")
        wait_for(
            lambda: runs.get_run(first.id).status == runs.RUNNING and in_training(first.id),
            240,
            "the first run's second batch",
        )
        pid = runs.get_run(first.id).pid
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait()
    wait_for(lambda: not runs.process_alive(pid), 30, f"the worker {pid} to exit after the app")
    record = runs.get_run(first.id)
    assert record.status == runs.INTERRUPTED and "shut down" in record.error and record.can_resume
    queued = next(r for r in runs.list_runs() if r.name == "queued")
    assert runs.get_run(queued.id).status == runs.QUEUED  # it waits for the app's next start

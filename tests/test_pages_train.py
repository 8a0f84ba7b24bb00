"""The Train page through AppTest, with real background training processes on tiny runs."""

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import demo, grid, runs
from core.catalog import REGIMES
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.machine_defaults import this_machine

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TINY_DATA = DataConfig(source="demo", max_train_images=36, max_test_images=18)


@pytest.fixture(autouse=True)
def demo_drawn_once(demo_home, transfer_lab_home, monkeypatch):
    """Runs train in this test's own data directory; the 32 px demo set is drawn once and linked in."""
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(transfer_lab_home))
    folder = demo.folder_path(32)
    shared = demo_home / "datasets" / folder.name
    if not shared.exists():
        monkeypatch.setenv("TRANSFER_LAB_HOME", str(demo_home))
        demo.demo_folder(32)
        monkeypatch.setenv("TRANSFER_LAB_HOME", str(transfer_lab_home))
    (transfer_lab_home / "datasets").mkdir(exist_ok=True)
    (transfer_lab_home / "datasets" / folder.name).symlink_to(shared, target_is_directory=True)
    yield
    for record in runs.list_runs(status=runs.ACTIVE):  # never leave a worker training after the test
        runs.request_stop(record.id)
    deadline = time.monotonic() + 120
    while runs.list_runs(status=runs.ACTIVE) and time.monotonic() < deadline:
        runs.reconcile()
        time.sleep(1)


def open_train(data: DataConfig = TINY_DATA) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.session_state["shared.data_config"] = data
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def fill_frozen_form(at: AppTest, *, size=32, epochs=1, batch=12, weights="none") -> None:
    at.number_input(key="train_frozen_size").set_value(size)
    at.number_input(key="train_frozen_epochs").set_value(epochs)
    at.number_input(key="train_frozen_batch").set_value(batch)
    at.selectbox(key="train_frozen_backbone").set_value("EfficientNetB0")
    at.selectbox(key="train_frozen_weights").set_value(weights)


def submit(at: AppTest) -> AppTest:
    at.button(key="FormSubmitter:train_frozen_form-Launch").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def shown(element) -> str:
    """The text a person reads in an error: pages escape markdown (show_error) with backslashes."""
    return re.sub(r"\\(.)", r"\1", element.value)


def wait_for(at: AppTest, condition, timeout_s: float = 240) -> None:
    """Rerun the page until ``condition()`` holds; the condition is checked before each rerun, so the page
    last rendered shows at least the state it saw (a run may finish between a rerun and the check)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        met = condition()
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        if met:
            return
        time.sleep(2)
    raise AssertionError(f"timed out; runs: {[(r.name, r.status, r.error) for r in runs.list_runs()]}")


def test_the_form_takes_its_limits_and_defaults_from_the_configs():
    """The widgets refuse what the configs refuse and start at the regime's defaults. Before, the page had
    limits and defaults of its own: image size 0..600 (0 = native, so 16 reached the config and was refused
    there), epochs up to 500, batch size 64, learning rates from 1e-6."""
    at = open_train()
    size = at.number_input(key="train_frozen_size")
    image_size = ModelConfig.__dataclass_fields__["image_size"].metadata
    assert (
        (size.min, size.max, size.step) == (image_size["min"], image_size["max"], image_size["step"]) == (32, 1024, 8)
    )
    assert size.value is None  # empty: the backbone's native resolution
    epochs = at.number_input(key="train_frozen_epochs")
    assert (epochs.min, epochs.max, epochs.value) == (1, 1000, REGIMES["frozen"].epochs)
    batch = at.number_input(key="train_frozen_batch")
    assert batch.value is None is TrainConfig().batch_size  # empty: the machine's default, named in the box
    assert batch.proto.placeholder == f"{this_machine().batch_size('frozen')} on {this_machine().where()}"
    rates = [float(o) for o in at.select_slider(key="train_frozen_lr").options]
    assert (rates[0], rates[-1]) == (1e-7, 1.0)
    assert at.number_input(key="train_frozen_wd").value == REGIMES["frozen"].weight_decay
    assert runs.list_runs() == []


def test_imagenet_weights_missing_offline_is_refused_with_the_fix():
    at = open_train()
    fill_frozen_form(at, weights="imagenet")
    submit(at)
    message = shown(at.error[0])
    assert "efficientnetb0_notop.h5" in message and "Lite0" in message
    assert runs.list_runs() == []


def test_launch_shows_progress_then_final_metrics():
    at = open_train()
    fill_frozen_form(at)
    submit(at)
    [record] = runs.list_runs()
    assert record.status in (runs.QUEUED, runs.RUNNING) and record.config.data == TINY_DATA
    wait_for(at, lambda: runs.get_run(record.id).status not in runs.ACTIVE)
    assert runs.get_run(record.id).status == runs.COMPLETED, runs.get_run(record.id).error
    at.run()
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Epochs done"] == "1 of 1"
    assert 0.0 <= float(tiles["Validation accuracy"]) <= 1.0
    assert at.get("plotly_chart")
    assert any(record.name in m.value for m in at.markdown)
    assert any("green-badge" in m.value and "completed" in m.value for m in at.markdown)  # not red like a failure


def test_stop_ends_a_running_run():
    at = open_train(DataConfig(source="demo", max_train_images=400, max_test_images=18))
    fill_frozen_form(at, epochs=30, batch=4)
    submit(at)
    [record] = runs.list_runs()
    wait_for(at, lambda: runs.progress(record.id).batch > 0)
    at.button(key="train_stop").click().run()
    wait_for(at, lambda: runs.get_run(record.id).status not in runs.ACTIVE, timeout_s=60)
    stopped = runs.get_run(record.id)
    assert stopped.status == runs.STOPPED and stopped.epochs_done < 30
    assert any("stopped" in w.value for w in at.warning)


def test_comparison_overlays_one_trace_group_per_selected_run():
    at = open_train()
    fill_frozen_form(at)
    submit(at)
    at.button(key="FormSubmitter:train_frozen_form-Launch").click().run()  # a second, queued behind the first
    first, second = sorted(runs.list_runs(), key=lambda r: r.created_at)
    assert runs.get_run(second.id).status == runs.QUEUED
    wait_for(at, lambda: all(runs.get_run(r.id).status == runs.COMPLETED for r in (first, second)), timeout_s=300)
    at.multiselect(key="train_compare").set_value([first.id, second.id]).run()
    chart = next(c for c in at.get("plotly_chart") if "train_compare_chart" in c.proto.id)
    import json

    groups = {trace.get("legendgroup") for trace in json.loads(chart.proto.spec)["data"]}
    assert len(groups) == 2


def test_grid_queues_one_run_per_cell():
    at = open_train()
    at.multiselect(key="train_grid_lrs").set_value([1e-3, 1e-4])
    at.multiselect(key="train_grid_wds").set_value([0.0, 0.01])
    at.number_input(key="train_grid_size").set_value(32)
    at.button(key="train_grid_launch").click().run()
    assert not at.exception
    cells = grid.grid_cells(grid.grid_ids()[0])
    assert sorted((c.learning_rate, c.weight_decay) for c in cells) == [
        (1e-4, 0.0),
        (1e-4, 0.01),
        (1e-3, 0.0),
        (1e-3, 0.01),
    ]
    assert all(r.config.model.regime == "frozen" for r in runs.list_runs())
    assert sum(r.status == runs.QUEUED for r in runs.list_runs()) >= 3


# ------------------------------------------------------------------------------------------ the instructor's journey


def test_learning_rates_step_by_factors_and_launch_with_the_chosen_one():
    at = open_train()
    slider = at.select_slider(key="train_frozen_lr")
    assert slider.value == 1e-4
    options = [float(o) for o in slider.options]
    after, before = options[options.index(1e-4) + 1], options[options.index(1e-4) - 1]
    assert (after, before) == (2e-4, 5e-5)  # '+' multiplies, '-' divides: never 9e-5, 8e-5, ...
    fill_frozen_form(at)
    at.select_slider(key="train_frozen_lr").set_value(after)
    submit(at)
    [record] = runs.list_runs()
    assert record.config.train.learning_rate == 2e-4


def test_a_fine_tune_takes_its_network_and_data_from_the_frozen_run(tiny_run, transfer_lab_home):
    """Seen at HEAD: the image size was greyed at 0, so a fine-tune of a 32 px run asked for 224 px and was
    refused, naming a developer function; and it took the Data page's choice, not the parent's data."""
    parent_id = tiny_run(transfer_lab_home, name="frozen parent", test_images=18)
    parent = runs.get_run(parent_id)
    at = open_train(DataConfig(source="demo", max_train_images=90))  # the Data page now shows something else
    at.segmented_control(key="train_regime").set_value("finetune").run()
    assert at.selectbox(key="train_finetune_parent").value == parent_id
    assert any("the frozen run's" in m.value and parent.config.data.summary() in m.value for m in at.markdown)
    at.number_input(key="train_finetune_epochs").set_value(1)
    at.number_input(key="train_finetune_batch").set_value(9)
    at.button(key="FormSubmitter:train_finetune_form-Launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    child = next(r for r in runs.list_runs() if r.regime == "finetune")
    assert child.parent_id == parent_id and child.config.data == parent.config.data
    assert models_size(child) == models_size(parent) == 32 and child.backbone == parent.backbone
    assert child.config.augment == parent.config.augment


def models_size(record) -> int:
    return record.config.model.effective_image_size


def test_choices_survive_a_refresh_through_the_url():
    """A refresh is a new session: the URL's query parameters bring the Data and Augment choices back."""
    first = AppTest.from_file(APP, default_timeout=180)
    first.run()
    first.session_state["shared.data_config"] = TINY_DATA
    first.switch_page("app_pages/train.py").run()
    assert not first.exception
    carried = dict(first.query_params)
    assert "data" in carried

    refreshed = AppTest.from_file(APP, default_timeout=180)
    for key, value in carried.items():
        refreshed.query_params[key] = value
    refreshed.switch_page("app_pages/train.py").run()
    assert not refreshed.exception
    assert refreshed.session_state["shared.data_config"] == TINY_DATA
    assert any(TINY_DATA.summary() in m.value for m in refreshed.markdown)

    broken = AppTest.from_file(APP, default_timeout=180)
    broken.query_params["data"] = "{not json"
    broken.switch_page("app_pages/train.py").run()
    assert not broken.exception and broken.session_state["shared.data_config"] == DataConfig()


def test_a_run_stopped_before_its_first_epoch_does_not_promise_a_checkpoint():
    run_id = runs.create_run(RunConfig(data=TINY_DATA))
    runs.request_stop(run_id)  # queued: stopped at once, no epoch, no checkpoint
    at = open_train()
    assert any("no checkpoint yet" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not any("from its last checkpoint" in w.value for w in at.warning)


def test_launch_and_grid_check_the_data_first_and_create_no_run(tmp_path):
    photo = tmp_path / "dog.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    at = open_train(DataConfig(source=f"folder:{photo}"))
    fill_frozen_form(at, size=32)
    submit(at)
    assert [shown(e) for e in at.error] == [
        f"dog.jpg is a file, not a folder: give the folder that holds one sub-folder of images per class "
        f"(perhaps {tmp_path}), or pick the demo dataset."
    ]
    at.button(key="train_grid_launch").click().run()
    assert not at.exception
    assert any("dog.jpg is a file, not a folder" in shown(e) for e in at.error)
    assert runs.list_runs() == []


def test_time_left_follows_the_epochs_not_the_setup():
    """The progress line promises no time before the first epoch (the setup and the extraction come once), then
    counts down at the pace of the epochs."""
    run_id = runs.create_run(RunConfig(data=TINY_DATA, train=TrainConfig(epochs=5)), runs.FOREGROUND)
    assert runs.claim_foreground(run_id)  # this test process is the run's worker
    runs.record_progress(run_id, phase="extracting features", epoch=1, batch=18, batches=23)
    line = progress_line(open_train())
    assert "Extracting features · epoch 1 of 5 · batch 18/23" in line and "left" not in line, line

    started = runs.get_run(run_id).started_at
    metrics = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5}
    with runs.connect() as db:  # two epochs 10 s apart
        for epoch, at in ((1, started + 1), (2, started + 11)):
            runs.record_epoch(run_id, epoch, metrics, seconds=9.0)
            db.execute("UPDATE epochs SET recorded_at = ? WHERE run_id = ? AND epoch = ?", (at, run_id, epoch))
        db.commit()
    runs.record_progress(run_id, phase=runs.TRAINING, epoch=3, batch=5, batches=10)
    line = progress_line(open_train())
    assert "epoch 3 of 5 · batch 5/10" in line and "~0:25 left" in line, line  # 2.5 epochs of 10 s
    runs.finish_run(run_id, runs.STOPPED)


def progress_line(at: AppTest) -> str:
    bars = at.get("progress")
    assert bars, "no progress bar on the page"
    return bars[0].proto.text

"""The instructor's journey, end to end, in a real browser on a real `streamlit run`: choose the data and the
augmentation, run the live demo and watch it (a refresh and a second tab included), fine-tune it from the page,
queue a run and stop it and the one behind it (no worker process may remain), compare on Evaluate, classify an
uploaded photo with the fine-tuned run."""

import numpy as np
import pytest
from PIL import Image

from core import demo, runs
from e2e.steps import choose, field, launch, run_named, set_number, shot, value_of, wait_until

pytestmark = pytest.mark.browser

POINTS = (
    "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
    ".map(plot => (plot.data || []).map(trace => Array.from(trace.x || [])))"
)


def chart_x(page) -> list[list[list[float]]]:
    return page.evaluate(POINTS)


def live_chart_epochs(page) -> list[float]:
    """The x values (epochs) of the live chart's first trace: the first plot on the Train page."""
    plots = chart_x(page)
    return plots[0][0] if plots and plots[0] else []


def watch_and_stop(page, name: str) -> None:
    """Runs tab: pick the run, watch it live, and once the live panel shows it, press its Stop button."""
    choose(page, "Run", name)
    page.get_by_role("button", name="Watch live").click()
    page.locator("h4").filter(has_text=name).first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Stop").click()


def test_the_instructors_journey(app_url, app_home, page, browser, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(app_home))  # this test reads the app's run store
    try:
        journey(app_url, page, browser, tmp_path)
    except BaseException:
        shot(page, tmp_path, "failure")  # what the page showed when a step failed
        print(f"screenshots in {tmp_path}; app log: {app_home / 'streamlit.log'}")
        raise


def journey(app_url, page, browser, tmp_path) -> None:
    # Data: the demo shapes, a small subset.
    page.goto(app_url + "/data")
    page.get_by_text("Samples").wait_for(timeout=60_000)
    images = page.locator('[data-testid="stImage"] img')
    images.first.wait_for(timeout=60_000)
    wait_until(lambda: images.count() >= 9, 60, "the 3 x 3 grid of samples")  # they appear one by one
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    assert captions and set(captions) <= set(demo.CLASS_NAMES)
    page.get_by_text("Subset for quick runs").click()
    set_number(page, "Training images (0 = all)", 90)
    set_number(page, "Test images (0 = all)", 45)
    page.get_by_text("≤90 train").first.wait_for(timeout=30_000)

    # Augment: the light preset.
    page.get_by_role("link", name="Augment").first.click()
    page.get_by_text("Training will use").wait_for(timeout=60_000)
    choose(page, "Preset", "light")
    page.get_by_text("light preset").first.wait_for(timeout=30_000)

    # Train: the live demo preset, 2 epochs.
    page.get_by_role("link", name="Train").first.click()
    page.get_by_text("No runs yet").wait_for(timeout=60_000)
    page.get_by_text("light preset").first.wait_for(timeout=30_000)  # the Augment choice reached the Train page
    page.locator('[data-testid="stCheckbox"]').filter(has_text="Live demo preset").locator("label").first.click()
    size = "Image size (pixels)"
    wait_until(lambda: value_of(page, size) == "96", 30, "the live demo's settings in the form")
    field(page, "Run name").fill("class demo")
    set_number(page, "Epochs", 2)
    assert value_of(page, size) == "96" and value_of(page, "Run name") == "class demo"
    launch(page)
    page.get_by_text("class demo").first.wait_for(timeout=30_000)
    frozen = run_named("class demo")
    assert frozen.config.model.image_size == 96 and frozen.config.data.max_train_images == 540

    # A second tab sees the run live; a refresh keeps the Data and Augment choices and the live state.
    other = browser.new_page(viewport={"width": 1400, "height": 1000})
    other.goto(app_url + "/train")
    other.get_by_text("class demo").first.wait_for(timeout=60_000)
    page.reload()
    page.get_by_text("class demo").first.wait_for(timeout=60_000)
    page.get_by_text("demo, ≤90 train, ≤45 test").first.wait_for(timeout=30_000)
    page.get_by_text("light preset").first.wait_for(timeout=30_000)
    page.wait_for_function(
        f"({POINTS})().length > 0 && ({POINTS})()[0].length > 0 && ({POINTS})()[0][0].length >= 1", timeout=300_000
    )  # the chart gains its first point
    other.wait_for_function(f"({POINTS})().length > 0 && ({POINTS})()[0].length > 0", timeout=60_000)
    other.close()
    page.get_by_text("2 of 2").first.wait_for(timeout=300_000)
    wait_until(lambda: live_chart_epochs(page) == [1, 2], 30, "the live chart's epochs 1 and 2")
    assert runs.wait_until_finished(frozen.id, timeout_s=60).status == runs.COMPLETED
    shot(page, tmp_path, "1-frozen-done")

    # Fine-tune it from the page: network, size and data come from the frozen run; the curve continues.
    page.get_by_text("Fine-tune the top layers", exact=True).click()
    page.get_by_text("the frozen run's").first.wait_for(timeout=30_000)
    field(page, "Run name").fill("class demo, fine-tuned")
    set_number(page, "Epochs", 1)
    launch(page)
    page.get_by_text("class demo, fine-tuned").first.wait_for(timeout=30_000)
    child = run_named("class demo, fine-tuned")
    assert child.parent_id == frozen.id and child.config.data == frozen.config.data
    assert runs.wait_until_finished(child.id, timeout_s=300).status == runs.COMPLETED, run_named(child.name).error
    page.get_by_text("1 of 1").first.wait_for(timeout=30_000)
    wait_until(lambda: live_chart_epochs(page) == [3], 30, "the fine-tune's curve after the frozen run's epochs")
    shot(page, tmp_path, "2-finetune-done")

    # Queue two from-scratch runs; stop the first mid-epoch, then the one that started behind it.
    page.get_by_text("Train from scratch", exact=True).click()
    set_number(page, "Image size (pixels)", 32)
    set_number(page, "Epochs", 20)
    field(page, "Run name").fill("first to stop")
    launch(page)
    page.get_by_text("first to stop").first.wait_for(timeout=30_000)
    field(page, "Run name").fill("second to stop")
    launch(page)
    page.get_by_text("Queued: position 1").wait_for(timeout=30_000)
    first, second = run_named("first to stop"), run_named("second to stop")
    wait_until(lambda: runs.progress(first.id).phase == "training", 240, "the first scratch run to train")
    first_pid = runs.get_run(first.id).pid

    page.get_by_role("tab", name="Runs & comparison").click()
    watch_and_stop(page, "first to stop")
    wait_until(lambda: runs.get_run(first.id).status == runs.STOPPED, 30, "the first run to stop")
    page.get_by_role("button", name="Resume").wait_for(timeout=15_000)  # the runs tab followed the store
    wait_until(lambda: not runs.process_alive(first_pid), 20, f"the stopped worker {first_pid} to exit")

    # The overlay follows the runs with curves by itself: live chart, then the frozen and fine-tune runs overlaid.
    overlaid = (
        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".some(plot => new Set((plot.data || []).map(trace => trace.legendgroup)).size >= 2)"
    )
    page.wait_for_function(overlaid, timeout=30_000)
    wait_until(lambda: runs.get_run(second.id).status == runs.RUNNING, 30, "the queued run to start")
    watch_and_stop(page, "second to stop")
    wait_until(lambda: not runs.get_run(second.id).is_active, 60, "the second run to stop")
    second_pid = runs.get_run(second.id).pid
    wait_until(lambda: not runs.process_alive(second_pid), 20, f"the stopped worker {second_pid} to exit")
    shot(page, tmp_path, "3-stopped")

    # Evaluate: the fine-tune against its frozen parent, on the same test split.
    page.get_by_role("link", name="Evaluate").first.click()
    page.get_by_text("Confusion matrix").wait_for(timeout=120_000)
    choose(page, "Run", "class demo, fine-tuned")
    choose(page, "Compare with (optional; runs tested on the same images)", "class demo ·")
    page.get_by_text("this run minus").first.wait_for(timeout=120_000)  # deltas against the frozen parent
    deltas = page.locator('[data-testid="stMetricDelta"]')  # the four headline metrics render one by one
    wait_until(lambda: deltas.count() >= 4, 60, "the four metric deltas")
    assert deltas.count() == 4
    shot(page, tmp_path, "4-evaluate")

    # Classify: an uploaded photo, with the fine-tuned run.
    photo = tmp_path / "shape.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)).save(photo)
    page.get_by_role("link", name="Classify").first.click()
    page.get_by_text("Upload one or more photos").wait_for(timeout=120_000)
    choose(page, "Model", "class demo, fine-tuned")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    page.get_by_text("Grad-CAM opacity").wait_for(timeout=120_000)
    page.locator('[data-testid="stImage"] img').first.wait_for(timeout=120_000)
    assert page.get_by_text("shape.png").count()
    shot(page, tmp_path, "5-classify")

    # Nothing left running: every run has ended and no worker process of any run remains.
    for record in runs.list_runs():
        assert not record.is_active, (record.name, record.status)
        assert not runs.process_alive(record.pid), (record.name, record.pid)

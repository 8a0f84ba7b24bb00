"""The instructor's journey in a real browser: pick a small subset, launch a run, watch it finish."""

import pytest

pytestmark = pytest.mark.browser


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def test_launch_a_tiny_run_and_watch_it_complete(app_url, page, tmp_path):
    page.goto(app_url + "/data")
    page.get_by_text("Samples").wait_for(timeout=60_000)
    page.get_by_text("Subset for quick runs").click()
    set_number(page, "Training images (0 = all)", 90)
    set_number(page, "Test images (0 = all)", 45)
    page.get_by_text("≤90 train").wait_for(timeout=30_000)

    page.get_by_role("link", name="Train").first.click()  # in-app navigation keeps the session's data choice
    page.get_by_text("No runs yet").wait_for(timeout=60_000)
    set_number(page, "Image size (pixels, 0 = the backbone's own)", 32)
    set_number(page, "Epochs", 2)
    page.get_by_role("button", name="Launch").click()

    points = ("() => Math.max(0, ...Array.from(document.querySelectorAll('.js-plotly-plot'))"
              ".map(plot => plot.data && plot.data[1] ? plot.data[1].x.length : 0))")
    page.wait_for_function(f"({points})() >= 1", timeout=240_000)  # the chart gains its first point...
    page.get_by_text("completed").first.wait_for(timeout=240_000)
    page.wait_for_function(f"({points})() === 2", timeout=30_000)  # ...and the second: val. accuracy per epoch
    page.get_by_text("2 of 2").first.wait_for(timeout=10_000)
    page.screenshot(path=str(tmp_path / "train.png"), full_page=True)

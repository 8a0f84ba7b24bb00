"""Steps both browser journeys take: find the one visible widget by its label, choose, type, wait, screenshot.

Streamlit keeps a rerun's old elements on screen until the new ones replace them, so every step waits for exactly
one visible match instead of taking the first.
"""

import time

from core import runs


def field(page, label: str):
    """The one input labelled ``label``, once the rerun that redrew the form has removed the old one (inputs in
    tabs not shown, such as the grid's Epochs behind the launch form's, do not count)."""
    box = page.get_by_label(label, exact=True).filter(visible=True)
    wait_until(lambda: box.count() == 1, 30, f"one field labelled {label!r}")
    return box


def value_of(page, label: str) -> str | None:
    """The value in the one input labelled ``label``; None while a rerun shows two (old and new form)."""
    box = page.get_by_label(label, exact=True).filter(visible=True)
    try:
        return box.input_value(timeout=1_000) if box.count() == 1 else None
    except Exception:  # replaced between the count and the read
        return None


def launch(page) -> None:
    """Press the form's one Launch button, once the rerun that switched the regime has removed the old form's."""
    button = page.get_by_role("button", name="Launch").filter(visible=True)
    wait_until(lambda: button.count() == 1, 30, "one Launch button")
    button.click()


def set_number(page, label: str, value: int) -> None:
    box = field(page, label)
    box.fill(str(value))
    box.press("Tab")


def choose(page, label: str, option: str) -> None:
    """A Streamlit selectbox: open the one labelled ``label``, pick the first option containing ``option``."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True)).first
    entry = box.locator("input").first
    entry.click()
    wanted = page.locator('[role="option"]').filter(has_text=option).first
    try:
        wanted.wait_for(timeout=3_000)
    except Exception:  # the box kept the focus from a previous choice: clicking again does not open it
        entry.press("ArrowDown")
    wanted.click(timeout=15_000)


def run_named(name: str) -> runs.RunRecord:
    return next(r for r in runs.list_runs() if r.name == name)


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s: {what}"
        time.sleep(0.25)


def shot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def lasso(page, plot_index: int = 0) -> None:
    """Draw a lasso around the middle of a plotly map (a rectangle of the plot area's centre), as a learner does."""
    plot = page.locator(".js-plotly-plot").nth(plot_index)
    plot.scroll_into_view_if_needed()
    area = plot.locator(".nsewdrag").first.bounding_box()
    x0, y0 = area["x"] + area["width"] * 0.2, area["y"] + area["height"] * 0.2
    x1, y1 = area["x"] + area["width"] * 0.8, area["y"] + area["height"] * 0.8
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)):
        page.mouse.move(x, y, steps=6)
    page.mouse.up()

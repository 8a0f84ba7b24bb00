"""The first journey in a real browser: open the Data page and see sample dogs... or shapes."""

import pytest

from core import demo

pytestmark = pytest.mark.browser


def test_data_page_renders_samples_and_class_names(app_url, page, tmp_path):
    page.goto(app_url + "/data")
    page.get_by_text("Samples").wait_for(timeout=60_000)
    images = page.locator('[data-testid="stImage"] img')
    images.first.wait_for(timeout=60_000)
    assert images.count() >= 9
    assert page.evaluate("(img) => img.naturalWidth", images.first.element_handle()) > 0
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    assert captions and set(captions) <= set(demo.CLASS_NAMES)
    page.get_by_text("Images per class").wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "data.png"), full_page=True)

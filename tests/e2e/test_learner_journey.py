"""The learner's journey with their own photos, end to end, in a real browser on a real `streamlit run`: make a
three-class dataset on the Data page by uploading files, see it survive a refresh, train the live-demo preset on
it, classify an uploaded photo with the run (and see that the photo can join the dataset), and lasso the dataset's
images on the Explore map to see them."""

import pytest
from PIL import Image

from core import datasets, runs
from e2e.steps import choose, field, lasso, launch, run_named, shot, value_of, wait_until
from pictures import noisy_pixels

pytestmark = pytest.mark.browser

COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 210)}
PER_CLASS = 6


def photo(path, colour, seed: int) -> str:
    """A 64 px photo of one colour with noise, so every file has its own bytes (the store keeps one per content)."""
    Image.fromarray(noisy_pixels(colour, seed, shape=(64, 64), spread=30)).save(path)
    return str(path)


def test_the_learners_journey(app_url, app_home, page, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(app_home))  # this test reads the app's run store and datasets
    try:
        journey(app_url, page, tmp_path)
    except BaseException:
        shot(page, tmp_path, "failure")
        print(page.inner_text("body")[-3000:])  # what the page said, below the screenshot's fold too
        print(f"screenshots in {tmp_path}; app log: {app_home / 'streamlit.log'}")
        raise


def journey(app_url, page, tmp_path) -> None:
    # Data: a new dataset with three classes.
    page.goto(app_url + "/data")
    page.get_by_text("My datasets (made here)").first.click()
    field(page, "Name").fill("colours")
    field(page, "Class names (one per line, or separated by commas)").fill("red\ngreen\nblue")
    page.get_by_role("button", name="Create").click()
    page.get_by_text("Add images").first.wait_for(timeout=30_000)

    # Upload six photos to each class, one class at a time.
    for number, (name, colour) in enumerate(COLOURS.items()):
        files = [photo(tmp_path / f"{name}{i}.png", colour, 10 * number + i) for i in range(PER_CLASS)]
        choose(page, "To the class", name)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(files)  # the Photos tab
        page.get_by_role("button", name=f"Add {PER_CLASS} photos to '{name}'").click()
        wait_until(lambda n=name: len(datasets.images("colours", n)) == PER_CLASS, 60, f"{name}'s photos stored")
    assert datasets.summary("colours").counts == dict.fromkeys(COLOURS, PER_CLASS)
    page.get_by_text("18").first.wait_for(timeout=30_000)
    shot(page, tmp_path, "1-dataset")

    # A refresh keeps the choice (it is in the URL), so the Train page offers the live demo on this dataset.
    page.reload()
    page.get_by_text("Add images").first.wait_for(timeout=60_000)
    page.get_by_role("link", name="Train").first.click()
    toggle = page.locator('[data-testid="stCheckbox"]').filter(has_text="your dataset 'colours'")
    toggle.locator("label").first.click()
    wait_until(lambda: value_of(page, "Image size (pixels)") == "160", 30, "the live demo's 160 px in the form")
    field(page, "Run name").fill("my colours")
    launch(page)
    page.get_by_text("my colours").first.wait_for(timeout=30_000)
    record = runs.wait_until_finished(run_named("my colours").id, timeout_s=300)
    assert record.status == runs.COMPLETED, record.error
    assert record.config.data.source == "local:colours"
    shot(page, tmp_path, "2-trained")

    # Classify: a new photo with the run, then into the dataset as 'red' from its card.
    page.get_by_role("link", name="Classify").first.click()
    page.get_by_text("Upload one or more photos").wait_for(timeout=120_000)
    choose(page, "Model", "my colours")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        photo(tmp_path / "new-red.png", COLOURS["red"], 999)
    )
    page.get_by_text("Grad-CAM opacity").wait_for(timeout=120_000)
    page.get_by_text("new-red.png").first.wait_for(timeout=60_000)
    choose(page, "Add to 'colours' as", "red")
    page.get_by_role("button", name="Add to 'colours'").click()
    wait_until(lambda: len(datasets.images("colours", "red")) == PER_CLASS + 1, 30, "the new photo added to 'red'")
    page.get_by_text("In the dataset as").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Remove").first.wait_for(timeout=30_000)  # the card's fixes replaced Add
    shot(page, tmp_path, "3-classify")

    # Explore: the dataset's images on the feature map (its choice kept in the URL); a lasso shows their thumbnails.
    page.get_by_role("link", name="Explore").first.click()
    page.get_by_text("kNN accuracy").first.wait_for(timeout=180_000)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=180_000)
    lasso(page)
    heading = page.get_by_text("selected image(s)").first
    heading.wait_for(timeout=60_000)
    assert int(heading.inner_text().split()[0]) >= 1
    wait_until(lambda: page.locator('[data-testid="stImage"]').count() >= 2, 60, "the selection's thumbnails")
    shot(page, tmp_path, "4-explore")
    for record in runs.list_runs():
        assert not record.is_active and not runs.process_alive(record.pid), record.name

"""Home and Data pages through Streamlit's AppTest (no browser)."""

import html
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from core import data, demo
from core.config import DataConfig
from core.errors import DataUnavailable

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_home_explains_regimes_machine_and_offline_data():
    at = open_app()
    text = " ".join(m.value for m in at.markdown)
    assert "From scratch" in text and "Frozen backbone" in text and "Fine-tuning" in text
    assert "Demo shapes" in text and "Stanford Dogs" in text
    assert {m.label for m in at.metric} >= {"Runs on", "TensorFlow", "Keras"}
    assert "EfficientNet-Lite0 (offline ImageNet)" in text  # its weights ship with pip: always available
    assert "default" in at.info[0].value


def test_data_page_shows_demo_classes_samples_and_balance(demo_home):
    at = open_app("data")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == str(len(demo.CLASS_NAMES))
    assert at.get("image"), "the sample grid rendered no images"
    captions = [caption for element in at.get("image") for caption in element.proto.imgs[0].caption.split("\n")]
    assert set(captions) <= set(demo.CLASS_NAMES) and captions
    assert at.session_state["shared.data_config"] == DataConfig()


def test_data_page_subset_updates_the_shared_config(demo_home):
    at = open_app("data")
    at.number_input(key="data_max_train").set_value(90).run()
    assert not at.exception
    assert at.session_state["shared.data_config"].max_train_images == 90
    assert {m.label: m.value for m in at.metric}["Training images"] == "90"


def test_data_page_offline_tfds_shows_a_clear_error_and_keeps_running(demo_home):
    at = open_app("data")
    at.radio(key="data_source").set_value("Stanford Dogs (TFDS)").run()
    assert not at.exception
    assert at.error and "not downloaded" in at.error[0].value
    assert any(b.label.startswith("Download stanford_dogs") for b in at.button)
    at.radio(key="data_source").set_value("Demo shapes (offline)").run()
    assert not at.error


def test_data_page_bad_folder_is_an_error_not_a_crash(tmp_path, demo_home):
    at = open_app("data")
    at.radio(key="data_source").set_value("My photos (a folder)").run()
    at.text_input(key="data_folder_path").input(str(tmp_path / "missing")).run()
    assert not at.exception
    assert "does not exist" in at.error[0].value


def test_data_page_grid_control_shows_the_grid_shown_also_after_another_page(demo_home):
    at = open_app("data")
    assert at.segmented_control(key="data_grid").value == "3 × 3" and len(at.get("image")) == 9
    at.segmented_control(key="data_grid").set_value("5 × 5").run()
    assert len(at.get("image")) == 25
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/data.py").run()
    assert not at.exception
    grid = at.segmented_control(key="data_grid")
    assert len(at.get("image")) == 25
    assert grid.value == "5 × 5" and grid.proto.set_value and list(grid.proto.raw_values) == ["5 × 5"]
    assert grid.proto.required  # clicking the chosen size cannot leave the control empty


def test_data_page_error_shows_the_path_and_example_as_typed(tmp_path, demo_home):
    folder = tmp_path / "my_dogs_" / "*only*"
    (folder / "beagle").mkdir(parents=True)
    with pytest.raises(DataUnavailable) as expected:
        data.describe(DataConfig(source=f"folder:{folder}"))
    assert "photos/beagle/*.jpg" in str(expected.value)
    at = open_app("data")
    at.radio(key="data_source").set_value("My photos (a folder)").run()
    at.text_input(key="data_folder_path").input(str(folder)).run()
    assert not at.exception
    rendered = MarkdownIt("commonmark").render(at.error[0].value)  # as the browser's markdown would show it
    assert html.unescape(rendered.strip()) == f"<p>{expected.value}</p>"

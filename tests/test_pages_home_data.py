"""Home and Data pages through Streamlit's AppTest (no browser)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import demo
from core.config import DataConfig

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

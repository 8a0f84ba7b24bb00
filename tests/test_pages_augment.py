"""The Augment page through AppTest: sliders drive the grid and the config the Train page reads."""

import io
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.config import AUGMENT_PRESETS

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
STATE = "shared.augment_config"


def open_augment() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("app_pages/augment.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def grid_images(at: AppTest) -> list:
    return [element.proto.imgs[0].url for element in at.get("image")]


def test_defaults_to_the_notebook_preset_with_original_and_nine_versions(demo_home):
    at = open_augment()
    assert at.session_state[STATE] == AUGMENT_PRESETS["notebook"]
    assert len(at.get("image")) == 10  # original + 3 x 3
    assert any("notebook preset" in i.value for i in at.info)


def test_moving_a_slider_changes_grid_and_shared_config(demo_home):
    at = open_augment()
    before = grid_images(at)
    at.slider(key="augment_rotation").set_value(0.4).run()
    assert not at.exception
    assert at.session_state[STATE].rotation == 0.4
    assert any("custom" in i.value and "rotation 0.4" in i.value for i in at.info)
    after = grid_images(at)
    assert after[0] == before[0] and after[1:] != before[1:]  # same original, new versions


def test_the_preset_box_follows_the_sliders_and_any_preset_loads_again(demo_home):
    at = open_augment()
    assert at.selectbox(key="augment_preset").value == "notebook"
    at.slider(key="augment_rotation").set_value(0.4).run()
    assert at.selectbox(key="augment_preset").value == "custom"  # the box agrees with the summary
    at.selectbox(key="augment_preset").set_value("notebook").run()  # the preset last picked, picked again
    assert not at.exception
    assert at.slider(key="augment_rotation").value == AUGMENT_PRESETS["notebook"].rotation
    assert at.session_state[STATE] == AUGMENT_PRESETS["notebook"]
    assert at.selectbox(key="augment_preset").value == "notebook"
    assert any("notebook preset" in i.value for i in at.info)
    at.toggle(key="augment_contrast_on").set_value(False).run()
    assert at.selectbox(key="augment_preset").value == "custom"
    at.toggle(key="augment_contrast_on").set_value(True).run()  # back where the preset was: named again
    assert at.selectbox(key="augment_preset").value == "notebook"


def test_preset_none_switches_everything_off(demo_home):
    at = open_augment()
    at.selectbox(key="augment_preset").set_value("none").run()
    assert not at.exception
    assert at.session_state[STATE] == AUGMENT_PRESETS["none"]
    assert any("Every transformation is off" in w.value for w in at.warning)


def test_one_at_a_time_labels_each_transformation(demo_home):
    at = open_augment()
    at.toggle(key="augment_one_at_a_time").set_value(True).run()
    captions = [element.proto.imgs[0].caption for element in at.get("image")[1:]]
    assert captions == ["Rotation", "Translation", "Flip", "Contrast"]


def test_uploaded_photo_and_bad_upload(demo_home):
    at = open_augment()
    at.segmented_control(key="augment_source").set_value("My photo").run()
    assert any("Upload a JPEG" in i.value for i in at.info)
    buffer = io.BytesIO()
    Image.fromarray(np.full((60, 90, 3), (200, 40, 40), np.uint8)).save(buffer, format="PNG")
    at.file_uploader(key="augment_upload").set_value(("red.png", buffer.getvalue(), "image/png")).run()
    assert not at.exception and not at.error
    images = at.get("image")
    assert len(images) == 10 and images[0].proto.imgs[0].caption == "Original: red.png"
    at.file_uploader(key="augment_upload").set_value(("notes.jpg", b"just some text, honestly", "image/jpeg")).run()
    assert not at.exception
    assert at.error and "notes.jpg" in at.error[0].value

"""The Classify page through AppTest: the no-training dog classifier on real photos, bad uploads, a tiny run.

AppTest runs the page in this process, so the dog classifier (cached with st.cache_resource) is built once
for the whole module.
"""

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest, app_test

from core import demo

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
SAMOYED = "n02111889-Samoyed/n02111889_1206.jpg"  # the dog classifier: Samoyed, p = 0.97
GOLDEN = "n02099601-golden_retriever/n02099601_1299.jpg"  # golden retriever, p = 0.98
DOG_BREEDS = "imagenet-dog-breeds"


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory, tiny_run):
    """A data directory holding one finished 1-epoch run on 32 px demo images."""
    home = tmp_path_factory.mktemp("classify-home")
    return home, tiny_run(home, name="tiny shapes", test_images=9)


def open_classify() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("app_pages/classify.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def upload(path: Path) -> tuple[str, bytes, str]:
    return path.name, path.read_bytes(), "image/jpeg"


def image_captions(at: AppTest) -> list[str]:
    return [element.proto.imgs[0].caption for element in at.get("image")]


def image_urls(at: AppTest) -> list[str]:
    return [element.proto.imgs[0].url for element in at.get("image")]


def test_without_runs_the_dog_classifier_is_the_default_and_explained():
    at = open_classify()
    assert at.selectbox(key="classify_model").value == DOG_BREEDS
    assert any("Grad-CAM" in m.value and "evidence" in m.value for m in at.markdown)
    assert any("Centre crop" in c.value and "120 classes" in c.value for c in at.caption)
    assert any("Upload one or more photos" in i.value for i in at.info)
    assert not at.get("camera_input")  # the browser is not asked for the camera until the toggle is on
    at.toggle(key="classify_use_camera").set_value(True).run()
    assert not at.exception
    assert at.get("camera_input")


def test_a_dog_photo_gets_its_breed_bars_and_grad_cam(dogs10):
    at = open_classify()
    at.file_uploader(key="classify_uploads").set_value(upload(dogs10 / "test" / SAMOYED)).run()
    assert not at.exception and not at.error
    assert any("**Samoyed**" in m.value for m in at.markdown)
    assert not at.warning  # p = 0.97: nothing to doubt
    assert image_captions(at) == ["Prediction: Samoyed", "Grad-CAM: evidence for Samoyed"]
    bars = at.get("plotly_chart")
    assert len(bars) == 1 and '"Samoyed"' in bars[0].proto.spec
    assert not at.dataframe  # one photo: no table
    photo, overlaid = image_urls(at)
    assert photo != overlaid
    at.slider(key="classify_opacity").set_value(0.0).run()
    assert not at.exception
    photo, overlaid = image_urls(at)
    assert photo == overlaid  # opacity 0: the photo alone


def colour_bars() -> bytes:
    """A television test pattern: seven vertical colour bars, nothing like a dog."""
    bars = np.zeros((224, 224, 3), np.uint8)
    colours = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    for index, colour in enumerate(colours):
        bars[:, index * 32 : (index + 1) * 32] = colour
    buffer = io.BytesIO()
    Image.fromarray(bars).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_test_pattern_gets_its_guess_and_a_plain_word_that_the_model_is_unsure():
    at = open_classify()
    at.file_uploader(key="classify_uploads").set_value(("test_pattern.png", colour_bars(), "image/png")).run()
    assert not at.exception and not at.error
    assert any("`test_pattern.png`" in m.value for m in at.markdown)  # the guess is still shown
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1
    assert "The model is unsure" in warnings[0] and "This may not be a dog" in warnings[0]


class RecordingStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media store, remembered so a test can read what a download button serves."""

    latest: "RecordingStorage | None" = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingStorage.latest = self


def test_several_photos_with_a_broken_one_fill_the_table_and_csv(dogs10, monkeypatch):
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", RecordingStorage)
    at = open_classify()
    files = [
        upload(dogs10 / "test" / SAMOYED),
        ("broken.jpg", b"not an image", "image/jpeg"),
        upload(dogs10 / "test" / GOLDEN),
    ]
    at.file_uploader(key="classify_uploads").set_value(files).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["file"]) == [name for name, _, _ in files]
    assert list(table["top-1"])[0::2] == ["Samoyed", "golden retriever"]
    broken = table[table["file"] == "broken.jpg"].iloc[0]
    assert pd.isna(broken["top-1"]) and "broken.jpg" in broken["error"]
    assert table["error"].isna().sum() == 2
    download = at.get("download_button")
    assert len(download) == 1
    served = RecordingStorage.latest.get_file(download[0].proto.url.rsplit("/", 1)[1])
    assert served.filename == "classified.csv" and served.mimetype.startswith("text/csv")
    csv_rows = list(csv.DictReader(io.StringIO(served.content.decode("utf-8"))))
    assert [row["file"] for row in csv_rows] == list(table["file"])
    assert csv_rows[0]["top-1"] == "Samoyed" and csv_rows[0]["top-5"].startswith("Samoyed 0.9")
    assert csv_rows[0]["top-5"].count(";") == 4 and csv_rows[0]["error"] == ""
    assert csv_rows[1]["top-1"] == "" and "broken.jpg" in csv_rows[1]["error"]
    assert len(at.error) == 1 and "broken.jpg" in at.error[0].value
    assert len(at.get("image")) == 4 and len(at.get("plotly_chart")) == 2
    assert any("1 could not be classified" in c.value for c in at.caption)


def test_a_trained_run_classifies_a_demo_image(trained_home, monkeypatch):
    home, run_id = trained_home
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(home))
    at = open_classify()
    assert at.selectbox(key="classify_model").value == run_id  # a run with a saved model comes first
    assert at.selectbox(key="classify_model").options[-1] == "ImageNet dog breeds (EfficientNet-Lite0, no training)"
    buffer = io.BytesIO()
    demo.render(0, "test", 0, 64).save(buffer, format="PNG")
    at.file_uploader(key="classify_uploads").set_value(("shape.png", buffer.getvalue(), "image/png")).run()
    assert not at.exception and not at.error
    assert any("32 x 32" in c.value and f"{len(demo.CLASS_NAMES)} classes" in c.value for c in at.caption)
    captions = image_captions(at)
    assert len(captions) == 2
    predicted = captions[0].removeprefix("Prediction: ")
    assert predicted in demo.CLASS_NAMES and captions[1] == f"Grad-CAM: evidence for {predicted}"
    assert len(at.get("plotly_chart")) == 1

"""Cleaning a dataset made in the app from the evidence: relabel and remove images on Evaluate, add or fix photos
on Classify (AppTest, on a tiny run trained in this process on a 32 px dataset with a zip's test/ split)."""

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.data
from core import data, datasets
from core.config import DataConfig
from pictures import noisy_png

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
DATASET = "pets"
CLASSES = {"cat": (200, 60, 60), "dog": (60, 60, 200), "owl": (60, 180, 60)}
TRAIN_PER_CLASS, TEST_PER_CLASS = 6, 3
DATA = DataConfig(source=f"local:{DATASET}")


def pets_zip() -> bytes:
    """train/<class>/ and test/<class>/ folders: the test/ images are the dataset's test split."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, (name, colour) in enumerate(CLASSES.items()):
            for i in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
                split = "train" if i < TRAIN_PER_CLASS else "test"
                archive.writestr(f"{split}/{name}/{i}.png", noisy_png(colour, 100 * number + i))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory, tiny_run):
    """A data directory with the dataset 'pets' (3 classes, 6 + 3 images each) and one 1-epoch run on it."""
    home = tmp_path_factory.mktemp("cleaning-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        datasets.create_dataset(DATASET)
        report = datasets.import_zip(DATASET, io.BytesIO(pets_zip()))
        assert report.ok and len(report.added) == len(CLASSES) * (TRAIN_PER_CLASS + TEST_PER_CLASS)
    tiny_run(home, name="tiny pets", data=DATA)
    return home


@pytest.fixture
def home(trained_home, tmp_path, monkeypatch) -> Path:
    """A copy of the trained data directory per test: the tests change the dataset."""
    copy = tmp_path / "home"
    shutil.copytree(trained_home, copy, symlinks=True)
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(copy))
    return copy


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def fix_labels(at: AppTest, prefix: str) -> dict[str, object]:
    """The label selectboxes under the images of one gallery, by the ref of their image."""
    return {
        box.key.removeprefix(prefix).removesuffix("_label"): box
        for box in at.selectbox
        if box.key and box.key.startswith(prefix) and box.key.endswith("_label")
    }


def toasts(at: AppTest) -> list[str]:
    return [toast.value for toast in at.toast]


# ---------------------------------------------------------------- Evaluate


def test_evaluate_relabels_removes_and_restores_test_images(home):
    folder = datasets.dataset_folder(DATASET)
    at = open_page("app_pages/evaluate.py")
    assert any(f"{len(CLASSES) * TEST_PER_CLASS} test images" in c.value for c in at.caption)
    assert any("trained on your dataset **pets**" in i.value for i in at.info)
    losses = fix_labels(at, "evaluate_losses_")
    assert len(losses) == len(CLASSES) * TEST_PER_CLASS  # top losses shows all 9 test images, each fixable
    refs = list(losses)
    assert all(".test." in ref for ref in refs)
    for ref, box in losses.items():
        assert box.options == list(CLASSES) and box.value == ref.split("/")[0]

    # Relabel the worst-predicted image: the file moves at once, and the data fingerprint changes.
    before = data.data_fingerprint(DATA)
    relabelled = refs[0]
    old_class, file_name = relabelled.split("/")
    new_class = next(c for c in CLASSES if c != old_class)
    losses[relabelled].set_value(new_class).run()
    assert not at.exception, [e.message for e in at.exception]
    assert not (folder / old_class / file_name).exists()
    assert (folder / new_class / file_name).is_file()
    assert data.data_fingerprint(DATA) != before
    assert any(f"Moved {file_name} to '{new_class}'" in t for t in toasts(at)), toasts(at)
    moved = fix_labels(at, "evaluate_losses_")
    assert f"{new_class}/{file_name}" in moved and relabelled not in moved  # re-predicted: the label follows
    assert moved[f"{new_class}/{file_name}"].value == new_class
    assert any(f"{len(CLASSES) * TEST_PER_CLASS} test images" in c.value for c in at.caption)  # still in test

    # Remove another: it goes to the trash, and the evaluation is re-made on the 8 test images left.
    removed = next(ref for ref in moved if ref != f"{new_class}/{file_name}")
    removed_class, removed_file = removed.split("/")
    at.button(key=f"evaluate_losses_{removed}_remove").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not (folder / removed).exists()
    assert (folder / ".trash" / removed).is_file()
    assert any(f"Removed {removed_file} to the trash" in t for t in toasts(at)), toasts(at)
    assert any(f"{len(CLASSES) * TEST_PER_CLASS - 1} test images" in c.value for c in at.caption)
    assert removed not in fix_labels(at, "evaluate_losses_")
    assert any(e.label == "Trash (1)" for e in at.expander)

    # Restore it from the Evaluate page's trash.
    at.button(key=f"evaluate_trash_restore_{removed}").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert (folder / removed).is_file() and not (folder / ".trash" / removed).exists()
    assert any(f"Restored {removed_file} to '{removed_class}'" in t for t in toasts(at)), toasts(at)
    assert any(f"{len(CLASSES) * TEST_PER_CLASS} test images" in c.value for c in at.caption)
    assert removed in fix_labels(at, "evaluate_losses_")


def test_evaluate_shows_no_fix_controls_when_files_and_predictions_disagree(home, monkeypatch):
    monkeypatch.setattr(core.data, "test_image_files", lambda config: [])
    at = open_page("app_pages/evaluate.py")
    assert not fix_labels(at, "evaluate_losses_")
    assert not [b for b in at.button if b.key and b.key.endswith("_remove")]
    assert any("cannot be matched to their files" in c.value for c in at.caption)
    assert len(at.get("image")) == len(CLASSES) * TEST_PER_CLASS  # the gallery itself is still there


# ---------------------------------------------------------------- Classify


def test_classify_shows_a_photo_from_the_dataset_and_adds_a_new_one(home):
    folder = datasets.dataset_folder(DATASET)
    known = datasets.images(DATASET, "owl")[0]
    new_photo = noisy_png((120, 120, 120), 999)
    assert datasets.find_image(DATASET, datasets.content_digest(new_photo)) is None

    at = open_page("app_pages/classify.py")
    assert any("Trained on your dataset **pets**" in c.value for c in at.caption)
    at.file_uploader(key="classify_uploads").set_value(
        [("from the dataset.png", known.path.read_bytes(), "image/png"), ("new.png", new_photo, "image/png")]
    ).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("In the dataset as **'owl'**" in m.value for m in at.markdown)
    fixes = fix_labels(at, "classify_dataset_")
    assert len(fixes) == 1 and next(iter(fixes.values())).value == "owl"

    digest = datasets.content_digest(new_photo)
    add_class = at.selectbox(key=f"classify_dataset_1_{digest}_class")
    assert add_class.label == "Add to 'pets' as" and add_class.options == list(CLASSES)
    predicted = next(i.proto.imgs[0].caption for i in at.get("image") if "Prediction" in i.proto.imgs[0].caption)
    assert add_class.value == predicted.removeprefix("Prediction: ")  # the prediction is the default
    target = next(c for c in CLASSES if c != add_class.value)
    add_class.set_value(target).run()
    at.button(key=f"classify_dataset_1_{digest}_add").click().run()
    assert not at.exception, [e.message for e in at.exception]
    stored = datasets.find_image(DATASET, digest)
    assert stored is not None and stored.class_name == target and stored.path.read_bytes() == new_photo
    assert stored.path.parent == folder / target and not stored.test
    assert any(f"Added 1 image to '{target}'" in t for t in toasts(at)), toasts(at)
    assert sum("In the dataset as" in m.value for m in at.markdown) == 2  # the card now shows it as in the dataset
    assert any(f"In the dataset as **'{target}'**" in m.value for m in at.markdown)

    # The photo from the dataset removed from its card goes to the trash.
    at.button(key=f"classify_dataset_0_{known.digest}_remove").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not known.path.exists() and (folder / ".trash" / known.ref).is_file()
    assert at.selectbox(key=f"classify_dataset_0_{known.digest}_class").label == "Add to 'pets' as"

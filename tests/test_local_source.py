"""A dataset made in the app as a data source (``local:<name>``): its split, its fingerprint, the live demo on it."""

import io
import zipfile

import pytest

from core import data, datasets
from core.catalog import LIVE_DEMO, LIVE_DEMO_ON_OWN_DATA
from core.config import DataConfig, live_demo_preset
from core.errors import ConfigError, DatasetError, DataUnavailable
from pictures import noisy_png


def png(colour, seed: int) -> bytes:
    return noisy_png(colour, seed, shape=(24, 32), spread=20)


@pytest.fixture
def pets():
    """Two classes of six images, added like uploads (no test marks: split by the data seed)."""
    datasets.create_dataset("pets", ["cat", "dog"])
    datasets.add_images("pets", "cat", [(f"c{i}.png", png((200, 60, 60), i)) for i in range(6)])
    datasets.add_images("pets", "dog", [(f"d{i}.png", png((60, 60, 200), 100 + i)) for i in range(6)])
    return DataConfig(source="local:pets", test_fraction=0.34)


def test_the_source_is_named_local_and_an_empty_name_is_refused():
    assert DataConfig(source="local:pets").kind == "local"
    assert DataConfig(source="local:pets").location == "pets"
    with pytest.raises(ConfigError):
        DataConfig(source="local:")


def test_uploaded_classes_are_split_by_the_data_seed(pets):
    info = data.describe(pets)
    assert info.class_names == ["cat", "dog"]
    assert info.train_counts == [4, 4] and info.test_counts == [2, 2]
    assert data.check_source(pets) == []
    first = {p.name for p in data.test_image_files(pets)}
    assert first == {p.name for p in data.test_image_files(pets)}  # the same seed, the same split
    assert first != {p.name for p in data.test_image_files(pets.replace(seed=5))}


def test_a_zips_test_folder_is_the_test_split():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(5):
            archive.writestr(f"train/owl/{i}.png", png((90, 90, 90), i))
            archive.writestr(f"train/n02085620-Chihuahua/{i}.png", png((220, 200, 150), 50 + i))
        archive.writestr("test/owl/t.png", png((90, 90, 90), 99))
        archive.writestr("test/n02085620-Chihuahua/t.png", png((220, 200, 150), 98))
    datasets.create_dataset("birds")
    datasets.import_zip("birds", io.BytesIO(buffer.getvalue()))
    info = data.describe(DataConfig(source="local:birds"))
    assert info.class_names == ["Chihuahua", "owl"]
    assert info.train_counts == [5, 5] and info.test_counts == [1, 1]


def test_the_fingerprint_changes_when_an_image_is_relabelled_removed_or_restored(pets):
    before = data.data_fingerprint(pets)
    assert before == data.data_fingerprint(pets)
    cat = datasets.images("pets", "cat")[0]
    moved = datasets.move_image("pets", cat.ref, "dog")
    relabelled = data.data_fingerprint(pets)
    assert relabelled != before
    trashed = datasets.remove_image("pets", moved.ref)
    removed = data.data_fingerprint(pets)
    assert removed not in (before, relabelled)
    datasets.restore("pets", trashed.entry)
    assert data.data_fingerprint(pets) == relabelled


def test_test_image_files_follow_the_pipelines_order(pets):
    splits = data.load_splits(pets, 32)
    labels = [int(label) for _, label in splits.test.as_numpy_iterator()]
    files = data.test_image_files(pets)
    assert [splits.info.class_names.index(path.parent.name) for path in files] == labels


def test_a_dataset_that_cannot_train_says_what_to_add(pets):
    datasets.create_dataset("lonely", ["cat"])
    datasets.add_images("lonely", "cat", [(f"c{i}.png", png((200, 60, 60), i)) for i in range(3)])
    with pytest.raises(DataUnavailable, match="at least two"):
        data.describe(DataConfig(source="local:lonely"))
    datasets.add_class("lonely", "dog")
    datasets.add_images("lonely", "dog", [("d.png", png((60, 60, 200), 7))])
    with pytest.raises(DataUnavailable, match="'dog' has 1.*on the Data page"):
        data.describe(DataConfig(source="local:lonely"))
    with pytest.raises(DatasetError, match="no dataset"):
        data.describe(DataConfig(source="local:missing"))


def test_the_live_demo_trains_on_a_dataset_made_in_the_app_and_on_the_demo_set_otherwise(pets):
    assert live_demo_preset(pets) == (pets, LIVE_DEMO_ON_OWN_DATA)
    demo_data, preset = live_demo_preset(DataConfig(source="folder:/somewhere"))
    assert demo_data == DataConfig(**LIVE_DEMO["data"]) and preset is LIVE_DEMO
    assert LIVE_DEMO_ON_OWN_DATA["model"]["image_size"] > LIVE_DEMO["model"]["image_size"]


def test_relabelling_one_image_moves_no_other_image_between_train_and_test(pets):
    """Else a re-made evaluation could test on images the run trained on."""
    before = {path.name for path in data.test_image_files(pets)}
    cat = next(image for image in datasets.images("pets", "cat") if image.path.name not in before)
    datasets.move_image("pets", cat.ref, "dog")
    after = {path.name for path in data.test_image_files(pets)}
    assert len(before - after) <= 1, "at most the moved image's class lost a test image"
    assert after - before <= {cat.path.name}, "no training image became a test image, except perhaps the moved one"

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import data, demo
from core.config import DataConfig, RunConfig
from core.data import cli, folders
from core.data import tfds as tfds_source
from core.errors import DataUnavailable

ROOT = Path(__file__).resolve().parents[1]


def _write(path, colour, mode="RGB", fmt=None, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)


@pytest.fixture
def photo_folder(tmp_path):
    """Three classes with JPEG, PNG, grayscale and CMYK files, plus a corrupt one and a non-image."""
    root = tmp_path / "photos"
    for i in range(6):
        _write(root / "red_fox" / f"a{i}.jpg", (220, 30, 30))
        _write(root / "blue_jay" / f"b{i}.png", (30, 30, 220), fmt="PNG")
        _write(root / "n02099601-golden_retriever" / f"c{i}.jpg", (200, 160, 60), mode="CMYK" if i % 2 else "L")
    (root / "red_fox" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "blue_jay" / "notes.txt").write_text("not an image, and not an image suffix")
    return root


def _materialise(ds):
    return list(ds.as_numpy_iterator())


def test_folder_source_splits_skips_and_names(photo_folder):
    config = DataConfig(source=f"folder:{photo_folder}", test_fraction=0.34, seed=3)
    splits = data.load_splits(config, image_size=32)
    info = splits.info
    assert info.class_names == ["blue jay", "golden retriever", "red fox"]
    assert info.skipped_files == 1 and "1 file" in info.warnings[0]
    assert info.num_train + info.num_test == 18
    assert info.test_counts == [2, 2, 2]
    train = _materialise(splits.train)
    assert len(train) == info.num_train
    image, label = train[0]
    assert image.shape == (32, 32, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 255 and image.max() > 1  # 0..255, never divided by 255
    colours = {int(lbl): img.mean(axis=(0, 1)) for img, lbl in train}
    assert colours[2][0] > 150 and colours[2][2] < 80  # red fox photos really are red
    assert colours[0][2] > 150  # blue jay blue
    assert 60 < colours[1].mean() < 200  # CMYK and grey golden retrievers decoded to sensible values


def test_folder_split_is_seeded(photo_folder):
    config = DataConfig(source=f"folder:{photo_folder}", seed=5)
    first = [p for p, _ in data.scan_folder(config).test]
    assert first == [p for p, _ in data.scan_folder(config).test]
    other = [p for p, _ in data.scan_folder(config.replace(seed=6)).test]
    assert sorted(first) != sorted(other)


def test_train_test_subfolders_and_subset_keep_every_class(tmp_path):
    root = tmp_path / "split"
    for split, n in (("train", 5), ("test", 2)):
        for name in ("cat", "dog", "owl"):
            for i in range(n):
                _write(root / split / name / f"{i}.png", (i * 40, 90, 10), fmt="PNG")
    listing = data.scan_folder(DataConfig(source=f"folder:{root}", max_train_images=3))
    assert sorted(label for _, label in listing.train) == [0, 1, 2]
    assert len(listing.test) == 6


def test_stanford_archive_layout_is_understood(tmp_path):
    for wnid, breed in (("n02085620", "Chihuahua"), ("n02088364", "beagle")):
        for i in range(3):
            _write(tmp_path / "Images" / f"{wnid}-{breed}" / f"{wnid}_{i}.jpg", (10 * i, 80, 120))
    info = data.describe(DataConfig(source=f"folder:{tmp_path}"))
    assert info.class_names == ["Chihuahua", "beagle"]


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataUnavailable, match="does not exist"):
        data.describe(DataConfig(source=f"folder:{tmp_path / 'nope'}"))
    with pytest.raises(DataUnavailable, match="two sub-folders"):
        data.describe(DataConfig(source=f"folder:{tmp_path}"))


def test_demo_source_describe_needs_no_drawing_and_load_matches(demo_home):
    config = DataConfig(source="demo", max_train_images=45, max_test_images=18)
    info = data.describe(config)
    assert info.class_names == demo.CLASS_NAMES and len(info.class_names) >= 6
    assert (info.num_train, info.num_test) == (45, 18)
    assert info.train_counts == [5] * 9
    full = data.describe(DataConfig())
    assert full.num_train >= 150 * 6 and full.num_test >= 50 * 6
    splits = data.load_splits(config, image_size=32)
    rows = _materialise(splits.test)
    assert len(rows) == 18 and sorted({int(label) for _, label in rows}) == list(range(9))


def test_sample_images_have_class_names(demo_home):
    samples = data.sample_images(DataConfig(), count=9, seed=1, size=48)
    assert len(samples) == 9
    assert all(img.shape == (48, 48, 3) and img.dtype == np.uint8 for img, _ in samples)
    assert {name for _, name in samples} <= set(demo.CLASS_NAMES)
    assert [n for _, n in samples] != [n for _, n in data.sample_images(DataConfig(), count=9, seed=2, size=48)]


def test_real_dog_photos(dogs10):
    config = DataConfig(source=f"folder:{dogs10}", max_train_images=20, max_test_images=10)
    splits = data.load_splits(config, image_size=64)
    assert splits.info.num_classes == 10
    assert "golden retriever" in splits.info.class_names and "Samoyed" in splits.info.class_names
    full = data.describe(DataConfig(source=f"folder:{dogs10}"))
    assert full.num_train + full.num_test == 1100
    rows = _materialise(splits.train)
    assert len(rows) == 20 and rows[0][0].shape == (64, 64, 3)


def test_stanford_dogs_names_ship_in_tfds_order():
    names = data.stanford_dogs_class_names()
    assert len(names) == 120
    assert names[0] == "Chihuahua" and names[1] == "Japanese spaniel"
    assert data.format_class_name("n02085620-Chihuahua") == "Chihuahua"


def test_tfds_source_through_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        splits = data.load_splits(DataConfig(source="tfds:stanford_dogs", max_train_images=4), image_size=40)
        rows = _materialise(splits.train)
    assert len(rows) == 4
    assert rows[0][0].shape == (40, 40, 3) and rows[0][0].dtype == np.float32
    assert splits.info.num_classes == 120 and splits.info.class_names[0] == "Chihuahua"


def test_tfds_offline_fails_fast_with_a_way_out():
    start = time.monotonic()
    with pytest.raises(DataUnavailable) as error:
        data.load_splits(DataConfig(source="tfds:stanford_dogs"), image_size=32)
    assert time.monotonic() - start < 15
    message = str(error.value)
    assert "not downloaded" in message and "folder:" in message and "demo" in message


def test_unknown_tfds_name_is_a_clear_error():
    with pytest.raises(DataUnavailable, match="no dataset called"):
        data.describe(DataConfig(source="tfds:no_such_dataset_xyz"))


def _offline(monkeypatch) -> None:
    """No connection, whatever this machine has: nothing can start a real download."""

    def refuse(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(tfds_source.socket, "create_connection", refuse)


def test_the_suggested_download_command_is_real_and_fails_fast_offline(monkeypatch, capsys):
    with pytest.raises(DataUnavailable) as not_prepared:
        data.describe(DataConfig(source="tfds:stanford_dogs"))
    command = re.search(r"`python -m core\.data ([^`]+)`", str(not_prepared.value)).group(1).split()
    assert command == ["--download", "stanford_dogs"]
    _offline(monkeypatch)
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        cli.main(command)
    assert exit_.value.code == 2 and time.monotonic() - start < 15
    out, err = capsys.readouterr()
    assert "[0/3] Checking the connection for stanford_dogs" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m core.data: error: Cannot reach")
    assert "offline" in lines[0]


def test_download_command_reports_progress_and_where_the_data_is(monkeypatch, capsys, tmp_path):
    def download(name, progress=None):
        progress(0, 3, f"Checking the connection for {name}")
        progress(3, 3, f"{name} is ready")
        return tmp_path / name

    monkeypatch.setattr(cli, "download_tfds", download)
    assert cli.main(["--download", "cifar10"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "[0/3] Checking the connection for cifar10",
        "[3/3] cifar10 is ready",
        f"Ready in {tmp_path / 'cifar10'}",
    ]


def test_download_command_for_an_unknown_dataset_exits_2_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "core.data", "--download", "no_such_dataset_xyz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [
        "python -m core.data: error: TFDS has no dataset called 'no_such_dataset_xyz'. Try "
        "'stanford_dogs', 'cifar10' or 'food101'."
    ]


# ---------------------------------------------------------------------------------------------- what a folder must hold


def _class_folder(root, name, good=0, fake=0):
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(good):
        _write(root / name / f"{i}.png", (40 * (i % 6), 90, 10), fmt="PNG")
    for i in range(fake):
        (root / name / f"fake{i}.jpg").write_text("a text file named like a photo")


def test_a_class_with_no_readable_image_is_refused_by_name(tmp_path):
    _class_folder(tmp_path, "beagle", good=20)
    _class_folder(tmp_path, "samoyed", fake=3)
    with pytest.raises(DataUnavailable) as refused:
        data.describe(DataConfig(source=f"folder:{tmp_path}"))
    message = str(refused.value)
    assert "'samoyed' has no readable image" in message and "beagle" not in message
    assert "3 file(s) could not be read" in message and "\n" not in message


def test_one_image_per_class_is_refused_on_the_notebook_and_the_cached_path_alike(tmp_path):
    for name in ("cat", "dog"):
        _class_folder(tmp_path, name, good=1)
    config = DataConfig(source=f"folder:{tmp_path}")
    with pytest.raises(DataUnavailable, match="at least 2 readable images") as refused:
        data.describe(config)
    assert "'cat' has 1" in str(refused.value) and "'dog' has 1" in str(refused.value)

    from core import runs
    from core.config import AUGMENT_PRESETS, ModelConfig, TrainConfig
    from core.training import engine

    errors = []
    for cached in (False, True):
        run = RunConfig(
            data=config,
            augment=AUGMENT_PRESETS["none"],
            model=ModelConfig(regime="frozen", weights="none", image_size=32),
            train=TrainConfig(epochs=1, batch_size=2, feature_cache=cached),
        )
        run_id = runs.create_run(run, runs.FOREGROUND)
        assert runs.claim_foreground(run_id)
        engine.execute(run_id)
        record = runs.get_run(run_id)
        assert record.status == runs.FAILED, (cached, record.status)
        errors.append(record.error)
    assert errors[0] == errors[1] and "at least 2 readable images" in errors[0]


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.9])
def test_two_images_per_class_give_one_to_train_and_one_to_test(tmp_path, fraction):
    for name in ("cat", "dog", "owl"):
        _class_folder(tmp_path, name, good=2)
    info = data.describe(DataConfig(source=f"folder:{tmp_path}", test_fraction=fraction))
    assert (info.train_counts, info.test_counts) == ([1, 1, 1], [1, 1, 1])


def test_train_and_test_subfolders_need_every_class_in_both(tmp_path):
    for split, names in (("train", ("cat", "dog", "owl")), ("test", ("cat", "dog"))):
        for name in names:
            _class_folder(tmp_path / split, name, good=2)
    with pytest.raises(DataUnavailable, match="'owl' has 2 .* none in test"):
        data.describe(DataConfig(source=f"folder:{tmp_path}"))


def test_a_file_given_as_the_folder_is_called_a_file(tmp_path):
    photo = tmp_path / "dog.jpg"
    _write(photo, (10, 20, 30))
    with pytest.raises(DataUnavailable, match="dog.jpg is a file, not a folder") as refused:
        data.describe(DataConfig(source=f"folder:{photo}"))
    assert "does not exist" not in str(refused.value)


def test_unbalanced_and_empty_classes_are_warned_about(tmp_path):
    _class_folder(tmp_path, "beagle", good=30)
    _class_folder(tmp_path, "pug", good=3)
    _class_folder(tmp_path, "samoyed", good=10)
    info = data.describe(DataConfig(source=f"folder:{tmp_path}"))
    assert any("unbalanced" in w and "beagle" in w and "pug" in w for w in info.warnings), info.warnings
    subset = data.describe(DataConfig(source=f"folder:{tmp_path}", max_train_images=2, max_test_images=1))
    empty = [w for w in subset.warnings if "no training images" in w or "no test images" in w]
    assert len(empty) == 2 and "1 of 3 classes" in empty[0] and "2 of 3 classes" in empty[1], subset.warnings


def test_balanced_classes_get_no_warning(photo_folder):
    (photo_folder / "red_fox" / "broken.jpg").unlink()
    assert data.describe(DataConfig(source=f"folder:{photo_folder}")).warnings == []


# ---------------------------------------------------------------------------------------------- before a run


def test_checking_a_folder_decodes_one_image_per_class_and_split(tmp_path, monkeypatch):
    for name in ("cat", "dog"):
        _class_folder(tmp_path, name, good=30)
    for i in range(24):  # 24 of the 30 cats: the header reads, the data ends early
        path = tmp_path / "cat" / f"{i}.png"
        path.write_bytes(path.read_bytes()[:60])
    decoded = []
    real = folders.read_image_file
    monkeypatch.setattr(folders, "read_image_file", lambda path, *a: decoded.append(path) or real(path, *a))
    warnings = data.check_source(DataConfig(source=f"folder:{tmp_path}", seed=1))
    damaged = len(decoded) - 4  # one good image per class in each split; every other decode failed
    assert 1 <= damaged < 24, decoded
    assert warnings == [
        f"{damaged} more file(s) have a readable header but damaged data and will be skipped "
        "(found while checking a few per class; there may be more)."
    ]


def test_checking_never_draws_the_demo_set_and_knows_tfds_is_not_prepared(transfer_lab_home):
    assert data.check_source(DataConfig(source="demo")) == []
    assert not (transfer_lab_home / "datasets").exists() or not any((transfer_lab_home / "datasets").iterdir())
    with pytest.raises(DataUnavailable, match="not downloaded"):
        data.check_source(DataConfig(source="tfds:stanford_dogs"))

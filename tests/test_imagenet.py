"""ImageNet class names, the no-training dog-breed classifier and the evaluation preprocessing."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import imagenet
from core.errors import ConfigError, ImageUnreadable

DOGS10_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "dogs10" / "test"


@pytest.fixture(scope="session")
def imagenet_home(tmp_path_factory) -> Path:
    """A data directory where the ImageNet weights are converted once for the whole session."""
    from core.backbones import lite0

    home = tmp_path_factory.mktemp("imagenet-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        lite0.converted_weights(lite0.imagenet_source_file())
    return home


@pytest.fixture(scope="session")
def dog_classifier(imagenet_home):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(imagenet_home))
        return imagenet.dog_breed_classifier()


def _jpeg(image: Image.Image, **save_options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **save_options)
    buffer.seek(0)
    return Image.open(buffer)


# ------------------------------------------------------------------------------------------- names


def test_imagenet_names_and_wnids_are_the_1000_classes_in_order():
    names, wnids = imagenet.imagenet_class_names(), imagenet.imagenet_wnids()
    assert len(names) == len(set(names)) == 1000
    assert len(wnids) == len(set(wnids)) == 1000
    assert (names[0], names[151], names[281], names[967], names[985]) == (
        "tench",
        "Chihuahua",
        "tabby",
        "espresso",
        "daisy",
    )
    assert {names[134], names[517]} == {"crane (bird)", "crane (machine)"}
    assert (wnids[0], wnids[999]) == ("n01440764", "n15075141")
    assert list(wnids) == sorted(wnids)


def test_wnids_match_the_tensorflow_datasets_label_list():
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None:
        pytest.skip("tensorflow-datasets is not installed")
    labels = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "imagenet2012" / "labels.txt"
    assert tuple(labels.read_text().split()) == imagenet.imagenet_wnids()


def test_dog_breeds_map_to_their_imagenet_classes():
    indices = imagenet.dog_imagenet_indices()
    assert len(indices) == len(set(indices)) == 120
    assert set(indices) == (set(range(151, 269)) - {251}) | {273, 274, 275}
    names = imagenet.imagenet_class_names()
    for breed, index in zip(imagenet.dog_breed_names(), indices):
        assert breed.lower() == names[index].lower()


def test_breed_names_are_written_for_people():
    assert imagenet.breed_name("n02085620-Chihuahua") == "Chihuahua"
    assert imagenet.breed_name("n02085936-Maltese_dog") == "Maltese dog"
    assert imagenet.breed_name("n02086240-Shih-Tzu") == "Shih-Tzu"
    breeds = imagenet.dog_breed_names()
    assert breeds[0] == "Chihuahua" and len(breeds) == 120
    assert not any("_" in breed or breed.startswith("n0") for breed in breeds)


def test_top_predictions_lists_the_most_probable_classes_first():
    probabilities = np.array([0.1, 0.6, 0.05, 0.25])
    assert imagenet.top_predictions(probabilities, ["a", "b", "c", "d"], k=2) == [("b", 0.6), ("d", 0.25)]
    with pytest.raises(ConfigError, match="4 outputs"):
        imagenet.top_predictions(probabilities, ["a", "b"])


# ------------------------------------------------------------------------------------------- preprocessing


def test_eval_array_takes_the_central_875_percent_and_resizes_bicubically():
    x, y = np.meshgrid(np.arange(256), np.arange(160))
    gradient = np.stack([x, y, np.full_like(x, 99)], axis=-1).astype(np.uint8)  # R = column, G = row
    array = imagenet.imagenet_eval_array(Image.fromarray(gradient))
    assert array.shape == (224, 224, 3) and array.dtype == np.float32
    side = 0.875 * 160  # 140 px square: columns 58..198, rows 10..150
    assert array[:, 0, 0].mean() == pytest.approx(58 + side / 224 / 2, abs=1.0)
    assert array[:, -1, 0].mean() == pytest.approx(198 - side / 224 / 2, abs=1.0)
    assert array[0, :, 1].mean() == pytest.approx(10 + side / 224 / 2, abs=1.0)
    assert array[-1, :, 1].mean() == pytest.approx(150 - side / 224 / 2, abs=1.0)
    np.testing.assert_allclose(array[..., 2], 99, atol=1)


def test_eval_array_applies_exif_orientation_and_makes_rgb():
    wide = np.zeros((120, 200, 3), np.uint8)
    wide[:, :100] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rotated = imagenet.imagenet_eval_array(_jpeg(Image.fromarray(wide), exif=exif))
    upright = imagenet.imagenet_eval_array(_jpeg(Image.fromarray(wide)))
    assert upright[:, :50].mean() > 200 and upright[:, -50:].mean() < 50
    assert rotated[:50].mean() > 200 and rotated[-50:].mean() < 50  # shown upright: white on top

    gray = imagenet.imagenet_eval_array(Image.fromarray(np.full((64, 64), 128, np.uint8)))
    assert gray.shape == (224, 224, 3)
    np.testing.assert_allclose(gray, 128, atol=1)
    rgba = Image.fromarray(np.full((50, 50, 4), 200, np.uint8), mode="RGBA")
    assert imagenet.imagenet_eval_array(rgba, size=32).shape == (32, 32, 3)


def test_eval_array_explains_a_truncated_photo():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(
        buffer, format="JPEG"
    )
    data = buffer.getvalue()
    broken = Image.open(io.BytesIO(data[: len(data) // 2]))  # the header survives, the pixels do not
    with pytest.raises(ImageUnreadable, match="could not be decoded"):
        imagenet.imagenet_eval_array(broken)


# ------------------------------------------------------------------------------------------- dog classifier


def test_dog_classifier_is_the_imagenet_softmax_renormalised_over_the_dogs(imagenet_home, monkeypatch, dog_classifier):
    from core.backbones.lite0 import efficientnet_lite0

    monkeypatch.setenv("TRANSFER_LAB_HOME", str(imagenet_home))
    logits_model = efficientnet_lite0(classifier_activation=None)
    images = np.random.default_rng(3).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    dogs = dog_classifier.predict(images, verbose=0)
    logits = logits_model.predict(images, verbose=0)[:, list(imagenet.dog_imagenet_indices())]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert dogs.shape == (2, 120)
    np.testing.assert_allclose(dogs, expected, atol=1e-5)
    np.testing.assert_allclose(dogs.sum(axis=1), 1.0, atol=1e-5)


def test_dog_classifier_names_real_dog_breeds(dog_classifier):
    if not DOGS10_TEST.is_dir():
        pytest.skip(f"the shared dogs10 photos are not on this machine ({DOGS10_TEST})")
    photos, truth = [], []
    for folder in sorted(DOGS10_TEST.iterdir()):
        for path in sorted(folder.glob("*"))[:2]:
            with Image.open(path) as image:
                photos.append(imagenet.imagenet_eval_array(image))
            truth.append(imagenet.breed_name(folder.name))
    predicted = dog_classifier.predict(np.stack(photos), verbose=0).argmax(axis=1)
    names = imagenet.dog_breed_names()
    correct = sum(names[p] == t for p, t in zip(predicted, truth))
    assert len(truth) == 20
    assert correct >= 14, list(zip(truth, (names[p] for p in predicted)))

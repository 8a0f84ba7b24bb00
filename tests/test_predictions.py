"""Predictions of real models over a test split: as model.predict gives them, cached, and their failures."""

import os

import numpy as np
import pytest

import core.predictions
from core.config import DataConfig
from core.errors import DataUnavailable, RunError
from core.predictions import cache_path_for, load_cached_predictions, predict_split, test_images

SIZE = 32
CONFIG = DataConfig(source="demo", max_test_images=27)


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def save_tiny_model(keras, path, num_classes, activation="softmax", seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes, activation=activation),
        ]
    )
    model.save(path)
    return model


KERAS_PREDICT_NOISE = "ignore:Your input ran out of data"  # model.predict's own warning on a finite dataset


@pytest.mark.filterwarnings(KERAS_PREDICT_NOISE)
def test_predict_split_matches_model_predict_and_reports_progress(demo_home, tmp_path, keras):
    from core.data import load_splits

    splits = load_splits(CONFIG, SIZE)
    model = save_tiny_model(keras, tmp_path / "model.keras", splits.info.num_classes)
    calls = []
    predictions = predict_split(
        tmp_path / "model.keras", CONFIG, SIZE, None, progress=lambda *a: calls.append(a), batch_size=8
    )
    expected = model.predict(splits.test.batch(8), verbose=0)
    labels = np.concatenate([y for _, y in splits.test.batch(8).as_numpy_iterator()])
    assert predictions.probabilities.shape == (27, splits.info.num_classes)
    assert predictions.probabilities.dtype == np.float32
    assert np.allclose(predictions.probabilities, expected, atol=1e-5)
    assert (predictions.labels == labels).all() and (predictions.indices == np.arange(27)).all()
    assert predictions.class_names == splits.info.class_names
    done = [c[0] for c in calls if c[1] == 27]
    assert done[-1] == 27 and done == sorted(done) and 8 in done


@pytest.mark.filterwarnings(KERAS_PREDICT_NOISE)
def test_logits_are_turned_into_probabilities(demo_home, tmp_path, keras):
    from core.data import load_splits

    splits = load_splits(CONFIG, SIZE)
    model = save_tiny_model(keras, tmp_path / "logits.keras", splits.info.num_classes, activation=None)
    predictions = predict_split(tmp_path / "logits.keras", CONFIG, SIZE, None)
    logits = model.predict(splits.test.batch(64), verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(predictions.probabilities, expected, atol=1e-5)


def test_cached_predictions_are_reused_and_invalidated(demo_home, tmp_path, keras, monkeypatch):
    from core.data import describe

    model_path = tmp_path / "model_best.keras"
    save_tiny_model(keras, model_path, describe(CONFIG).num_classes)
    cache = cache_path_for(model_path)
    assert cache == tmp_path / "model_best.predictions.npz"
    loads = []
    real_loader = core.predictions.load_saved_model

    def counting_loader(path, compile=True):
        loads.append(path)
        return real_loader(path, compile=compile)

    monkeypatch.setattr(core.predictions, "load_saved_model", counting_loader)
    first = predict_split(model_path, CONFIG, SIZE, cache)
    assert len(loads) == 1 and cache.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    def no_loading(path, compile=True):
        raise AssertionError("the model was loaded although the cache is valid")

    monkeypatch.setattr(core.predictions, "load_saved_model", no_loading)
    again = predict_split(model_path, CONFIG, SIZE, cache)
    assert np.array_equal(again.probabilities, first.probabilities)
    assert np.array_equal(again.labels, first.labels) and again.class_names == first.class_names
    assert load_cached_predictions(cache, model_path, CONFIG, SIZE) is not None

    monkeypatch.setattr(core.predictions, "load_saved_model", counting_loader)
    smaller = CONFIG.replace(max_test_images=20)
    assert load_cached_predictions(cache, model_path, smaller, SIZE) is None
    assert predict_split(model_path, smaller, SIZE, cache).num_examples == 20
    assert len(loads) == 2

    predict_split(model_path, CONFIG, SIZE, cache)
    assert len(loads) == 3
    stat = model_path.stat()
    os.utime(model_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touch
    predict_split(model_path, CONFIG, SIZE, cache)
    assert len(loads) == 4

    save_tiny_model(keras, model_path, describe(CONFIG).num_classes, seed=1)  # retrained
    retrained = predict_split(model_path, CONFIG, SIZE, cache)
    assert len(loads) == 5
    assert not np.allclose(retrained.probabilities, first.probabilities)

    cache.write_bytes(b"not a zip file")
    predict_split(model_path, CONFIG, SIZE, cache)
    assert len(loads) == 6


def test_model_problems_are_reported_as_run_errors(demo_home, tmp_path, keras):
    with pytest.raises(RunError, match="does not exist"):
        predict_split(tmp_path / "missing.keras", CONFIG, SIZE, None)
    save_tiny_model(keras, tmp_path / "three.keras", 3)
    with pytest.raises(RunError, match="3 classes"):
        predict_split(tmp_path / "three.keras", CONFIG, SIZE, None)
    (tmp_path / "broken.keras").write_bytes(b"garbage")
    with pytest.raises(RunError, match="could not be loaded"):
        predict_split(tmp_path / "broken.keras", CONFIG, SIZE, None)


def test_test_images_returns_the_split_images_asked_for(demo_home):
    from core.data import load_splits

    everything = [image for image, _ in load_splits(CONFIG, SIZE).test.as_numpy_iterator()]
    images = test_images(CONFIG, SIZE, [5, 0, 5, 26])
    assert len(images) == 4
    assert all(image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3) for image in images)
    for image, position in zip(images, [5, 0, 5, 26]):
        assert np.array_equal(image, everything[position].astype(np.uint8))
    assert not np.array_equal(images[0], images[1])
    assert test_images(CONFIG, SIZE, []) == []
    with pytest.raises(DataUnavailable, match="position"):
        test_images(CONFIG, SIZE, [3, 27])

"""Cached backbone features: the arrays equal a fresh forward pass, the cache key follows exactly what
decides the numbers, damaged entries are rebuilt, and a cached frozen run lands in the store with a saved
model that behaves like backbone + head. Lite0 with random weights at 32 px on a few dozen demo images."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from core import data, demo, feature_cache, runs
from core.catalog import LITE0
from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
engine = pytest.importorskip("core.training.engine")
cached_features = pytest.importorskip("core.training.cached_features")

TINY_DATA = DataConfig(source="demo", max_train_images=27, max_test_images=9)


def tiny_config(*, augment: str = "none", epochs: int = 2, views: int = 2, **train) -> RunConfig:
    return RunConfig(
        data=TINY_DATA,
        augment=AUGMENT_PRESETS[augment],
        model=ModelConfig(backbone=LITE0, regime="frozen", weights="none", image_size=32),
        train=TrainConfig(epochs=epochs, batch_size=4, learning_rate=1e-2, cached_views=views, **train),
    )


@pytest.fixture(autouse=True)
def demo_32_in_every_home(demo_32_linked):
    """Every test here trains on the 32 px demo set, drawn once per session."""


@pytest.fixture(scope="module")
def frozen_model():
    keras.utils.set_random_seed(0)
    from core.models import build_frozen

    return build_frozen(tiny_config().model, len(demo.CLASS_NAMES))


def splits_for(config: RunConfig):
    from core.data import load_splits

    return load_splits(config.data, 32)


def images_and_labels(dataset) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(dataset.as_numpy_iterator())
    return np.stack([image for image, _ in pairs]), np.array([label for _, label in pairs])


def assert_same_features(actual: np.ndarray, expected: np.ndarray, tolerance: float = 1e-4) -> None:
    """Equal up to float noise, relative to the features' scale (random weights give tiny features)."""
    scale = float(np.abs(expected).max())
    assert scale > 0 and np.count_nonzero(expected) > expected.size // 10
    np.testing.assert_allclose(np.asarray(actual) / scale, np.asarray(expected) / scale, rtol=0, atol=tolerance)


def different_features(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).max()) > 0.01 * float(np.abs(b).max())


def counting():
    calls = []
    return calls, lambda done, total, message: calls.append((done, total, message))


# ---------------------------------------------------------------------------------------------- the arrays


def test_cached_features_equal_a_fresh_forward_pass_and_are_read_back_without_extracting(frozen_model):
    config = tiny_config()
    splits = splits_for(config)
    calls, progress = counting()
    cached = feature_cache.prepare_features(config, frozen_model, splits, progress=progress)
    assert calls and calls[-1][0] == calls[-1][1]  # extraction reported its batches to the end
    extractor = feature_cache.feature_extractor(frozen_model)
    for split, entry in (("train", cached.train_views[0]), ("test", cached.test)):
        images, labels = images_and_labels(getattr(splits, split))
        np.testing.assert_array_equal(entry.labels, labels)
        assert_same_features(entry.features, extractor(images, training=False).numpy())
    assert len(cached.train_views) == 1  # no augmentation: one view

    calls_again, progress_again = counting()
    again = feature_cache.prepare_features(config, frozen_model, splits, progress=progress_again)
    assert calls_again == []  # everything came from the cache
    np.testing.assert_array_equal(again.test.features, cached.test.features)
    assert feature_cache.cache_size_bytes() > cached.test.features.nbytes


def test_a_gpus_larger_extraction_batch_gives_the_same_features_in_fewer_passes(frozen_model, monkeypatch):
    """On a GPU the machine's extraction batch (256 on an H200) is used: 40 + 9 images in one padded pass per
    split instead of 2 + 1 of 32, and the same numbers, so the key rightly ignores the batch."""
    from core.machine_defaults import defaults_for
    from core.system import GpuDetails

    config = tiny_config().replace(data=TINY_DATA.replace(max_train_images=40))
    cpu_calls, cpu_progress = counting()
    on_cpu = feature_cache.prepare_features(config, frozen_model, splits_for(config), progress=cpu_progress)
    assert {total for _, total, _ in cpu_calls} == {3}
    feature_cache.clear_cache()
    monkeypatch.setattr(feature_cache, "this_machine", lambda: defaults_for([GpuDetails("NVIDIA H200", 143771, 9.0)]))
    assert feature_cache.extraction_batch() == 256
    gpu_calls, gpu_progress = counting()
    on_gpu = feature_cache.prepare_features(config, frozen_model, splits_for(config), progress=gpu_progress)
    assert {total for _, total, _ in gpu_calls} == {2}
    assert len(on_gpu.labels) == 40
    assert_same_features(on_gpu.train_views[0].features, on_cpu.train_views[0].features)
    assert_same_features(on_gpu.test.features, on_cpu.test.features)


def test_augmented_views_differ_from_each_other_and_are_the_same_every_time_they_are_drawn(frozen_model):
    config = tiny_config(augment="notebook", views=2)
    cached = feature_cache.prepare_features(config, frozen_model, splits_for(config))
    views = [np.array(view.features) for view in cached.train_views]
    assert len(views) == 2 and different_features(views[0], views[1])
    feature_cache.clear_cache()
    redrawn = feature_cache.prepare_features(config, frozen_model, splits_for(config))
    for old, new in zip(views, redrawn.train_views):
        assert_same_features(new.features, old)


# ---------------------------------------------------------------------------------------------- keys


def test_the_key_follows_every_input_of_the_features_and_no_training_setting(frozen_model):
    base = feature_cache.FeatureSource(
        data=TINY_DATA,
        split="train",
        backbone=LITE0,
        weights="imagenet@abc",
        image_size=32,
        augment=AUGMENT_PRESETS["notebook"],
        view=0,
    )
    changed = {
        "data": TINY_DATA.replace(max_train_images=28),
        "split": "test",
        "backbone": "EfficientNetB0",
        "weights": "none@def",
        "image_size": 64,
        "augment": AUGMENT_PRESETS["strong"],
        "view": 1,
        "data_fingerprint": "other files",
        "compute_dtype": "float16",
    }
    keys = {base.key} | {dataclasses.replace(base, **{name: value}).key for name, value in changed.items()}
    assert len(keys) == 1 + len(changed)
    assert dataclasses.replace(base, data=TINY_DATA.replace(max_test_images=10)).key == base.key  # the other split's
    assert dataclasses.replace(base, augment=AUGMENT_PRESETS["notebook"].replace(seed=1)).key != base.key
    unaugmented = dataclasses.replace(base, augment=None)
    assert dataclasses.replace(base, augment=AUGMENT_PRESETS["none"], view=3).key == unaugmented.key

    config = tiny_config(augment="notebook")
    train_keys, test_key = feature_cache.feature_sources(config, frozen_model)
    for train in (dict(learning_rate=1e-4), dict(weight_decay=0.1), dict(epochs=9), dict(batch_size=32)):
        other_train, other_test = feature_cache.feature_sources(
            config.replace(train=config.train.replace(**train)), frozen_model
        )
        assert [s.key for s in other_train] == [s.key for s in train_keys] and other_test.key == test_key.key
    one_epoch, _ = feature_cache.feature_sources(config.replace(train=config.train.replace(epochs=1)), frozen_model)
    assert [s.key for s in one_epoch] == [train_keys[0].key]  # a 1-epoch run needs view 0 only


def test_other_weights_and_changed_photos_change_the_key(frozen_model, tmp_path):
    from core.models import build_frozen

    keras.utils.set_random_seed(1)
    other = build_frozen(tiny_config().model, len(demo.CLASS_NAMES))
    assert feature_cache.weights_identity(other, "none") != feature_cache.weights_identity(frozen_model, "none")

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.png").write_bytes(b"not really a png")
    folder = DataConfig(source=f"folder:{tmp_path}")
    before = data.data_fingerprint(folder)
    (tmp_path / "a" / "1.png").write_bytes(b"another picture")
    assert data.data_fingerprint(folder) != before


# ---------------------------------------------------------------------------------------------- damage


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "no metadata"])
def test_a_damaged_entry_is_detected_and_rebuilt_never_used(frozen_model, damage):
    config = tiny_config()
    splits = splits_for(config)
    good = np.array(feature_cache.prepare_features(config, frozen_model, splits).test.features)
    _, test_source = feature_cache.feature_sources(config, frozen_model)
    array, meta = (
        Path(feature_cache.cache_folder(), f"{test_source.key}.npy"),
        Path(feature_cache.cache_folder(), f"{test_source.key}.json"),
    )
    if damage == "truncate":
        with open(array, "r+b") as handle:
            handle.truncate(array.stat().st_size - 100)
    elif damage == "flip a byte":
        data = bytearray(array.read_bytes())
        data[-5] ^= 0xFF
        array.write_bytes(bytes(data))
    else:
        meta.unlink()
    assert feature_cache.load_entry(test_source.key) is None
    assert not array.exists() and not meta.exists()
    calls, progress = counting()
    rebuilt = feature_cache.prepare_features(config, frozen_model, splits, progress=progress)
    assert any("test images" in message for _, _, message in calls)
    assert_same_features(rebuilt.test.features, good)


def test_clearing_the_cache_frees_its_space(frozen_model):
    config = tiny_config()
    feature_cache.prepare_features(config, frozen_model, splits_for(config))
    size = feature_cache.cache_size_bytes()
    assert size > 0 and feature_cache.clear_cache() == size and feature_cache.cache_size_bytes() == 0


# ---------------------------------------------------------------------------------------------- epochs and views


def test_each_epoch_trains_on_its_view_and_sees_every_image_once():
    count, classes = 10, 3
    labels = np.arange(count) % classes
    views = [
        feature_cache.CachedFeatures(
            f"view {v}", np.stack([np.full(count, v), np.arange(count)], 1).astype(np.float32), labels
        )
        for v in range(3)
    ]
    feature_set = feature_cache.FeatureSet(views, views[0])
    batches = list(
        cached_features.feature_batches(
            feature_set, classes, batch_size=4, seed=0, first_epoch=1, epochs=5, drop_remainder=False
        )
    )
    assert len(batches) == 4 * 3  # epochs 1..4 (resuming after epoch 0), three batches each
    orders = []
    for epoch, start in zip(range(1, 5), range(0, 12, 3)):
        x = np.concatenate([x for x, _ in batches[start : start + 3]])
        y = np.concatenate([y for _, y in batches[start : start + 3]])
        assert set(x[:, 0]) == {epoch % 3}  # epoch e uses view e mod K
        assert sorted(x[:, 1]) == list(range(count))  # every image once
        np.testing.assert_array_equal(np.argmax(y, axis=1), labels[x[:, 1].astype(int)])
        orders.append(list(x[:, 1]))
    assert len({tuple(order) for order in orders}) == 4  # a new order every epoch


def test_views_are_extracted_between_the_first_epochs_and_a_cached_run_is_one_fit():
    def feature_set(cached: list[bool]):
        entry = feature_cache.CachedFeatures("view", np.zeros((2, 1), np.float32), np.arange(2))
        return feature_cache.FeatureSet([entry if there else None for there in cached], entry)

    assert list(cached_features.segments(0, 10, feature_set([True, False, False, False, False]))) == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 10),
    ]
    assert list(cached_features.segments(0, 10, feature_set([True] * 5))) == [(0, 10)]
    assert list(cached_features.segments(3, 10, feature_set([True, True, True, True, False]))) == [(3, 4), (4, 10)]
    assert list(cached_features.segments(0, 4, feature_set([True, False]))) == [(0, 1), (1, 4)]
    assert list(cached_features.segments(2, 2, feature_set([True]))) == []


# ---------------------------------------------------------------------------------------------- the engine


def run_in_this_process(config: RunConfig, callbacks=(), progress=None) -> engine.Outcome:
    run_id = runs.create_run(config, runs.FOREGROUND)
    assert runs.claim_foreground(run_id)
    return engine.execute(run_id, callbacks=callbacks, progress=progress)


class StopRequest(keras.callbacks.Callback):
    """Asks the store to stop the run after batch 2 of epoch 2, and counts the batches that ran in it."""

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id, self.epoch, self.batches_in_epoch = run_id, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batches_in_epoch = epoch + 1, 0

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2:
            self.batches_in_epoch += 1
            if self.batches_in_epoch == 2:
                runs.request_stop(self.run_id)


@pytest.fixture(scope="module")
def stopped_cached_run(tmp_path_factory, shared_demo_home):
    """A cached 3-epoch frozen run with augmentation, asked to stop after batch 2 of epoch 2."""
    home = tmp_path_factory.mktemp("cached-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(shared_demo_home))
        shared = demo.demo_folder(32)
        (home / "datasets").mkdir()
        (home / "datasets" / shared.name).symlink_to(shared, target_is_directory=True)
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        run_id = runs.create_run(tiny_config(augment="notebook", epochs=3), runs.FOREGROUND)
        assert runs.claim_foreground(run_id)
        phases = []
        stopper = StopRequest(run_id)
        outcome = engine.execute(
            run_id, callbacks=[stopper], progress=lambda *_: phases.append(runs.progress(run_id).phase)
        )
        record = runs.get_run(run_id)
    return {"home": home, "record": record, "outcome": outcome, "stopper": stopper, "phases": phases}


def test_a_cached_run_records_its_epochs_and_stops_within_one_batch(stopped_cached_run, monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(stopped_cached_run["home"]))
    record = stopped_cached_run["record"]
    assert stopped_cached_run["outcome"].status == record.status == "stopped"
    assert stopped_cached_run["stopper"].batches_in_epoch <= 2 + 1
    assert cached_features.PHASE in stopped_cached_run["phases"]
    done = runs.epochs(record.id)
    assert [e.epoch for e in done] == [1]
    assert all(value is not None and np.isfinite(value) for value in done[0].metrics().values())
    classes = len(demo.CLASS_NAMES)
    assert record.trainable_params == 2 * 1280 + 1280 * classes + classes and record.total_params > 3_000_000
    assert record.last_model and record.best_model and not list(record.folder.glob("partial-*"))
    assert any(record.tensorboard_dir.rglob("events.out.tfevents.*"))
    assert record.can_resume


def test_a_cached_run_saves_a_model_that_is_backbone_plus_head(stopped_cached_run, monkeypatch):
    from core.predictions import predict_split
    from core.serving.classifiers import cached_model

    monkeypatch.setenv("TRANSFER_LAB_HOME", str(stopped_cached_run["home"]))
    record = stopped_cached_run["record"]
    model = cached_model(record.last_model)  # the Classify page's loader
    assert [layer.name for layer in model.layers[-4:]] == ["avg_pool", "head_bn", "top_dropout", "pred"]
    _, test_source = feature_cache.feature_sources(record.config, model)
    cached = feature_cache.load_entry(test_source.key)  # the saved backbone still finds the run's features
    assert cached is not None
    head_on_features = cached_features.head_model(model).predict(np.asarray(cached.features), verbose=0)
    through_the_model = predict_split(record.last_model, record.config.data, 32, None)  # Evaluate's
    np.testing.assert_array_equal(through_the_model.labels, cached.labels)
    np.testing.assert_allclose(through_the_model.probabilities, head_on_features, rtol=1e-4, atol=1e-5)


def tensorboard_epochs(record) -> list[int]:
    """The epochs (0-based) whose training loss the run's TensorBoard logs hold."""
    steps = []
    for path in sorted((record.tensorboard_dir / "train").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for value in event.summary.value if value.tag == "epoch_loss"]
    return sorted(steps)


def test_a_new_run_extracts_each_view_just_before_its_first_epoch_and_a_second_run_extracts_nothing():
    lines = []
    config = tiny_config(augment="notebook", epochs=3, views=2)
    outcome = run_in_this_process(config, progress=lambda done, total, line: lines.append(line))
    assert outcome.status == "completed", outcome.error
    shown = [line.split(":")[0] if line.startswith("epoch") else line.split(": ")[-1] for line in dict.fromkeys(lines)]
    assert shown == [
        "view 1 of 2 of the 27 training images",
        "the 9 test images",
        "epoch 1/3",
        "view 2 of 2 of the 27 training images",
        "epoch 2/3",
        "epoch 3/3",
    ]
    record = runs.get_run(outcome.run_id)
    assert [e.epoch for e in runs.epochs(record.id)] == [1, 2, 3]
    assert tensorboard_epochs(record) == [0, 1, 2]

    lines.clear()
    again = run_in_this_process(
        dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=1e-3)),
        progress=lambda done, total, line: lines.append(line),
    )
    assert again.status == "completed" and not [line for line in lines if "Extracting" in line]
    assert [e.epoch for e in runs.epochs(again.run_id)] == [1, 2, 3]


def test_a_run_stopped_before_a_view_resumes_extracting_only_that_view(monkeypatch):
    config = tiny_config(augment="notebook", epochs=3, views=2)
    run_id = runs.create_run(config, runs.FOREGROUND)
    assert runs.claim_foreground(run_id)

    class StopAfterTheFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            runs.request_stop(run_id)

    first = engine.execute(run_id, callbacks=[StopAfterTheFirstEpoch()])
    assert first.status == "stopped" and [e.epoch for e in runs.epochs(run_id)] == [1]  # stopped extracting view 2

    monkeypatch.setattr("core.runs.controls.kick_queue", lambda: None)  # resume in this process, not a background one
    runs.resume_run(run_id)
    assert runs.claim_foreground(run_id)
    lines = []
    resumed = engine.execute(run_id, progress=lambda done, total, line: lines.append(line))
    assert resumed.status == "completed", resumed.error
    extracted = {line.split(": ")[-1] for line in lines if "Extracting" in line}
    assert extracted == {"view 2 of 2 of the 27 training images"}  # view 1 and the test split were cached
    record = runs.get_run(run_id)
    assert [e.epoch for e in runs.epochs(run_id)] == [1, 2, 3] and tensorboard_epochs(record) == [0, 1, 2]


def test_a_stop_during_extraction_ends_the_run_and_leaves_no_partial_file():
    run_id = None

    def stop_while_extracting(done, total, message):
        if "Extracting" in message and done >= 1:
            runs.request_stop(run_id)

    config = tiny_config(augment="notebook", epochs=2)
    run_id = runs.create_run(config, runs.FOREGROUND)
    assert runs.claim_foreground(run_id)
    outcome = engine.execute(run_id, progress=stop_while_extracting)
    assert outcome.status == "stopped" and runs.epochs(run_id) == []
    assert not [p for p in feature_cache.cache_folder().iterdir() if ".partial-" in p.name]


# ---------------------------------------------------------------------------------------------- the Home page


def test_home_shows_the_cache_size_and_clears_it():
    from streamlit.testing.v1 import AppTest

    feature_cache.write_entry(
        "example", [(np.ones((3, 8), np.float32), np.arange(3))], capacity=3, dim=8, description={}
    )
    size = feature_cache.cache_size_bytes()
    assert size > 0
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(f"{size / 1e6:,.1f} MB" in m.value for m in at.markdown)
    at.button(key="home_clear_feature_cache").click().run()
    assert not at.exception and feature_cache.cache_size_bytes() == 0
    assert any("0.0 MB" in m.value for m in at.markdown) and at.button(key="home_clear_feature_cache").disabled


# ---------------------------------------------------------------------------------------------- the Train page


def test_the_train_page_launches_frozen_runs_with_or_without_the_cache():
    from streamlit.testing.v1 import AppTest

    busy = runs.create_run(tiny_config(), runs.FOREGROUND)  # this process "trains", so launches only queue
    assert runs.claim_foreground(busy)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.session_state["shared.data_config"] = TINY_DATA
    at.switch_page("app_pages/train.py").run()
    assert at.toggle(key="train_frozen_feature_cache").value is True  # the default for frozen runs
    assert "notebook" in at.toggle(key="train_frozen_feature_cache").help
    at.number_input(key="train_frozen_size").set_value(32)
    at.selectbox(key="train_frozen_weights").set_value("none")
    at.toggle(key="train_frozen_feature_cache").set_value(False)
    at.slider(key="train_frozen_cached_views").set_value(3)
    at.button(key="FormSubmitter:train_frozen_form-Launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    launched = next(r for r in runs.list_runs() if r.id != busy)
    assert launched.status == runs.QUEUED
    assert launched.config.train.feature_cache is False and launched.config.train.cached_views == 3
    runs.request_stop(launched.id)
    runs.finish_run(busy, runs.STOPPED)

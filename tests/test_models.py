"""Backbone and regime tables, model configs, the three regimes' models, and fine-tune unfreezing."""

import re

import numpy as np
import pytest

from core.catalog import BACKBONES, REGIMES, imagenet_weights_available, keras_weights_dir, weights_file_name
from core.config import ModelConfig, RunConfig, TrainConfig
from core.errors import ConfigError, WeightsUnavailable
from core.models import build_model, compile_model, layers_to_unfreeze, parameter_counts, unfreeze_for_finetune

NOTEBOOK_RESOLUTIONS = {
    "EfficientNetB0": 224,
    "EfficientNetB1": 240,
    "EfficientNetB2": 260,
    "EfficientNetB3": 300,
    "EfficientNetB4": 380,
    "EfficientNetB5": 456,
    "EfficientNetB6": 528,
    "EfficientNetB7": 600,
}


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def frozen_model():
    return build_model(ModelConfig(regime="frozen", weights="none", image_size=32), num_classes=5)


# ---------------------------------------------------------------------------------------------- tables


def test_backbone_table_has_the_notebook_resolutions():
    assert {name: row.resolution for name, row in BACKBONES.items() if name in NOTEBOOK_RESOLUTIONS} == (
        NOTEBOOK_RESOLUTIONS
    )


def test_every_backbone_builder_resolves():
    import keras

    assert BACKBONES["EfficientNetB0"].build_function() is keras.applications.EfficientNetB0
    for row in BACKBONES.values():
        assert callable(row.build_function())


def test_weights_file_names_follow_keras_naming():
    assert weights_file_name("EfficientNetB0", include_top=False) == "efficientnetb0_notop.h5"
    assert weights_file_name("EfficientNetB7", include_top=True) == "efficientnetb7.h5"


def test_weights_availability_looks_at_the_keras_cache_without_downloading(keras_home):
    assert keras_weights_dir() == keras_home / "models"
    before = imagenet_weights_available()
    assert not any(before[name] for name in NOTEBOOK_RESOLUTIONS)
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / "efficientnetb0_notop.h5").write_bytes(b"stand-in")
    after = imagenet_weights_available()
    assert after["EfficientNetB0"] and not after["EfficientNetB1"]
    assert not imagenet_weights_available(include_top=True)["EfficientNetB0"]


def test_regime_defaults_are_the_notebooks():
    assert (REGIMES["scratch"].learning_rate, REGIMES["scratch"].weight_decay) == (1e-3, 0.0)
    assert (REGIMES["frozen"].learning_rate, REGIMES["frozen"].weight_decay) == (1e-4, 0.01)
    assert (REGIMES["finetune"].learning_rate, REGIMES["finetune"].weight_decay) == (1e-5, 0.01)


def test_empty_settings_resolve_to_regime_and_backbone_defaults():
    model, train = ModelConfig(backbone="EfficientNetB3", regime="scratch"), TrainConfig()
    run = RunConfig(model=model, train=train)
    assert model.effective_image_size == 300
    assert model.effective_weights == "none"
    assert run.effective_learning_rate == 1e-3
    assert run.effective_weight_decay == 0.0
    assert run.effective_epochs == 30
    explicit = TrainConfig(epochs=2, learning_rate=0.05, weight_decay=0.0)
    assert (run.replace(train=explicit).effective_epochs, run.replace(train=explicit).effective_learning_rate) == (
        2,
        0.05,
    )
    assert RunConfig(train=explicit).effective_weight_decay == 0.0
    assert ModelConfig().effective_weights == "imagenet"
    assert ModelConfig(image_size=64).effective_image_size == 64


# ---------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"regime": "scratch", "weights": "imagenet"}, "random weights"),
        ({"regime": "finetune"}, "Frozen run to fine-tune"),
        ({"regime": "finetune", "parent_run_id": "r1", "weights": "imagenet"}, "leave Starting weights empty"),
        ({"regime": "frozen", "parent_run_id": "r1"}, "Only fine-tuning"),
        ({"image_size": 16}, "between 32 and 1024"),
        ({"image_size": 64.5}, "whole number"),
        ({"backbone": "ResNet50"}, "EfficientNetB0"),
        ({"unfreeze_from_block": 9}, "between 1 and 7"),
        ({"weights": " "}, "Starting weights"),
    ],
)
def test_model_config_explains_what_is_wrong(changes, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**changes)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"batch_size": 0}, "Batch size"),
        ({"epochs": 2.5}, "whole number"),
        ({"learning_rate": 5.0}, "Learning rate"),
        ({"mixed_precision": "fp8"}, "Mixed precision"),
    ],
)
def test_train_config_explains_what_is_wrong(changes, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**changes)


def test_model_and_train_configs_round_trip_through_json():
    model = ModelConfig(regime="finetune", parent_run_id="abc", unfreeze_from_block=6, image_size=64)
    train = TrainConfig(epochs=3, batch_size=16, learning_rate=2e-5, mixed_precision="mixed_bfloat16")
    assert ModelConfig.from_json(model.to_json()) == model
    assert TrainConfig.from_json(train.to_json()) == train


# ---------------------------------------------------------------------------------------------- models


def test_frozen_model_is_flat_with_a_frozen_backbone_and_the_notebook_head(frozen_model):
    import keras

    names = [layer.name for layer in frozen_model.layers]
    assert names[-4:] == ["avg_pool", "head_bn", "top_dropout", "pred"]
    assert "block7a_project_conv" in names and "top_conv" in names
    assert not any(isinstance(layer, keras.Model) for layer in frozen_model.layers)
    backbone = frozen_model.layers[1:-4]
    assert backbone and not any(layer.trainable for layer in backbone)
    assert all(layer.trainable for layer in frozen_model.layers[-4:])
    total, trainable = parameter_counts(frozen_model)
    assert trainable == 2 * 1280 + 1280 * 5 + 5  # head batch norm (gamma, beta) + dense
    assert total > 4_000_000
    assert frozen_model.output_shape == (None, 5)


def test_scratch_model_is_the_whole_network_with_its_own_top():
    model = build_model(ModelConfig(regime="scratch", image_size=32), num_classes=3)
    total, trainable = parameter_counts(model)
    assert model.output_shape == (None, 3)
    assert model.layers[-1].name == "predictions"
    assert trainable > 0.98 * total  # all but batch-norm moving statistics


def test_drop_connect_rate_scales_stochastic_depth():
    def drop_rates(rate):
        model = build_model(ModelConfig(regime="scratch", image_size=32, drop_connect_rate=rate), num_classes=2)
        return np.array([layer.rate for layer in model.layers if layer.name.endswith("_drop")])

    default, doubled = drop_rates(0.2), drop_rates(0.4)
    assert default.max() > 0
    np.testing.assert_allclose(doubled, 2 * default)


def test_fine_tune_unfreezes_the_top_layers_but_never_batch_norm(frozen_model):
    import keras

    top = frozen_model.layers[-20:]
    expected = [layer.name for layer in top if not isinstance(layer, keras.layers.BatchNormalization)]
    assert len(expected) < 20  # the top 20 do include batch-norm layers
    chosen = [layer.name for layer in layers_to_unfreeze(frozen_model, 20)]
    assert chosen == expected


def test_fine_tune_from_a_block_unfreezes_whole_blocks():
    import keras

    model = build_model(ModelConfig(regime="frozen", weights="none", image_size=32), num_classes=4)
    _, before = parameter_counts(model)
    unfrozen = unfreeze_for_finetune(model, top_layers=20, from_block=7)
    trainable = {layer.name for layer in model.layers if layer.trainable}
    assert "block7a_expand_conv" in unfrozen and "top_conv" in unfrozen
    assert not any(name.startswith("block6") for name in trainable)
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        for layer in model.layers
        if layer.name != "head_bn"
    )
    assert parameter_counts(model)[1] > before
    with pytest.raises(ConfigError, match="no block 9"):
        layers_to_unfreeze(model, 20, from_block=9)


def test_compiled_model_uses_adam_with_the_given_rate_and_decay(frozen_model):
    compile_model(frozen_model, 1e-4, 0.01)
    optimizer = frozen_model.optimizer
    assert type(optimizer).__name__ == "Adam"
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(1e-4) and optimizer.weight_decay == 0.01
    assert optimizer.built  # its slots exist before the first step, so that step is traced once


def test_missing_imagenet_weights_fail_fast_naming_the_file_and_folder(keras_home, monkeypatch):
    # Make sure nothing can be fetched, even on a machine with internet.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    with pytest.raises(WeightsUnavailable) as caught:
        build_model(ModelConfig(regime="frozen", weights="imagenet", image_size=32), num_classes=2)
    assert "efficientnetb0_notop.h5" in str(caught.value)
    assert str(keras_home / "models") in str(caught.value)


def test_a_missing_weights_file_is_reported(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build_model(ModelConfig(regime="frozen", weights=str(tmp_path / "nope.h5"), image_size=32), num_classes=2)


def test_weights_files_are_checked_by_kind_before_a_run(tmp_path, transfer_lab_home):
    import keras

    from core.backbones.lite0 import imagenet_source_file
    from core.models import LITE0, check_weights_file

    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    tiny.save_weights(tmp_path / "mine.weights.h5")
    tiny.save(tmp_path / "mine.keras")
    for name in ("mine.weights.h5", "mine.keras"):
        check_weights_file(tmp_path / name, "EfficientNetB0")  # the right kind; whether it fits shows at build
    check_weights_file(imagenet_source_file(), LITE0)
    with pytest.raises(WeightsUnavailable, match=f"only {re.escape(LITE0)} reads"):
        check_weights_file(imagenet_source_file(), "EfficientNetB0")
    (tmp_path / "zip.keras").write_bytes(b"PK not really")
    with pytest.raises(WeightsUnavailable, match="not a .keras archive"):
        check_weights_file(tmp_path / "zip.keras", "EfficientNetB0")
    with pytest.raises(WeightsUnavailable, match="is not a file"):
        check_weights_file(tmp_path, "EfficientNetB0")

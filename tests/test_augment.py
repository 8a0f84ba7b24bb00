"""Augmentation: config validation, presets, the Keras augmenter in tf.data and in models, previews."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.augment import augment_batch, build_augmenter, preview, preview_each_transform
from core.catalog import DEFAULT_AUGMENT_PRESET, TEACHING_NOTES, TRANSFORMS
from core.config import AUGMENT_PRESETS, AugmentConfig
from core.errors import ConfigError, ImageUnreadable

REPO = Path(__file__).resolve().parents[1]
ALL_OFF = {row.switch: False for row in TRANSFORMS}
STRONGEST = AugmentConfig(
    rotation=0.5,
    translation_height=0.5,
    translation_width=0.5,
    zoom_on=True,
    zoom=0.9,
    contrast=1.0,
    channel_shift_on=True,
    channel_shift=100.0,
    downsample_on=True,
    downsample_factor=8.0,
    noise_on=True,
    noise_std=100.0,
)


def only(key: str, **strengths: object) -> AugmentConfig:
    """A config with one transformation switched on, at the strong preset's strength unless given."""
    row = next(r for r in TRANSFORMS if r.key == key)
    values = {f: getattr(AUGMENT_PRESETS["strong"], f) for f in row.strengths + row.options}
    return dataclasses.replace(AUGMENT_PRESETS["strong"], **{**ALL_OFF, row.switch: True, **values, **strengths})


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Eight different asymmetric 40x48 pictures: a gradient, a bright square off-centre, and texture."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:40, 0:48]
    base = np.stack([rows * 5, cols * 4, (rows + cols) * 2], axis=-1).astype(np.float32)
    base[5:15, 8:20] = 240
    batch = base[None] + rng.normal(0, 20, (8, 40, 48, 3))
    return np.clip(batch, 0, 255).astype(np.uint8)


def run(cfg: AugmentConfig, batch: np.ndarray) -> np.ndarray:
    return np.asarray(augment_batch(build_augmenter(cfg), batch))


# --- the config, without TensorFlow ---------------------------------------------------------------


def test_config_module_imports_without_tensorflow() -> None:
    code = (
        "import sys, core.augment as a; a.AugmentConfig().summary(); a.preview; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_default_config_is_the_notebook_preset() -> None:
    assert DEFAULT_AUGMENT_PRESET == "notebook"
    assert AugmentConfig() == AUGMENT_PRESETS["notebook"]
    assert AugmentConfig().enabled_transforms() == ["Rotation", "Translation", "Flip", "Contrast"]
    assert AugmentConfig().summary() == "notebook preset: rotation 0.15, translation 0.1/0.1, flip both, contrast 0.1"


def test_every_preset_is_recognised_and_described() -> None:
    for name, cfg in AUGMENT_PRESETS.items():
        assert cfg.matching_preset() == name
        assert cfg.summary().startswith(f"{name} preset: ")
    assert AUGMENT_PRESETS["none"].summary() == "none preset: no augmentation"
    assert AUGMENT_PRESETS["none"].enabled_transforms() == []


def test_preset_match_ignores_seed_and_sliders_of_switched_off_transforms() -> None:
    assert AUGMENT_PRESETS["notebook"].replace(seed=99, zoom=0.7, noise_std=50.0).matching_preset() == "notebook"
    assert AUGMENT_PRESETS["notebook"].replace(rotation_on=False, rotation=0.0).matching_preset() is None
    assert AUGMENT_PRESETS["none"].replace(rotation_on=True, rotation=0.0).matching_preset() == "none"
    custom = AUGMENT_PRESETS["notebook"].replace(rotation=0.2)
    assert custom.matching_preset() is None
    assert custom.summary() == "custom: rotation 0.2, translation 0.1/0.1, flip both, contrast 0.1"


@pytest.mark.parametrize(
    "field, value",
    [
        ("rotation", 0.6),
        ("rotation", -0.1),
        ("rotation", math.nan),
        ("rotation", "a lot"),
        ("translation_height", 0.51),
        ("translation_width", -1.0),
        ("zoom", 0.95),
        ("contrast", 1.5),
        ("channel_shift", 101.0),
        ("downsample_factor", 0.5),
        ("downsample_factor", 9.0),
        ("noise_std", -1.0),
        ("flip_mode", "diagonal"),
        ("rotation_on", "yes"),
        ("noise_on", 1),
        ("seed", -1),
        ("seed", 1.5),
    ],
)
def test_impossible_values_are_rejected_naming_the_field(field: str, value: object) -> None:
    label = AugmentConfig.__dataclass_fields__[field].metadata["label"]
    with pytest.raises(ConfigError, match=label.replace("(", r"\(").replace(")", r"\)")):
        AugmentConfig(**{field: value})


def test_config_survives_json_and_rejects_unknown_settings() -> None:
    cfg = AUGMENT_PRESETS["strong"].replace(seed=5)
    assert AugmentConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="blur"):
        AugmentConfig.from_dict({"blur": 3})


def test_fields_carry_what_a_page_needs_to_draw_grouped_widgets() -> None:
    fields = {f.name: f.metadata for f in dataclasses.fields(AugmentConfig)}
    assert all(meta["label"] and meta["help"] for meta in fields.values())
    assert len({meta["label"] for meta in fields.values()}) == len(fields)
    for row in TRANSFORMS:
        assert fields[row.switch]["choices"] == (True, False)
        for name in (row.switch, *row.strengths, *row.options):
            assert fields[name]["group"] == row.key
        for name in row.strengths:
            meta = fields[name]
            assert meta["min"] <= row.neutral <= meta["max"] and meta["step"] > 0
    grouped = {name for name, meta in fields.items() if meta["group"]}
    assert grouped == set(fields) - {"seed"}


def test_every_transformation_has_a_one_sentence_teaching_note() -> None:
    assert list(TEACHING_NOTES) == [row.key for row in TRANSFORMS]
    assert len(TRANSFORMS) == 8
    for note in TEACHING_NOTES.values():
        assert note.startswith("Simulates") and note.endswith(".") and note.count(". ") == 0


# --- the augmenter ----------------------------------------------------------------------------------


def test_notebook_preset_builds_exactly_the_notebook_layers() -> None:
    import keras

    layers = build_augmenter(AUGMENT_PRESETS["notebook"]).layers
    assert type(layers[-1]).__name__ == "ClipPixels"
    rotation, translation, flip, contrast = layers[:-1]
    assert isinstance(rotation, keras.layers.RandomRotation) and rotation.factor == (-0.15, 0.15)
    assert isinstance(translation, keras.layers.RandomTranslation)
    assert (translation.height_factor, translation.width_factor) == (0.1, 0.1)
    assert isinstance(flip, keras.layers.RandomFlip) and flip.mode == "horizontal_and_vertical"
    assert isinstance(contrast, keras.layers.RandomContrast) and contrast.factor == (0.1, 0.1)


@pytest.mark.parametrize("key", [row.key for row in TRANSFORMS])
def test_each_transformation_changes_images_when_on(key: str, images: np.ndarray) -> None:
    out = run(only(key), images)
    changed = np.abs(out - images).mean(axis=(1, 2, 3)) > 0.5
    assert changed.any()


@pytest.mark.parametrize("key", [row.key for row in TRANSFORMS])
def test_each_transformation_is_the_exact_identity_when_off_or_at_strength_zero(key: str, images: np.ndarray) -> None:
    row = next(r for r in TRANSFORMS if r.key == key)
    off = only(key).replace(**{row.switch: False})
    assert np.array_equal(run(off, images), images.astype(np.float32))
    if row.strengths:
        neutral = only(key, **{name: row.neutral for name in row.strengths})
        assert np.array_equal(run(neutral, images), images.astype(np.float32))


@pytest.mark.parametrize("cfg", [*AUGMENT_PRESETS.values(), STRONGEST], ids=[*AUGMENT_PRESETS, "strongest"])
def test_output_is_float_pixels_of_the_same_shape(cfg: AugmentConfig, images: np.ndarray) -> None:
    extremes = np.concatenate([images, np.zeros_like(images[:1]), np.full_like(images[:1], 255)])
    out = run(cfg, extremes)
    assert out.dtype == np.float32 and out.shape == extremes.shape
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_same_seed_gives_the_same_augmentation_and_another_seed_does_not(images: np.ndarray) -> None:
    cfg = AUGMENT_PRESETS["strong"].replace(seed=3)
    assert np.array_equal(run(cfg, images), run(cfg, images))
    assert not np.array_equal(run(cfg, images), run(cfg.replace(seed=4), images))


def test_switching_one_transformation_does_not_change_what_the_others_draw(images: np.ndarray) -> None:
    rotation_only = run(only("rotation"), images)
    rotation_then_noise_at_zero = run(only("rotation").replace(noise_on=True, noise_std=0.0), images)
    assert np.array_equal(rotation_only, rotation_then_noise_at_zero)


def test_one_augmenter_takes_batches_of_any_size_and_resolution(images: np.ndarray) -> None:
    augmenter = build_augmenter(AUGMENT_PRESETS["strong"])
    assert augment_batch(augmenter, images[:2, :32, :32]).shape == (2, 32, 32, 3)
    assert augment_batch(augmenter, images).shape == images.shape


def test_contrast_goes_both_down_and_up_as_documented(images: np.ndarray) -> None:
    many = np.repeat(images[:1], 16, axis=0)
    out = run(only("contrast", contrast=0.3), many)
    ratios = out.std(axis=(1, 2, 3)) / many.astype(np.float32).std()
    assert ratios.min() < 0.95 and ratios.max() > 1.05
    assert ratios.min() > 0.65 and ratios.max() < 1.35


def test_channel_shift_moves_each_colour_channel_separately_within_its_range() -> None:
    grey = np.full((6, 8, 8, 3), 128, np.uint8)
    out = run(only("channel_shift", channel_shift=30.0), grey)
    shifts = out.mean(axis=(1, 2)) - 128
    assert np.allclose(out, out[:, :1, :1, :])
    assert np.abs(shifts).max() <= 30.0
    assert (shifts.std(axis=1) > 1).all()


def test_noise_strength_is_a_standard_deviation_in_pixel_values() -> None:
    grey = np.full((2, 64, 64, 3), 128, np.uint8)
    out = run(only("noise", noise_std=10.0), grey)
    assert abs((out - 128).std() - 10.0) < 1.0


def test_downsampling_removes_fine_detail(images: np.ndarray) -> None:
    out = run(only("downsample", downsample_factor=4.0), images)
    detail_before = np.abs(np.diff(images.astype(np.float32), axis=2)).mean()
    detail_after = np.abs(np.diff(out, axis=2)).mean()
    assert detail_after < 0.8 * detail_before


def test_training_pipeline_map_augments_batches_in_graph_mode(images: np.ndarray) -> None:
    import tensorflow as tf

    augmenter = build_augmenter(AUGMENT_PRESETS["strong"])
    labels = np.arange(len(images))
    ds = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .batch(4)
        .map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    )
    batches = list(ds.as_numpy_iterator())
    out = np.concatenate([x for x, _ in batches])
    assert [x.shape for x, _ in batches] == [(4, 40, 48, 3)] * 2 and out.dtype == np.float32
    assert np.array_equal(np.concatenate([y for _, y in batches]), labels)
    assert (np.abs(out - images).mean(axis=(1, 2, 3)) > 0.5).all()
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_augmenter_inside_a_model_trains_saves_and_loads(images: np.ndarray, tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((40, 48, 3))
    x = build_augmenter(AUGMENT_PRESETS["strong"])(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile("adam", "categorical_crossentropy")
    model.fit(images, np.eye(2)[np.arange(8) % 2], epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert np.allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    augmenter = loaded.get_layer("augmentation")
    assert np.array_equal(np.asarray(augmenter(images, training=False)), images.astype(np.float32))


def test_a_saved_model_with_augmentation_loads_in_a_new_process(images: np.ndarray, tmp_path: Path) -> None:
    import keras

    model = keras.Sequential(
        [keras.Input((40, 48, 3)), build_augmenter(AUGMENT_PRESETS["strong"]), keras.layers.GlobalAveragePooling2D()]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    code = (
        "from core.augment import register_layers; register_layers(); import keras; "
        f"m = keras.models.load_model({str(path)!r}); "
        "print(sorted(type(l).__name__ for l in m.get_layer('augmentation').layers))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "PixelGaussianNoise" in result.stdout and "GatherRandomFlip" in result.stdout


# --- previews ---------------------------------------------------------------------------------------


def test_preview_gives_n_reproducible_uint8_pictures(images: np.ndarray) -> None:
    picture = images[0]
    shown = preview(picture, AUGMENT_PRESETS["strong"], 5)
    assert len(shown) == 5 and all(p.dtype == np.uint8 and p.shape == picture.shape for p in shown)
    assert all(np.array_equal(a, b) for a, b in zip(shown, preview(picture, AUGMENT_PRESETS["strong"], 5)))
    assert len({p.tobytes() for p in shown}) == 5
    assert len(preview(picture)) == 9


def test_preview_without_augmentation_returns_the_picture_unchanged(images: np.ndarray) -> None:
    assert all(np.array_equal(p, images[0]) for p in preview(images[0], AUGMENT_PRESETS["none"], 3))


def test_preview_accepts_grey_pictures_and_explains_unusable_input(images: np.ndarray) -> None:
    assert preview(images[0, :, :, 0], n=1)[0].shape == (40, 48, 3)
    with pytest.raises(ImageUnreadable, match="uint8"):
        preview(images[0].astype(np.float32))
    with pytest.raises(ImageUnreadable, match="height x width x 3"):
        preview(images)
    with pytest.raises(ConfigError, match="Number of previews"):
        preview(images[0], n=0)


def test_one_at_a_time_preview_labels_each_enabled_transformation(images: np.ndarray) -> None:
    picture = images[0]
    shown = preview_each_transform(picture, AUGMENT_PRESETS["strong"])
    assert [label for label, _ in shown] == AUGMENT_PRESETS["strong"].enabled_transforms()
    for label, version in shown:
        assert version.dtype == np.uint8 and version.shape == picture.shape
        assert not np.array_equal(version, picture), label
    assert preview_each_transform(picture, AUGMENT_PRESETS["none"]) == []

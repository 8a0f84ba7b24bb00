"""Classifying photos: awkward files per file, batching, EXIF orientation, runs, Grad-CAM, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import imagenet
from core.config import RunConfig
from core.errors import ConfigError, RunError
from core.images import DecodeLimits, decode_image
from core.serving import classification, classifiers, cli, colour_maps, preprocessing
from core.serving.grad_cam import grad_cam, last_feature_map_layer
from test_images import STORED_FOR_ORIENTATION, encode, noise, png_declaring, quadrants, with_orientation

ROOT = Path(__file__).resolve().parents[1]
BAR_CLASSES = ("horizontal bar", "vertical bar")
SIZE = 32


# ---------------------------------------------------------------------------------------------- models


def bar_picture(horizontal: bool, seed: int, width: int = SIZE, height: int = SIZE) -> tuple[np.ndarray, tuple]:
    """A white bar on dark noise, and the bar's (top, left, bottom, right)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    bar_h, bar_w = (3, 12) if horizontal else (12, 3)
    top, left = int(rng.integers(1, height - bar_h - 1)), int(rng.integers(1, width - bar_w - 1))
    pixels[top : top + bar_h, left : left + bar_w] = 255
    return pixels, (top, left, top + bar_h, left + bar_w)


def tiny_cnn(num_classes: int, name: str = "tiny") -> keras.Model:  # noqa: F821
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="pred")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def bar_model_file(tmp_path_factory) -> Path:
    """A tiny CNN trained to tell horizontal from vertical bars: orientation matters, and it looks at the bar."""
    import keras

    keras.utils.set_random_seed(0)
    pictures = [bar_picture(i % 2 == 0, seed=i)[0] for i in range(192)]
    labels = np.array([i % 2 for i in range(192)])
    model = tiny_cnn(2, "bars")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(np.stack(pictures).astype("float32"), labels, epochs=15, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.95
    path = tmp_path_factory.mktemp("models") / "bars.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def bars(bar_model_file) -> classifiers.Classifier:
    return classifiers.classifier_from_file(bar_model_file, BAR_CLASSES)


@pytest.fixture(scope="module")
def dogs(tmp_path_factory):
    """The ImageNet dog-breed classifier, built once (its converted weights go to a throwaway home)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(tmp_path_factory.mktemp("dogs-home")))
        return classifiers.imagenet_dog_classifier()


@pytest.fixture(scope="module")
def dog_photo(dogs10) -> Path:
    photos = sorted((dogs10 / "test").rglob("*.jpg"))
    landscape = [p for p in photos if Image.open(p).width > 1.2 * Image.open(p).height]
    return (landscape or photos)[0]


def png(pixels: np.ndarray) -> bytes:
    return encode(Image.fromarray(np.ascontiguousarray(pixels)), "PNG")


# ---------------------------------------------------------------------------------------------- awkward files


def _palette_with_transparency() -> bytes:
    palette = Image.new("P", (20, 12))
    palette.putpalette([200, 10, 10, 0, 0, 0] + [0] * 762)
    palette.paste(1, (0, 0, 10, 12))
    return encode(palette, "PNG", transparency=1)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _truncated_jpeg() -> bytes:
    data = encode(noise(64, 64), "JPEG")
    return data[: len(data) // 2]


GOOD_FILES = {
    "grey.png": lambda: encode(
        Image.fromarray(np.arange(30 * 20, dtype=np.uint16).reshape(20, 30).astype(np.uint8), "L"), "PNG"
    ),
    "cmyk.jpg": lambda: encode(Image.new("CMYK", (24, 16), (0, 255, 255, 0)), "JPEG", quality=95),
    "sixteen-bit.png": lambda: encode(
        Image.fromarray(np.linspace(0, 65535, 24 * 16).astype(np.uint16).reshape(16, 24)), "PNG"
    ),
    "palette-transparent.png": _palette_with_transparency,
    "really-a-png.jpg": lambda: encode(noise(21, 13), "PNG"),
    "exif-rotated.jpg": lambda: with_orientation(STORED_FOR_ORIENTATION[6](quadrants(48, 32)), 6, "JPEG"),
    "animated.gif": _animated_gif,
    "one-pixel.png": lambda: encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
}
BAD_FILES = {
    "huge.png": (lambda: encode(noise(400, 300), "PNG"), "huge.png is too large"),
    "bomb.png": (lambda: png_declaring(100_000, 100_000), "bomb.png is too large"),
    "truncated.jpg": (_truncated_jpeg, "truncated.jpg is truncated or corrupt"),
    "empty.jpg": (lambda: b"", "empty.jpg is empty (0 bytes)"),
    "random.jpg": (
        lambda: np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "random.jpg is not an image",
    ),
    "notes.jpg": (
        lambda: b"These are my notes about dogs.\nNot a picture.\n",
        "notes.jpg is not an image: it contains text",
    ),
}
SMALL_LIMITS = DecodeLimits(max_pixels=100_000)  # 400 x 300 is "huge" here


def test_each_awkward_file_gets_its_result_in_one_batch(bars):
    corpus = [(name, make()) for name, make in GOOD_FILES.items()]
    corpus += [(name, make()) for name, (make, _) in BAD_FILES.items()]
    order = np.random.default_rng(3).permutation(len(corpus))
    shuffled = [corpus[i] for i in order]
    results = classification.classify(bars, shuffled, k=5, limits=SMALL_LIMITS)

    assert [r.file for r in results] == [name for name, _ in shuffled]
    by_name = {r.file: r for r in results}
    for name in GOOD_FILES:
        result = by_name[name]
        assert result.ok and result.error is None, (name, result.error)
        assert [label for label, _ in result.top] in (list(BAR_CLASSES), list(BAR_CLASSES[::-1]))
        assert sum(p for _, p in result.top) == pytest.approx(1.0, abs=1e-5)
        assert result.label == result.top[0][0] == BAR_CLASSES[result.class_index]
    for name, (_, message) in BAD_FILES.items():
        result = by_name[name]
        assert not result.ok and result.top == () and result.label is None
        assert result.error.startswith(message), result.error


def test_a_bad_file_does_not_change_the_others(bars):
    good = [(f"bar{i}.png", png(bar_picture(i % 2 == 0, seed=50 + i)[0])) for i in range(3)]
    alone = classification.classify(bars, good)
    mixed = classification.classify(
        bars, [good[0], ("broken.jpg", b"\xff\xd8\xff garbage"), good[1], ("empty.png", b""), good[2]]
    )
    assert [r.ok for r in mixed] == [True, False, True, False, True]
    for single, batched in zip(alone, [mixed[0], mixed[2], mixed[4]]):
        assert single.file == batched.file and single.label == batched.label
        np.testing.assert_allclose(single.probabilities, batched.probabilities, atol=1e-5)


def test_every_kind_of_input_is_accepted(bars, tmp_path):
    pixels = bar_picture(True, seed=7)[0]
    data = png(pixels)
    path = tmp_path / "bar.png"
    path.write_bytes(data)

    class Upload:  # what a Streamlit file uploader hands over
        name = "upload.png"

        def getvalue(self) -> bytes:
            return data

    inputs = [
        ("named.png", data),
        ("picture.png", Image.fromarray(pixels)),
        Image.fromarray(pixels),
        path,
        str(path),
        Upload(),
        data,
        Image.fromarray(pixels).convert("RGBA"),
    ]
    results = classification.classify(bars, inputs, k=1)
    assert [r.file for r in results] == [
        "named.png",
        "picture.png",
        "image 3",
        str(path),
        str(path),
        "upload.png",
        "image 7",
        "image 8",
    ]
    assert all(r.ok and r.label == "horizontal bar" for r in results)
    assert [r.file for r in classification.classify(bars, path)] == [str(path)]  # one input on its own
    for result in results[1:]:
        np.testing.assert_allclose(result.probabilities, results[0].probabilities, atol=1e-6)


def test_batches_and_order_do_not_change_results(bars):
    inputs = [(f"{i}.png", png(bar_picture(i % 3 == 0, seed=i)[0])) for i in range(7)] + [("bad.png", b"x")]
    seen = []
    whole = classification.classify(bars, inputs, batch_size=32)
    chunked = classification.classify(bars, inputs, batch_size=3, progress=lambda d, t, m: seen.append((d, t)))
    assert [r.file for r in chunked] == [r.file for r in whole]
    for a, b in zip(whole, chunked):
        assert a.error == b.error
        if a.ok:
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    assert seen == [(3, 8), (6, 8), (8, 8)]
    assert list(classification.iter_classify(bars, iter(inputs[:2]), batch_size=1))[1].file == "1.png"


def test_the_classifier_learned_its_task_and_top_k_is_capped(bars):
    results = classification.classify(bars, [png(bar_picture(i % 2 == 0, seed=900 + i)[0]) for i in range(6)], k=10)
    assert [r.label for r in results] == ["horizontal bar", "vertical bar"] * 3
    assert all(len(r.top) == 2 and r.top[0][1] >= r.top[1][1] for r in results)
    assert len(classification.classify(bars, [png(bar_picture(True, seed=1)[0])], k=1)[0].top) == 1


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_whole_number(bars, k):
    with pytest.raises(ConfigError, match="k"):
        classification.classify(bars, [], k=k)


def test_nothing_to_classify_gives_nothing(bars):
    assert classification.classify(bars, []) == []


def test_logit_models_get_probabilities(tmp_path):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 25.5)(inputs)))
    keras.Model(inputs, outputs).save(tmp_path / "logits.keras")
    classifier = classifiers.classifier_from_file(tmp_path / "logits.keras", ["a", "b", "c"])
    [result] = classification.classify(classifier, [png(noise(40, 30))])
    assert result.probabilities.min() >= 0 and result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_class_names_must_match_the_outputs(bar_model_file):
    with pytest.raises(ConfigError, match="2 outputs but 3 class names"):
        classifiers.classifier_from_file(bar_model_file, ["a", "b", "c"])


def test_missing_and_damaged_model_files_are_run_errors(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        classifiers.cached_model(tmp_path / "gone.keras")
    (tmp_path / "damaged.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RunError, match="could not be loaded"):
        classifiers.cached_model(tmp_path / "damaged.keras")


def test_models_are_loaded_once_until_the_file_changes(bar_model_file, tmp_path):
    copy = tmp_path / "copy.keras"
    copy.write_bytes(bar_model_file.read_bytes())
    first = classifiers.cached_model(copy)
    assert classifiers.cached_model(copy) is first
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    assert classifiers.cached_model(copy) is not first


# ---------------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photo_is_classified_like_its_upright_twin(bars, orientation):
    upright = bar_picture(True, seed=11, width=44, height=30)[0]
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](upright))
    twin, rotated, ignored = classification.classify(
        bars,
        [
            ("twin.png", png(upright)),
            ("rotated.png", with_orientation(stored, orientation, "PNG")),
            ("ignored.png", png(stored)),
        ],
    )
    assert twin.label == rotated.label == "horizontal bar"
    np.testing.assert_allclose(rotated.probabilities, twin.probabilities, atol=1e-6)
    if orientation != 3:  # a quarter turn makes the bar vertical when the tag is not applied
        assert ignored.label == "vertical bar"


def test_exif_rotated_dog_photo_matches_its_upright_twin(dogs, dog_photo):
    """The dog classifier's centre crop must not rotate an already upright photo a second time."""
    upright = np.asarray(decode_image(dog_photo.read_bytes()))
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[6](upright))
    twin, rotated, sideways = classification.classify(
        dogs,
        [
            ("twin.png", png(upright)),
            ("rotated.png", with_orientation(stored, 6, "PNG")),
            ("sideways.png", png(stored)),
        ],
    )
    assert twin.label == rotated.label
    np.testing.assert_allclose(rotated.probabilities, twin.probabilities, atol=1e-5)
    assert np.abs(sideways.probabilities - twin.probabilities).sum() > 0.1  # so orientation matters here


def test_dog_classifier_knows_a_real_photo(dogs, dog_photo):
    [result] = classification.classify(dogs, [dog_photo])
    assert result.ok and len(result.top) == 5 and len(result.probabilities) == 120
    breed = dog_photo.parent.name.split("-", 1)[1].replace("_", " ").lower()
    assert breed in [label.lower() for label, _ in result.top]
    assert dogs.preprocessing.name == "imagenet" and dogs.image_size == 224


# ---------------------------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_has_the_photo_size_and_finds_the_bar(bars):
    pixels, (top, left, bottom, right) = bar_picture(True, seed=21, width=48, height=40)
    heatmap = grad_cam(bars, Image.fromarray(pixels))
    assert heatmap.shape == (40, 48) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
    assert heatmap.std() > 0.05
    on_bar = np.zeros(heatmap.shape, bool)
    on_bar[top:bottom, left:right] = True
    assert heatmap[on_bar].mean() > 3 * heatmap[~on_bar].mean()


def test_grad_cam_for_a_chosen_class_differs(bars):
    picture = Image.fromarray(bar_picture(True, seed=22)[0])
    predicted = grad_cam(bars, picture)
    assert np.array_equal(predicted, grad_cam(bars, picture, class_index=0))
    assert not np.allclose(predicted, grad_cam(bars, picture, class_index=1))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        grad_cam(bars, picture, class_index=2)


def test_grad_cam_looks_inside_nested_models(bars):
    import keras

    flat = keras.models.clone_model(bars.model)  # a copy: reusing the fixture's layers would change its graph
    flat.set_weights(bars.model.get_weights())
    backbone = keras.Model(flat.input, flat.get_layer("features").output, name="backbone")
    nested = keras.Sequential(
        [keras.Input((SIZE, SIZE, 3)), backbone, flat.get_layer("avg_pool"), flat.get_layer("pred")]
    )
    classifier = classifiers.Classifier("nested", BAR_CLASSES, SIZE, preprocessing.PREPROCESSING["stretch"], nested)
    assert last_feature_map_layer(nested).name == "features"
    picture = Image.fromarray(bar_picture(False, seed=23)[0])
    np.testing.assert_allclose(grad_cam(classifier, picture), grad_cam(bars, picture), atol=1e-4)


def test_grad_cam_needs_a_feature_map():
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    dense = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ConfigError, match="no convolutional feature map"):
        last_feature_map_layer(dense)


def test_grad_cam_on_a_real_dog_photo(dogs, dog_photo):
    photo = decode_image(dog_photo.read_bytes())
    heatmap = grad_cam(dogs, photo)
    width, height = photo.size
    assert heatmap.shape == (height, width)
    assert heatmap.max() == pytest.approx(1.0) and heatmap.std() > 0.05
    left, top, right, bottom = (int(round(v)) for v in preprocessing.PREPROCESSING["imagenet"].view_box(width, height))
    assert heatmap[:, : left - 1].max() == 0 and heatmap[:, right + 1 :].max() == 0  # outside the centre crop
    assert last_feature_map_layer(dogs.model).name == "top_activation"


def test_overlay_blends_the_colour_map_over_the_photo():
    photo = noise(30, 20)
    heatmap = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (20, 1))
    assert np.array_equal(colour_maps.overlay(photo, heatmap, opacity=0.0), np.asarray(photo))
    assert np.array_equal(colour_maps.overlay(photo, heatmap, opacity=1.0), colour_maps.colourise(heatmap))
    half = colour_maps.overlay(photo, heatmap, 0.5)
    assert half.shape == (20, 30, 3) and half.dtype == np.uint8
    assert colour_maps.overlay(photo, heatmap[::2, ::2]).shape == (20, 30, 3)
    colours = colour_maps.colourise(np.array([0.15, 0.5, 1.0]))
    assert colours[0, 2] > colours[0, 0] and colours[2, 0] > colours[2, 2]  # blue for cold, red for hot
    with pytest.raises(ConfigError, match="Opacity"):
        colour_maps.overlay(photo, heatmap, 1.5)


# ---------------------------------------------------------------------------------------------- runs


def register_run(
    model_file: Path | None,
    *,
    source: str = "demo",
    class_names: list[str] | None = None,
    file_name: str = "model_best.keras",
) -> str:
    from core import runs
    from core.config import DataConfig, ModelConfig

    config = RunConfig(name="bars run", data=DataConfig(source=source), model=ModelConfig(image_size=SIZE))
    run_id = runs.create_run(config)
    folder = runs.run_folder(run_id)
    if model_file is not None:
        (folder / file_name).write_bytes(Path(model_file).read_bytes())
    if class_names is not None:
        (folder / classifiers.CLASS_NAMES_FILE).write_text(json.dumps(class_names))
    return run_id


@pytest.fixture
def bar_run(bar_model_file) -> str:
    return register_run(bar_model_file, class_names=list(BAR_CLASSES))


def test_a_run_classifies_with_its_names_and_training_resize(bar_run):
    classifier = classifiers.classifier_for_run(bar_run)
    assert classifier.class_names == BAR_CLASSES and classifier.image_size == SIZE
    assert classifier.preprocessing.name == "stretch" and classifier.name == "bars run" and not classifier.notes
    assert classifier.source.endswith("model_best.keras")
    assert classifiers.classifier_for_run(bar_run) is classifier
    [result] = classification.classify(classifier, [png(bar_picture(False, seed=5)[0])])
    assert result.label == "vertical bar"


def test_a_run_prepares_photos_exactly_as_its_training_pipeline_did(bar_run, tmp_path):
    from core.data import load_file  # what a folder data source feeds to training

    classifier = classifiers.classifier_for_run(bar_run)
    path = tmp_path / "wide.png"
    path.write_bytes(encode(noise(50, 20), "PNG"))
    trained_on, ok = load_file(str(path).encode(), SIZE)
    [result] = classification.classify(classifier, [path])
    prepared = classifier.prepare(decode_image(path.read_bytes()))
    assert ok and prepared.dtype == np.float32 and np.array_equal(prepared, trained_on.astype(np.float32))
    np.testing.assert_allclose(result.probabilities, classifier.predict(prepared[None])[0], atol=1e-6)


def test_run_class_names_come_from_its_data_source(tmp_path):
    from core import demo

    nine = tmp_path / "nine.keras"
    tiny_cnn(len(demo.CLASS_NAMES)).save(nine)
    run_id = register_run(nine, file_name="model_last.keras")
    classifier = classifiers.classifier_for_run(run_id)
    assert classifier.class_names == tuple(demo.CLASS_NAMES) and not classifier.notes
    assert classifiers.classifier_for_run(run_id, "last").source == classifier.source


def test_unknown_class_names_are_numbered_with_a_note(bar_model_file, tmp_path):
    run_id = register_run(bar_model_file, source=f"folder:{tmp_path / 'gone'}")
    classifier = classifiers.classifier_for_run(run_id)
    assert classifier.class_names == ("class 1", "class 2")
    assert len(classifier.notes) == 1 and "does not exist" in classifier.notes[0]


def test_runs_without_a_model_or_unknown_are_errors(bar_model_file):
    with pytest.raises(RunError, match="no saved model yet"):
        classifiers.classifier_for_run(register_run(None))
    with pytest.raises(RunError, match="no saved model yet"):
        classifiers.classifier_for_run(register_run(bar_model_file), checkpoint="last")
    with pytest.raises(RunError, match="no run"):
        classifiers.classifier_for_run("19990101-000000-abcdef")
    with pytest.raises(ConfigError, match="Checkpoint"):
        classifiers.classifier_for_run("any", checkpoint="newest")


# ---------------------------------------------------------------------------------------------- command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "core.serving", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_prints_one_json_line_per_file(bar_run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "b.png").write_bytes(png(bar_picture(True, seed=31)[0]))
    (folder / "a-broken.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "readme.txt").write_text("not listed: not an image suffix")
    single = tmp_path / "single.png"
    single.write_bytes(png(bar_picture(False, seed=32)[0]))

    done = run_cli("--run", bar_run, str(single), str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(single), str(folder / "a-broken.jpg"), str(folder / "b.png")]
    assert [p["label"] for p in lines[0]["top5"]] == ["vertical bar", "horizontal bar"]
    assert set(lines[0]["top5"][0]) == {"label", "probability"} and 0.5 < lines[0]["top5"][0]["probability"] <= 1
    assert set(lines[1]) == {"file", "error"} and "truncated or corrupt" in lines[1]["error"]
    assert lines[2]["top5"][0]["label"] == "horizontal bar"


def test_cli_answers_a_named_pipe_with_an_error_line_instead_of_waiting(bar_run, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    good = tmp_path / "good.png"
    good.write_bytes(png(bar_picture(True, seed=33)[0]))
    done = run_cli("--run", bar_run, str(fifo), str(good))  # before the fix: killed by the timeout
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first == {"file": str(fifo), "error": "pipe.png cannot be read: it is a named pipe, not a regular file."}
    assert second["top5"][0]["label"] == "horizontal bar"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["photo.jpg"], "one of the arguments --run --imagenet-dogs is required"),
        (["--run", "x", "--imagenet-dogs", "photo.jpg"], "not allowed with"),
        (["--imagenet-dogs"], "the following arguments are required"),
        (["--run", "19990101-000000-abcdef", "PHOTO"], "no run"),
        (["--imagenet-dogs", "EMPTY"], "no image files found"),
        (["--imagenet-dogs", "--top-k", "0", "photo.jpg"], "--top-k must be at least 1"),
        (["--imagenet-dogs", "--checkpoint", "newest", "photo.jpg"], "invalid choice"),
    ],
)
def test_cli_bad_flags_exit_2(argv, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "photo.png").write_bytes(png(noise(8, 8)))
    argv = [
        str(tmp_path / "empty") if a == "EMPTY" else str(tmp_path / "photo.png") if a == "PHOTO" else a for a in argv
    ]
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_cli_bad_flags_exit_2_from_the_shell():
    done = run_cli("--run", "19990101-000000-abcdef")
    assert done.returncode == 2 and done.stdout == "" and "usage:" in done.stderr


def test_cli_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--run", "--imagenet-dogs", "--top-k", "--checkpoint", "--batch-size", "FILE_OR_FOLDER"):
        assert flag in text
    assert "JSON" in text


def test_folders_expand_to_sorted_image_files(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("z.JPG", "a.png", "b/c.webp", "notes.txt", ".hidden/x.png"):
        (tmp_path / name).write_bytes(b"")
    assert cli.expand_paths([tmp_path, "missing.jpg"]) == [
        tmp_path / "a.png",
        tmp_path / "b" / "c.webp",
        tmp_path / "z.JPG",
        Path("missing.jpg"),
    ]


def test_serving_modules_do_not_import_tensorflow():
    modules = ", ".join(
        sorted(
            f"core.serving.{path.stem}" for path in (ROOT / "core" / "serving").glob("*.py") if path.stem != "__main__"
        )
    )
    code = f"import sys, {modules}; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


DOGS = imagenet.dog_breed_names()


def test_a_low_top_probability_is_called_unsure_with_a_hint_for_dog_models():
    result = classification.Result("pattern.png", top=(("Shih-Tzu", 0.164), ("Maltese dog", 0.05)))
    note = classification.unsure_note(result, DOGS)
    assert note == (
        "The model is unsure: its best guess, Shih-Tzu, gets only 16.4%. This may not be a dog, "
        "or not one of the 120 breeds it knows."
    )


def test_a_top_class_barely_ahead_of_the_next_is_called_unsure():
    result = classification.Result("x.png", top=(("circle", 0.52), ("ring", 0.45), ("square", 0.03)))
    note = classification.unsure_note(result, ["circle", "ring", "square"])
    assert note == (
        "The model is unsure: circle (52.0%) is barely ahead of ring (45.0%). This may not show one "
        "of its 3 classes, or the model needs more training."
    )


@pytest.mark.parametrize(
    "top",
    [
        (("Samoyed", 0.97), ("Pomeranian", 0.01)),
        (("Samoyed", 0.41), ("Pomeranian", 0.30)),  # just above both limits
        (("Samoyed", 0.45),),  # no runner-up listed (top-1 only)
    ],
)
def test_a_clear_answer_gets_no_note(top):
    assert classification.unsure_note(classification.Result("dog.jpg", top=top), DOGS) is None


def test_just_under_either_limit_is_unsure():
    assert classification.unsure_note(classification.Result("a", top=(("a", 0.39), ("b", 0.01))), ["a", "b"])
    assert classification.unsure_note(classification.Result("a", top=(("a", 0.80), ("b", 0.71))), ["a", "b"])


def test_a_file_that_could_not_be_classified_gets_no_note():
    assert classification.unsure_note(classification.Result("broken.jpg", error="not an image"), DOGS) is None

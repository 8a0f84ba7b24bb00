"""core.explore: the map's points, projections and their cache keys, separability, selections, fix and retrain.

Tiny sizes throughout: synthetic features where no backbone is needed, 32 px images where one is, and a
4-breed subset of the shared dogs10 photos at 96 px for the one claim that needs real photos (ImageNet features
separate breeds, random ones do not).
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from core import datasets, explore, figures
from core.config import DataConfig
from core.feature_cache import FeatureSource
from pictures import noisy_png

COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def synthetic(count_per_class: int = 12, classes: int = 3, dim: int = 16, seed: int = 0) -> explore.MapFeatures:
    """Well-separated clusters, one per class; every fourth image of a class is a test image."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 5
    labels = np.repeat(np.arange(classes), count_per_class)
    is_test = np.tile(np.arange(count_per_class) % 4 == 0, classes)
    order = np.argsort(is_test, kind="stable")  # training rows first, as map_features lays them out
    labels, is_test = labels[order], is_test[order]
    features = (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    source = FeatureSource(data=DataConfig(), split="train", backbone="b", weights=f"w{seed}", image_size=32)
    return explore.MapFeatures(
        features=features,
        labels=labels,
        is_test=is_test,
        files=[Path(f"/images/c{label}/img_{row:03}.png") for row, label in enumerate(labels)],
        class_names=[f"c{i}" for i in range(classes)],
        sources=(source, dataclasses.replace(source, split="test")),
    )


@pytest.mark.parametrize("method", list(explore.PROJECTIONS))
def test_a_projection_has_one_point_per_image_in_a_stable_order(method):
    features = synthetic()
    settings = explore.MapSettings(method=method, perplexity=5)
    coordinates = explore.project(features, settings)
    assert coordinates.shape == (len(features), 2)
    np.testing.assert_array_equal(explore.project(features, settings), coordinates)  # from the cache: the same rows
    # row i is image i: each class's points sit closer to their own class's centre than to the others'
    centres = np.array([coordinates[features.labels == c].mean(axis=0) for c in range(3)])
    nearest = np.linalg.norm(coordinates[:, None] - centres[None], axis=2).argmin(axis=1)
    assert np.mean(nearest == features.labels) > 0.9


def test_the_projection_cache_key_changes_with_method_and_parameters_only():
    key = explore.projection_key
    pca, tsne = explore.MapSettings(method="PCA"), explore.MapSettings(method="t-SNE")
    assert key("f", pca) != key("f", tsne)
    assert key("f", tsne) != key("f", tsne.replace(perplexity=10.0))
    assert key("f", tsne) != key("f", tsne.replace(seed=1))
    assert key("f", pca) == key("f", pca.replace(perplexity=10.0))  # PCA has no perplexity
    assert key("f", pca) != key("g", pca)  # other features
    assert pca.for_features() == tsne.replace(perplexity=7.0).for_features()  # drawing choices reuse the features


def test_settings_refuse_an_unknown_method_in_words():
    with pytest.raises(ValueError, match="Projection must be one of 'PCA', 't-SNE'"):
        explore.MapSettings(method="UMAP")


def test_knn_accuracy_and_neighbours_use_cosine_similarity_in_the_full_space():
    features = synthetic()
    assert explore.knn_accuracy(features) == 1.0
    shuffled = dataclasses.replace(features, labels=np.random.default_rng(1).permutation(features.labels))
    assert explore.knn_accuracy(shuffled) < 0.7
    row = int(np.flatnonzero(features.is_test)[0])
    nearest = explore.nearest_training(features, row, k=4)
    assert len(nearest) == 4 and row not in [n.row for n in nearest]
    assert all(not features.is_test[n.row] and features.labels[n.row] == features.labels[row] for n in nearest)
    assert [n.similarity for n in nearest] == sorted((n.similarity for n in nearest), reverse=True)


def test_a_selection_on_the_map_maps_back_to_the_right_files():
    features = synthetic()
    hover = [path.name for path in features.files]
    fig = figures.feature_map(
        np.zeros((len(features), 2)), features.labels, features.is_test, features.class_names, hover
    )
    picked = [(1, 2), (4, 0), (2, 1)]  # (trace, point in the trace): what a click, box or lasso reports
    forms = [lambda row: [row], lambda row: row, lambda row: {"0": row}]  # list, number, typed-array slice
    points = [
        {"curve_number": trace, "point_index": index, "customdata": form(fig.data[trace].customdata[index][0])}
        for (trace, index), form in zip(picked, forms)
    ]
    rows = explore.selected_rows({"points": points + points[:1]}, len(features))  # a point twice counts once
    chosen = explore.describe_rows(features, rows)
    assert [s.file.name for s in chosen] == [fig.data[t].text[i] for t, i in picked]
    for s in chosen:
        assert s.class_name == s.file.parent.name and s.split == ("test" if features.is_test[s.row] else "train")
    assert explore.selected_rows({"points": [{"customdata": [10_000]}]}, len(features)) == []


@pytest.fixture
def four_breeds(dogs10, tmp_path) -> DataConfig:
    """4 breeds x 20 photos of dogs10 (15 train, 5 test each), linked, never copied."""
    for breed in sorted(p.name for p in (dogs10 / "train").iterdir())[:4]:
        for split, count in (("train", 15), ("test", 5)):
            folder = tmp_path / "dogs" / split / breed
            folder.mkdir(parents=True)
            for photo in sorted((dogs10 / split / breed).iterdir())[:count]:
                (folder / photo.name).symlink_to(photo)
    return DataConfig(source=f"folder:{tmp_path / 'dogs'}")


def test_imagenet_features_separate_dog_breeds_far_better_than_random_weights(four_breeds):
    imagenet = explore.map_features(four_breeds, explore.MapSettings(features="imagenet", image_size=96))
    random = explore.map_features(four_breeds, explore.MapSettings(features="random", image_size=96))
    assert len(imagenet) == len(random) == 80 and imagenet.num_train == 60
    assert imagenet.files == random.files  # the same images in the same order: maps side by side line up
    scores = explore.knn_accuracy(imagenet), explore.knn_accuracy(random)
    assert scores[0] >= 0.7 and scores[0] >= scores[1] + 0.3, scores


@pytest.fixture
def colours_dataset() -> DataConfig:
    """A dataset made in the app: three colour classes of 12 noisy 32 px images."""
    datasets.create_dataset("colours", list(COLOURS))
    for index, (name, colour) in enumerate(COLOURS.items()):
        photos = [(f"{name}{i}.png", noisy_png(colour, seed=100 * index + i)) for i in range(12)]
        datasets.add_images("colours", name, photos)
    return DataConfig(source="local:colours")


def test_relabel_and_retrain_changes_the_metrics_without_extracting_again(colours_dataset):
    settings = explore.MapSettings(features="random", image_size=32)
    features = explore.map_features(colours_dataset, settings)
    reds = [row for row in range(features.num_train) if features.class_names[features.labels[row]] == "red"]
    moved = reds[: len(reds) // 2]
    outcome = explore.fix_and_retrain(features, [explore.Change(row, "blue") for row in moved])

    assert len(outcome.applied) == len(moved)
    assert {image.path.name for image in datasets.images("colours", "blue")} >= {features.files[r].name for r in moved}
    blue = outcome.features.class_names.index("blue")
    relabelled = [
        outcome.features.labels[outcome.features.files.index(p)]
        for p in outcome.features.files
        if p.name in {features.files[r].name for r in moved}
    ]
    assert relabelled == [blue] * len(moved)
    assert (outcome.after.accuracy, outcome.after.loss) != (outcome.before.accuracy, outcome.before.loss)

    def no_extraction(done, total, message):
        raise AssertionError(f"the features were carried over, yet extracted again: {message}")

    again = explore.map_features(colours_dataset, settings, progress=no_extraction)
    np.testing.assert_array_equal(again.features, outcome.features.features)


def test_removing_images_drops_them_from_the_map(colours_dataset):
    features = explore.map_features(colours_dataset, explore.MapSettings(features="random", image_size=32))
    outcome = explore.fix_and_retrain(features, [explore.Change(0), explore.Change(1)], epochs=1)
    assert len(outcome.features) == len(features) - 2
    assert {p.name for p in (features.files[0], features.files[1])}.isdisjoint(p.name for p in outcome.features.files)
    assert len(datasets.trash("colours")) == 2

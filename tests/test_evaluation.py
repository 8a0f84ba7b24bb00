"""Evaluation: the notebook's metrics, the confusion views, and whether two runs can be compared."""

import numpy as np
import pytest
import sklearn.metrics as skm

from core import evaluation, figures
from core.config import DataConfig
from core.predictions import Predictions

NAMES = ["beagle", "pug", "collie", "husky", "boxer", "corgi", "akita"]
# True labels use classes 0-5 (akita never occurs); predictions never say "husky" (3).
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 5, 5, 5, 1])
PREDICTED = np.array([0, 0, 1, 1, 2, 2, 2, 0, 6, 4, 0, 4, 5, 5, 2, 1])


def hand_made_predictions(labels=LABELS, predicted=PREDICTED, names=NAMES, seed=0) -> Predictions:
    """Probabilities whose argmax is ``predicted``, with the rest of the mass spread unevenly."""
    rng = np.random.default_rng(seed)
    scores = rng.dirichlet(np.ones(len(names)), size=len(labels))
    scores[np.arange(len(labels)), predicted] += 1.0
    probabilities = (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)
    return Predictions(probabilities, np.asarray(labels, np.int64), list(names), np.arange(len(labels), dtype=np.int64))


# ---------------------------------------------------------------- metrics


def test_metrics_equal_the_notebooks_scikit_learn_computation():
    predictions = hand_made_predictions()
    assert (predictions.predicted == PREDICTED).all()
    metrics = evaluation.compute_metrics(predictions)

    assert metrics.accuracy == pytest.approx(9 / 16)
    assert metrics.accuracy == pytest.approx(skm.accuracy_score(LABELS, PREDICTED))
    assert metrics.k == 5
    assert metrics.top_k_accuracy == pytest.approx(
        skm.top_k_accuracy_score(LABELS, predictions.probabilities, k=5, labels=range(7))
    )
    unique_labels, label_counts = np.unique(LABELS, return_counts=True)
    precision = skm.precision_score(LABELS, PREDICTED, labels=unique_labels, average=None, zero_division=0)
    recall = skm.recall_score(LABELS, PREDICTED, labels=unique_labels, average=None, zero_division=0)
    assert metrics.weighted_precision == pytest.approx(np.sum(precision * label_counts / label_counts.sum()))
    assert metrics.weighted_recall == pytest.approx(np.sum(recall * label_counts / label_counts.sum()))
    assert metrics.weighted_precision == pytest.approx(
        skm.precision_score(LABELS, PREDICTED, labels=unique_labels, average="weighted", zero_division=0)
    )
    assert metrics.num_examples == 16


def test_per_class_table_covers_every_class_including_absent_and_never_predicted_ones():
    metrics = evaluation.compute_metrics(hand_made_predictions())
    p, r, f, s = skm.precision_recall_fscore_support(LABELS, PREDICTED, labels=range(7), zero_division=0)
    rows = metrics.per_class_rows()
    assert [row["class"] for row in rows] == NAMES
    assert [row["support"] for row in rows] == list(s) == [3, 3, 4, 2, 1, 3, 0]
    assert np.allclose([row["precision"] for row in rows], p)
    assert np.allclose([row["recall"] for row in rows], r)
    assert np.allclose([row["f1"] for row in rows], f)
    husky, akita = metrics.per_class[3], metrics.per_class[6]
    assert (husky.precision, husky.recall) == (0.0, 0.0)  # never predicted
    assert (akita.support, akita.precision, akita.recall) == (0, 0.0, 0.0)  # never in the test split
    assert metrics.per_class[4].recall == 1.0


def test_top_k_is_capped_by_the_number_of_classes():
    two = hand_made_predictions(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ["cat", "dog"])
    metrics = evaluation.compute_metrics(two)
    assert (metrics.k, metrics.top_k_accuracy, metrics.accuracy) == (2, 1.0, 0.75)
    assert list(metrics.headline()) == ["Overall accuracy", "Top-2 accuracy", "Average precision", "Average recall"]


def test_compare_gives_b_minus_a_for_each_summary_number():
    a = evaluation.compute_metrics(hand_made_predictions())
    b = evaluation.compute_metrics(hand_made_predictions(predicted=LABELS))
    rows = evaluation.compare(a, b)
    assert [row.metric for row in rows] == ["Overall accuracy", "Top-5 accuracy", "Average precision", "Average recall"]
    assert rows[0] == (rows[0].metric, pytest.approx(9 / 16), 1.0, pytest.approx(7 / 16))
    assert all(row.delta == pytest.approx(row.b - row.a) for row in rows)


# ---------------------------------------------------------------- confusion matrix and its views


def test_confusion_matrix_equals_scikit_learns_with_every_class():
    predictions = hand_made_predictions()
    expected = skm.confusion_matrix(LABELS, PREDICTED, labels=range(7))
    assert (predictions.confusion_matrix() == expected).all()


def test_heatmap_z_is_log_of_count_plus_one_over_the_row_total():
    cm = np.array([[8, 1, 1], [0, 0, 0], [3, 0, 5]])
    fig = figures.confusion_heatmap(cm, ["a", "b", "c"])
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.allclose(z[0], np.log(np.array([9, 2, 2]) / 10))
    assert np.allclose(z[2], np.log(np.array([4, 1, 6]) / 8))
    assert np.isnan(z[1]).all()  # no test images of "b": nothing to show
    assert np.allclose(evaluation.log_confusion(cm)[1], 0.0)  # the formula divides an empty row by 1
    with np.errstate(divide="ignore"):
        notebook = np.log(np.divide(cm + 1.0, np.sum(cm, axis=1)))  # divides column j by row j's total
    assert not np.allclose(notebook[[0, 2]], z[[0, 2]])
    assert list(fig.data[0].y) == ["a", "b", "c"] and list(fig.data[0].x) == ["a", "b", "c"]
    assert "Log count" in fig.data[0].colorbar.title.text


def test_ordered_heatmap_keeps_original_indices_for_clicks():
    rng = np.random.default_rng(1)
    cm = rng.integers(0, 9, size=(5, 5))
    cm[1, 3] = 0  # an empty cell gets no clickable marker
    names = ["v", "w", "x", "y", "z"]
    order = [3, 0, 4, 1, 2]
    trace = figures.confusion_heatmap(cm, names, order=order).data[0]
    z, data = np.asarray(trace.z, dtype=float), np.asarray(trace.customdata)
    expected = evaluation.log_confusion(cm)
    for r, i in enumerate(order):
        assert trace.y[r] == names[i]
        for c, j in enumerate(order):
            assert z[r, c] == pytest.approx(expected[i, j])
            assert tuple(data[r, c, :3]) == (i, j, cm[i, j])
            assert data[r, c, 3] == pytest.approx(cm[i, j] / cm[i].sum())
            point = {"x": names[j], "y": names[i], "customdata": data[r, c].tolist()}
            assert figures.selected_cell({"points": [point]}) == (i, j)
    clickable = figures.confusion_heatmap(cm, names, order=order).data[1]
    cells = {(int(i), int(j), int(count)) for i, j, count, _ in np.asarray(clickable.customdata)}
    assert cells == {(i, j, cm[i, j]) for i in range(5) for j in range(5) if cm[i, j]}
    for x, y, (i, j, _, _) in zip(clickable.x, clickable.y, np.asarray(clickable.customdata)):
        assert (y, x) == (names[int(i)], names[int(j)])
    as_object = {"points": [{"customdata": {"0": 4.0, "1": 2.0, "2": 7.0, "3": 0.5}}]}
    assert figures.selected_cell(as_object) == (4, 2)
    assert figures.selected_cell({"points": []}) is None and figures.selected_cell(None) is None


def test_heatmap_for_many_classes_serialises():
    n = 120
    cm = np.random.default_rng(2).poisson(0.2, size=(n, n)) + np.diag(np.full(n, 30))
    fig = figures.confusion_heatmap(cm, [f"breed {i}" for i in range(n)], evaluation.cluster_order(cm))
    assert fig.layout.height >= 1000 and fig.layout.xaxis.type == "category"
    assert '"type":"heatmap"' in fig.to_json().replace(" ", "")


def test_repeated_class_names_keep_their_own_rows():
    trace = figures.confusion_heatmap(np.eye(3, dtype=int), ["dog", "dog", "cat"]).data[0]
    assert len(set(trace.y)) == 3


def test_most_confused_lists_off_diagonal_cells_by_count():
    cm = np.array([[5, 2, 0], [4, 1, 1], [2, 0, 9]])
    assert evaluation.most_confused(cm, ["a", "b", "c"]) == [("b", "a", 4), ("a", "b", 2), ("c", "a", 2), ("b", "c", 1)]
    assert evaluation.most_confused(cm, ["a", "b", "c"], min_count=2) == [("b", "a", 4), ("a", "b", 2), ("c", "a", 2)]
    assert evaluation.most_confused(np.diag([3, 4]), ["a", "b"]) == []


def test_cell_examples_are_exactly_the_cell_most_confident_first():
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # 0: true 0 -> 0
            [0.3, 0.6, 0.1],  # 1: true 0 -> 1
            [0.1, 0.8, 0.1],  # 2: true 0 -> 1
            [0.1, 0.5, 0.4],  # 3: true 2 -> 1
            [0.2, 0.7, 0.1],  # 4: true 1 -> 1
            [0.45, 0.5, 0.05],  # 5: true 0 -> 1
        ],
        dtype=np.float32,
    )
    labels = np.array([0, 0, 0, 2, 1, 0])
    predictions = Predictions(probabilities, labels, ["a", "b", "c"], np.array([10, 11, 12, 13, 14, 15]))
    cell = evaluation.cell_examples(predictions, true_class=0, predicted_class=1)
    assert [example.index for example in cell] == [12, 11, 15]
    assert cell[0] == (12, pytest.approx(0.8), pytest.approx(0.1))
    assert [e.index for e in evaluation.cell_examples(predictions, 0, 0)] == [10]
    assert evaluation.cell_examples(predictions, 1, 0) == []
    total = sum(len(evaluation.cell_examples(predictions, i, j)) for i in range(3) for j in range(3))
    assert total == len(labels)


def test_top_losses_are_the_least_probable_true_classes():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]], dtype=np.float32)
    predictions = Predictions(probabilities, np.array([0, 0, 1, 1]), ["cat", "dog"], np.arange(4))
    worst = evaluation.top_losses(predictions, k=3)
    assert [loss.index for loss in worst] == [1, 2, 0]
    assert worst[0] == (1, pytest.approx(-np.log(0.2)), "cat", "dog", pytest.approx(0.8))
    assert worst[1][2:4] == ("dog", "cat")
    assert len(evaluation.top_losses(predictions, k=16)) == 4


def test_cluster_order_puts_confused_classes_side_by_side():
    cm = np.diag([20] * 6)
    for a, b, n in ((0, 4, 6), (4, 0, 5), (1, 5, 4), (2, 3, 3)):
        cm[a, b] = n
    order = evaluation.cluster_order(cm)
    assert sorted(order) == list(range(6))
    for a, b in ((0, 4), (1, 5), (2, 3)):
        assert abs(order.index(a) - order.index(b)) == 1
    assert evaluation.cluster_order(np.zeros((1, 1))) == [0]


def test_recall_order_puts_the_worst_classes_first_and_empty_ones_last():
    cm = np.array([[9, 1, 0], [0, 0, 0], [5, 0, 5]])
    assert evaluation.recall_order(cm) == [2, 0, 1]
    assert set(evaluation.ORDERINGS) >= {"Class order"}
    assert all(sorted(order(cm)) == [0, 1, 2] for order in evaluation.ORDERINGS.values())


@pytest.mark.parametrize(
    "a, b, difference",
    [
        (DataConfig(), DataConfig(seed=3), None),  # the demo's whole test split does not depend on the seed
        (
            DataConfig(source="tfds:cifar10", max_test_images=50),
            DataConfig(source="tfds:cifar10", max_test_images=50, seed=3),
            None,
        ),  # TFDS takes the first 50
        (DataConfig(), DataConfig(source="folder:/dogs10"), "data source demo vs folder:/dogs10"),
        (DataConfig(max_test_images=27), DataConfig(), "test images 27 vs all"),
        (DataConfig(max_test_images=27), DataConfig(max_test_images=27, seed=1), "data seed 0 vs 1"),
        (DataConfig(source="folder:/dogs10"), DataConfig(source="folder:/dogs10", seed=1), "data seed 0 vs 1"),
        (
            DataConfig(source="folder:/dogs10"),
            DataConfig(source="folder:/dogs10", test_fraction=0.3),
            "test fraction 0.2 vs 0.3",
        ),
        (
            DataConfig(source="tfds:stanford_dogs"),
            DataConfig(source="demo", max_test_images=9),
            "data source tfds:stanford_dogs vs demo; test images all vs 9",
        ),
    ],
)
def test_runs_are_compared_only_on_the_same_test_images(a, b, difference):
    assert evaluation.data_split_difference(a, b) == difference
    assert (evaluation.data_split_difference(b, a) is None) == (difference is None)


def _predictions(labels, class_names=("a", "b", "c")) -> Predictions:
    labels = np.asarray(labels, np.int64)
    probabilities = np.full((len(labels), len(class_names)), 1 / len(class_names), np.float32)
    return Predictions(probabilities, labels, list(class_names), np.arange(len(labels)))


def test_predictions_over_other_images_are_told_apart():
    same = _predictions([0, 1, 2, 2])
    assert evaluation.predictions_difference(same, _predictions([0, 1, 2, 2])) is None
    assert "classes differ" in evaluation.predictions_difference(same, _predictions([0, 1, 2, 2], ("a", "b", "d")))
    assert evaluation.predictions_difference(same, _predictions([0, 1, 2])) == "4 vs 3 test images"
    assert "labels differ" in evaluation.predictions_difference(same, _predictions([0, 1, 2, 1]))

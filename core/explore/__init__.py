"""Explore: a dataset's images in a backbone's feature space, to see why transfer learning works and fix the data.

The Explore page calls these; each module is one step of what it shows:

- ``settings``: ``MapSettings``, the map's frozen, validated settings (features, projection, perplexity, size, seed).
- ``features``: ``FEATURE_SOURCES`` (ImageNet Lite0, the same with random weights, a run's backbone) and
  ``map_features``, one pooled feature vector per train and test image through the feature cache.
- ``projections``: ``PROJECTIONS`` (PCA, t-SNE) and ``project``, cached on disk by features, method and parameters.
- ``separability``: the kNN accuracy (cosine, k = 5, test against train, in the full feature space) beside a map.
- ``neighbours``: the training images nearest to a point (cosine).
- ``selection``: the rows, files and classes behind the points selected on the map; thumbnails.
- ``evidence``: a run's predictions on the map's rows (its mistakes marked).
- ``fixing``: relabel or remove images of a dataset made in the app, retrain a head on the features in seconds.

Importing this package loads neither TensorFlow nor scikit-learn: the functions that need them import them.
"""

from core.explore.evidence import RunOnMap, run_on_map
from core.explore.features import FEATURE_SOURCES, MapFeatures, carried_over, map_features
from core.explore.fixing import HEAD_EPOCHS, Change, FixOutcome, HeadResult, fix_and_retrain, ref_of, retrain_head
from core.explore.neighbours import Neighbour, nearest_training
from core.explore.projections import PROJECTIONS, project, projection_key
from core.explore.selection import Selected, describe_rows, selected_rows, thumbnail
from core.explore.separability import chance, knn_accuracy, knn_predictions
from core.explore.settings import MapSettings

__all__ = [
    "FEATURE_SOURCES",
    "HEAD_EPOCHS",
    "PROJECTIONS",
    "Change",
    "FixOutcome",
    "HeadResult",
    "MapFeatures",
    "MapSettings",
    "Neighbour",
    "RunOnMap",
    "Selected",
    "carried_over",
    "chance",
    "describe_rows",
    "fix_and_retrain",
    "knn_accuracy",
    "knn_predictions",
    "map_features",
    "nearest_training",
    "project",
    "projection_key",
    "ref_of",
    "retrain_head",
    "run_on_map",
    "selected_rows",
    "thumbnail",
]

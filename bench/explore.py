"""The Explore page's costs on real photos: maps, a neighbour query, a head retrained, and the separability numbers.

On ``../shared/datasets/dogs10`` (1,100 photos of ten breeds, 800 train and 300 test) at 224 px with
EfficientNet-Lite0, in a fresh data directory:

1. the features of every image through the ImageNet backbone and through the same network with random weights
   are extracted into the feature cache first (not timed; ``extract_s`` says how long it took);
2. ``pca_map_s`` and ``tsne_map_s``: ``core.explore.project`` of the ImageNet features, computed (not from the
   projection cache), as the page does the first time a map is asked for (goals: 1 s and 30 s);
3. ``neighbours_ms``: one image's nearest training images (``nearest_training``, cosine), the median of
   ``QUERIES`` queries after a first one (goal: 50 ms);
4. ``head_retrain_s``: the frozen regime's head trained for 10 epochs on the ImageNet features and measured on
   the test images (``retrain_head``, what fix-and-retrain runs twice; goal: 5 s), with its ``head_accuracy``;
5. ``knn_accuracy_imagenet`` and ``knn_accuracy_random``: k-nearest-neighbour accuracy (cosine, k = 5, test
   against train, in the full 1280-d space): the first must be far above the second.

``load_before`` / ``load_after``: the 1-minute load average, since other work on a shared machine slows it all.
Prints one JSON line. Run: ``python -m bench.explore`` (about two minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DOGS10 = ROOT.parent / "shared" / "datasets" / "dogs10"
SIZE = 224
QUERIES = 50


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DOGS10, help="a folder with train/ and test/ class folders")
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"{args.photos} is not here: the bench needs the shared dogs10 photos (or --photos FOLDER).")
    with tempfile.TemporaryDirectory(prefix="bench-explore-") as home:
        os.environ["TRANSFER_LAB_HOME"] = home
        from core import explore
        from core.config import DataConfig

        data = DataConfig(source=f"folder:{args.photos}")
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        maps = {
            name: explore.map_features(data, explore.MapSettings(features=name, image_size=args.size))
            for name in ("imagenet", "random")
        }
        extract_s = time.perf_counter() - started
        imagenet = maps["imagenet"]
        _, pca_s = timed(explore.project, imagenet, explore.MapSettings(method="PCA", image_size=args.size))
        _, tsne_s = timed(explore.project, imagenet, explore.MapSettings(method="t-SNE", image_size=args.size))
        test_rows = [int(row) for row in range(len(imagenet)) if imagenet.is_test[row]]
        explore.nearest_training(imagenet, test_rows[0])
        queries = [timed(explore.nearest_training, imagenet, row)[1] for row in test_rows[1 : QUERIES + 1]]
        head, head_s = timed(explore.retrain_head, imagenet)
        result = {
            "bench": "explore",
            "photos": len(imagenet),
            "image_size": args.size,
            "extract_s": round(extract_s, 1),
            "pca_map_s": round(pca_s, 3),
            "tsne_map_s": round(tsne_s, 2),
            "neighbours_ms": round(1000 * statistics.median(queries), 2),
            "head_retrain_s": round(head_s, 2),
            "head_accuracy": round(head.accuracy, 3),
            "knn_accuracy_imagenet": round(explore.knn_accuracy(imagenet), 3),
            "knn_accuracy_random": round(explore.knn_accuracy(maps["random"]), 3),
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

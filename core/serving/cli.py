"""The predict command line: classify photos and folders, one JSON line per file.

``python -m core.serving --run RUN_ID photo.jpg folder/`` or ``--imagenet-dogs``. Files that cannot be
read get an error line and the exit status stays 0, so a script can classify a folder of mixed files in
one go; bad flags exit 2 with argparse's usage line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.catalog import TOP_K
from core.errors import TransferLabError
from core.images import is_image_path
from core.serving.classification import BATCH_SIZE, iter_classify
from core.serving.classifiers import CHECKPOINTS, classifier_for_run, imagenet_dog_classifier

PROG = "python -m core.serving"
DESCRIPTION = (
    "Classify photos with a trained run or with the ImageNet dog-breed classifier (no training). "
    'Prints one JSON line per file: {"file": ..., "top5": [{"label": ..., "probability": '
    '...}, ...]} or {"file": ..., "error": ...}. Files that cannot be read get an error line; '
    "the exit status is still 0."
)


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders become their image files (any depth, hidden ones skipped), sorted."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            expanded.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and is_image_path(p)
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            expanded.append(path)
    return expanded


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--run", metavar="RUN_ID", help="Classify with this training run's saved model (see the Runs page for ids)."
    )
    which.add_argument(
        "--imagenet-dogs",
        action="store_true",
        help="Classify with EfficientNet-Lite0's ImageNet classifier restricted to the 120 "
        "Stanford Dogs breeds (no training needed, works offline).",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="FILE_OR_FOLDER",
        help="Image files and/or folders; folders are searched for image files "
        "(JPEG, PNG, WebP, BMP, GIF, TIFF), in sorted order.",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=TOP_K,
        metavar="K",
        help=f"How many classes to list per file, most probable first (default {TOP_K}); the JSON key is top<K>.",
    )
    parser.add_argument(
        "--checkpoint",
        choices=CHECKPOINTS,
        default="best",
        help="With --run: the model with the best validation accuracy (default; falls back "
        "to the last one) or the one saved after the last finished epoch.",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        metavar="N",
        help=f"Images per model call (default {BATCH_SIZE}); lower it if memory is short.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1 (got {args.top_k}).")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1 (got {args.batch_size}).")
    files = expand_paths(args.paths)
    if not files:
        parser.error("no image files found in " + ", ".join(args.paths) + ".")
    try:
        classifier = imagenet_dog_classifier() if args.imagenet_dogs else classifier_for_run(args.run, args.checkpoint)
    except TransferLabError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    for note in classifier.notes:
        print(f"note: {note}", file=sys.stderr)
    key = f"top{args.top_k}"
    for result in iter_classify(classifier, files, args.top_k, batch_size=args.batch_size):
        print(json.dumps(result.to_dict(key), ensure_ascii=False), flush=True)
    return 0

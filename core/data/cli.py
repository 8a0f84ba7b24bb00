"""``python -m core.data --download NAME``: the Data page's Download button, from a terminal.

Progress lines on stdout; a one-line error on stderr and exit status 2 when offline or the name is unknown.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from core.data.tfds import TFDS_TEST_SPLITS, download_tfds
from core.errors import TransferLabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.data",
        description="Download and prepare a TFDS dataset, as the Data page's Download button does: into "
        "$TFDS_DATA_DIR when set, else the app's data directory (datasets/tfds). "
        f"Known to the app: {', '.join(TFDS_TEST_SPLITS)}.",
    )
    parser.add_argument(
        "--download",
        metavar="NAME",
        required=True,
        help="The TFDS dataset to download, e.g. stanford_dogs (about 750 MB).",
    )
    return parser


def print_progress(done: int, total: int, message: str) -> None:
    print(f"[{done}/{total}] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Progress lines on stdout; a one-line error on stderr and exit status 2 when offline or unknown."""
    parser = build_parser()
    name = parser.parse_args(argv).download
    try:
        path = download_tfds(name, progress=print_progress)
    except TransferLabError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"Ready in {path}", flush=True)
    return 0

"""The one data directory for everything the app writes.

``$TRANSFER_LAB_HOME`` (default ``./.transfer-lab``) holds ``runs.sqlite``, ``runs/<id>/``,
``cache/`` (converted weights, features) and ``datasets/`` (the generated demo set, TFDS data).
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """The data directory, created on first use."""
    home = Path(os.environ.get("TRANSFER_LAB_HOME", ".transfer-lab")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def subdir(*parts: str) -> Path:
    """A folder under the data directory (``subdir('cache', 'weights')``), created on first use."""
    path = data_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path

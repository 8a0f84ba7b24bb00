"""Checks a run's settings before the run exists, so a mistake is one line, not a failed run.

Everything a run would fail on and can be known cheaply is checked here: the fine-tune parent, the starting
weights (a file is opened and its header read), and the data (a TFDS name and whether it is prepared, a
folder's classes and a few decodable images of each). Both the CLI and the Train page call ``check_run``
right before ``runs.start_run``; what it cannot know (a Keras file whose layers do not fit, an image that
breaks mid-dataset) still fails the run with its message.
"""

from __future__ import annotations

from core import data, models, runs
from core.config import RunConfig


def check_run(config: RunConfig) -> list[str]:
    """Raise the typed error the run would fail with, when it can be known now; else return its warnings.

    Never draws the demo set, downloads, or decodes more than a few images per class.
    """
    runs.check_parent(config)
    models.check_weights(config.model)
    return data.check_source(config.data)

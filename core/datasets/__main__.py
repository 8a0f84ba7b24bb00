"""Runs the command line of ``core.datasets.cli``: ``python -m core.datasets list``."""

import sys

from core.datasets.cli import main

if __name__ == "__main__":
    sys.exit(main())

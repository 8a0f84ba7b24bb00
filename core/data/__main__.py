"""Runs the command line of ``core.data.cli``: ``python -m core.data --download stanford_dogs``."""

import sys

from core.data.cli import main

if __name__ == "__main__":
    sys.exit(main())

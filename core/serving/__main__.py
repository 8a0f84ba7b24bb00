"""``python -m core.serving``: the predict command line (see ``core.serving.cli``)."""

import sys

from core.serving.cli import main

if __name__ == "__main__":
    sys.exit(main())

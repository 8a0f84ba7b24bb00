"""``python -m core.training ...``: the command line (``cli``)."""

import sys

from core.training.cli import main

sys.exit(main())

"""``python -m core.exports``: the export command line (see ``core.exports.cli``)."""

import os
import sys

from core.exports.cli import main

if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # like the worker: never hang on a tf.data iterator at shutdown

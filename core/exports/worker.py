"""``python -m core.exports.worker --run ID --format NAME ...``: a conversion away from the app's script thread.

Started detached by ``jobs.start_exports``; everything it does is recorded in the formats' status files. It ends
with ``os._exit`` once they are written: an ordinary interpreter shutdown can hang on a ``tf.data`` iterator.
"""

from __future__ import annotations

import argparse
import os
import sys

from core.errors import TransferLabError
from core.exports.jobs import convert


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m core.exports.worker")
    parser.add_argument("--run", required=True)
    parser.add_argument("--format", action="append", required=True)
    args = parser.parse_args()
    code = 0
    try:
        convert(args.run, args.format, lambda done, total, message: print(message, flush=True))
    except TransferLabError as error:  # already in the status files; the log says it too
        print(error, flush=True)
        code = 1
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

"""The export command line: ``python -m core.exports --run ID --format tflite-int8`` (or ``--format all``).

Converts in the foreground (the Train page shows its progress too), then prints one verification line per
format and where its zip is. Exit status: 0 when every format converted (a flagged one is printed as FLAGGED),
1 when one failed, 2 when the run or the format cannot be exported (one line saying why).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from core.errors import TransferLabError
from core.exports.formats import ALL, FORMATS
from core.exports.jobs import DONE, convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.exports",
        description="Export a finished run as SavedModel, TFLite (float32, float16, int8) or ONNX, each verified "
        "against the Keras model on the run's test split.",
    )
    parser.add_argument("--run", required=True, help="the run's id (the Train page's runs table, or the run store)")
    parser.add_argument(
        "--format",
        action="append",
        required=True,
        choices=[*FORMATS, ALL],
        help="repeat for several; all for every one",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the verification lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def progress(done: int, total: int, message: str) -> None:
        if not args.quiet:
            print(f"[{done:3d}%] {message}", file=sys.stderr, flush=True)

    try:
        states = convert(args.run, args.format, progress)
    except TransferLabError as error:
        print(error, file=sys.stderr)
        return 2
    for state in states:
        if state.state == DONE and state.report is not None:
            print(f"{state.report.line()} -> {state.archive}")
        else:
            print(f"{state.export_format.name}: {state.state}: {state.error}")
    return 0 if all(state.state == DONE for state in states) else 1

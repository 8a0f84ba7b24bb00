"""``python -m core.datasets list | import NAME ZIP | export NAME OUT.zip``: the Data page's dataset tools, from a
terminal (importing a big zip on a server, backing a dataset up).

The report on stdout, progress on stderr; an error is one sentence on stderr and exit status 1 (2 when the data
directory cannot be written, as for the other command lines).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.datasets.archives import dataset_zip
from core.datasets.ingest import import_zip
from core.datasets.store import create_dataset, exists, list_datasets, source_of
from core.errors import DataHomeUnavailable, TransferLabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.datasets",
        description="List, import and export the datasets made in the app (data source local:NAME).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="Each dataset with its classes and image counts.")
    importing = commands.add_parser("import", help="Add a zip's images to a dataset, creating it if needed.")
    importing.add_argument("name", help="The dataset's name.")
    importing.add_argument("zip", type=Path, help="A zip of class folders (optionally under train/ and test/).")
    exporting = commands.add_parser("export", help="Write a dataset as a zip that imports back the same.")
    exporting.add_argument("name", help="The dataset's name.")
    exporting.add_argument("out", type=Path, help="The zip file to write.")
    return parser


def print_progress(done: int, total: int, message: str) -> None:
    if done == total or done % 50 == 0:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> None:
    if args.command == "list":
        found_any = list_datasets()
        if not found_any:
            print("No datasets yet: create one on the Data page, or `python -m core.datasets import NAME photos.zip`.")
        for found in found_any:
            classes = ", ".join(f"{c} ({found.counts[c]})" for c in found.class_names) or "no classes"
            print(f"{source_of(found.name)}: {found.total} images; {classes}")
            for warning in found.warnings:
                print(f"  warning: {warning}")
    elif args.command == "import":
        if not exists(args.name):
            create_dataset(args.name)
        report = import_zip(args.name, args.zip, progress=print_progress)
        print(report.message())
        for _, reason in report.rejected:
            print(f"  {reason}")
    else:
        data = dataset_zip(args.name)
        args.out.write_bytes(data)
        print(f"Wrote {args.out} ({len(data):,} bytes).")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except DataHomeUnavailable as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except TransferLabError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    except OSError as error:
        parser.exit(1, f"{parser.prog}: error: {error.filename or ''} cannot be used: {error.strerror}.\n")
    return 0

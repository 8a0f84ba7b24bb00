"""Train from the command line, in the foreground, into the same run store the dashboard reads.

    python -m core.training --dataset demo --regime frozen --epochs 3 --image-size 64 --weights none
    python -m core.training --regime finetune --parent 20250101-120000-abc123 --epochs 2

One progress line per epoch; the last line on stdout is one JSON object with ``run_id``, ``status``
and the final epoch's metrics. An instructor can train on a GPU machine while the dashboard, pointed
at the same ``$TRANSFER_LAB_HOME``, watches. If another run is training, this one waits its turn.
In a multi-worker cluster (``TF_CONFIG``) start the same command on every worker; the chief records.

Settings, weights and data are checked before the run is created (``core.preflight``): a mistake found
there is one line on stderr, exit code 2, and no run in the store; warnings about the data (skipped files,
unbalanced classes) are printed to stderr before training starts.

Exit codes: 0 completed or stopped, 1 failed, 2 bad flags, settings, weights or data (or a data
directory that cannot be written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from core import runs
from core.allocator import use_pooled_cpu_allocator
from core.catalog import BACKBONES, DEFAULT_AUGMENT_PRESET, REGIMES, WEIGHT_CHOICES_HELP
from core.config import (
    AUGMENT_PRESETS,
    DATA_SOURCE_HELP,
    MIXED_PRECISION_CHOICES,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from core.errors import TransferLabError
from core.preflight import check_run
from core.runs import METRICS, finetune_config

PROG = "python -m core.training"

# flag -> (config section, field); a flag left out keeps the default (or, for a fine-tune, the parent's value).
# A flag is named after its field, but for the three at the end.
FLAGS: dict[str, tuple[str, str]] = {
    **{
        name: (section, name)
        for section, names in (
            ("data", ("max_train_images", "max_test_images")),
            ("model", ("backbone", "regime", "weights", "image_size", "drop_connect_rate", "top_dropout")),
            ("model", ("unfreeze_top_layers", "unfreeze_from_block")),
            ("train", ("epochs", "batch_size", "learning_rate", "weight_decay", "mixed_precision", "seed")),
            ("train", ("feature_cache", "cached_views")),
        )
        for name in names
    },
    "dataset": ("data", "source"),
    "data_seed": ("data", "seed"),
    "parent": ("model", "parent_run_id"),
}


def parser() -> argparse.ArgumentParser:
    regimes = "; ".join(
        f"{r.name}: {r.label.lower()} (lr {r.learning_rate:g}, weight decay {r.weight_decay:g}, {r.epochs} epochs)"
        for r in REGIMES.values()
    )
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="Empty settings take the regime's defaults: " + regimes + ".",
    )
    data = p.add_argument_group("data")
    data.add_argument("--dataset", metavar="SOURCE", help=f"{DATA_SOURCE_HELP} Default: demo.")
    data.add_argument("--max-train-images", type=int, metavar="N", help="Use at most N training images.")
    data.add_argument("--max-test-images", type=int, metavar="N", help="Use at most N test images.")
    data.add_argument("--data-seed", type=int, metavar="N", help="Fixes the split and the subset (default 0).")
    data.add_argument(
        "--augment",
        choices=sorted(AUGMENT_PRESETS),
        metavar="PRESET",
        help=f"Augmentation preset: {', '.join(sorted(AUGMENT_PRESETS))} (default {DEFAULT_AUGMENT_PRESET}).",
    )
    model = p.add_argument_group("model")
    model.add_argument(
        "--backbone",
        choices=list(BACKBONES),
        metavar="NAME",
        help=f"One of {', '.join(BACKBONES)} (default EfficientNetB0).",
    )
    model.add_argument("--regime", choices=list(REGIMES), help="How to train (default frozen; see below).")
    model.add_argument("--weights", metavar="imagenet|none|PATH", help=WEIGHT_CHOICES_HELP)
    model.add_argument(
        "--image-size", type=int, metavar="PX", help="Input size in pixels (default: the backbone's native resolution)."
    )
    model.add_argument("--drop-connect-rate", type=float, metavar="R", help="Stochastic depth rate (default 0.2).")
    model.add_argument("--top-dropout", type=float, metavar="R", help="Head dropout, frozen regime (default 0.2).")
    model.add_argument("--parent", metavar="RUN_ID", help="finetune: the frozen run to continue.")
    model.add_argument("--unfreeze-top-layers", type=int, metavar="K", help="finetune: top K layers (default 20).")
    model.add_argument("--unfreeze-from-block", type=int, metavar="N", help="finetune: whole blocks N..7 instead.")
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, metavar="N", help="Epochs (default: the regime's).")
    train.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="Global batch size (default: the machine's: 32 on a CPU; on a GPU 64 from scratch, 128 frozen or "
        "fine-tune, halved under 12 GB, times the number of GPUs).",
    )
    train.add_argument("--learning-rate", type=float, metavar="LR", help="Adam's learning rate (default: regime's).")
    train.add_argument(
        "--weight-decay", type=float, metavar="WD", help="Adam's weight decay, 0 for none (default: regime's)."
    )
    train.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION_CHOICES,
        help="GPU/TPU only (default auto: mixed_float16 on a GPU with compute capability 7.0 or newer, else off).",
    )
    train.add_argument("--seed", type=int, metavar="N", help="Training seed (default 0).")
    train.add_argument(
        "--feature-cache",
        action=argparse.BooleanOptionalAction,
        help="frozen: train the head on backbone features extracted once (default on); "
        "--no-feature-cache runs every image through the backbone every epoch, the notebook's way.",
    )
    train.add_argument(
        "--cached-views",
        type=int,
        metavar="K",
        help="frozen with the feature cache: augmented views extracted per image (default 5).",
    )
    p.add_argument("--name", help="Run name shown in the dashboard (default: made from the settings).")
    return p


def build_config(args: argparse.Namespace) -> RunConfig:
    """The run config the flags describe; a fine-tune starts from its parent's data, augmentation and network."""
    given = {flag: value for flag, value in vars(args).items() if value is not None}
    if given.get("parent") and "regime" not in given:
        given["regime"] = "finetune"
    base = finetune_config(given["parent"]) if given.get("regime") == "finetune" and given.get("parent") else None
    sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    for flag, (section, name) in FLAGS.items():
        if flag in given:
            sections[section][name] = given[flag]
    augment = AUGMENT_PRESETS[given.get("augment", DEFAULT_AUGMENT_PRESET)]
    if base is None:
        return RunConfig(
            name=given.get("name", ""),
            data=DataConfig(**sections["data"]),
            augment=augment,
            model=ModelConfig(**sections["model"]),
            train=TrainConfig(**sections["train"]),
        )
    return RunConfig(
        name=given.get("name", ""),
        data=base.data.replace(**sections["data"]),
        augment=augment if "augment" in given else base.augment,
        model=base.model.replace(**sections["model"]),
        train=base.train.replace(**sections["train"]),
    )


def _printer() -> Any:
    last = {"message": None}

    def progress(done: int, total: int, message: str) -> None:
        if message != last["message"] or done >= total:
            print(message if message.startswith("epoch") else f"[{done}/{total}] {message}", flush=True)
            last["message"] = message

    return progress


def main(argv: Sequence[str] | None = None) -> int:
    use_pooled_cpu_allocator()  # before anything imports TensorFlow
    args = parser().parse_args(argv)
    try:
        config = build_config(args)
    except TransferLabError as error:  # bad settings, a missing run, an unusable data directory
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    try:
        warnings = check_run(config)
    except TransferLabError as error:
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr, flush=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from core.training.engine import train_foreground

    print(f"Training {config.display_name()}: " + json.dumps(runs.config_summary(config)), flush=True)
    try:
        outcome = train_foreground(
            config, progress=_printer(), waiting=lambda text: print(text, file=sys.stderr, flush=True)
        )
    except KeyboardInterrupt:
        print(json.dumps({"run_id": None, "status": runs.INTERRUPTED}), flush=True)
        return 130
    except TransferLabError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    result = {
        "run_id": outcome.run_id,
        "status": outcome.status,
        **{name: outcome.metrics.get(name) for name in METRICS},
    }
    if outcome.error:
        result["error"] = outcome.error
        print(f"Run failed: {outcome.error}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 1 if outcome.status == runs.FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

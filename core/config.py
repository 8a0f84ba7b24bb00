"""Frozen, validated configurations: the one thing passed across module boundaries.

A config is built once (from widgets on a page, or from flags in a CLI), validated in
``__post_init__`` with messages a learner understands, stored with a run as JSON, and handed whole
to ``core``. Numeric limits and widget labels live in each field's metadata so that pages can
generate their widgets from the dataclass and the messages name the same things the UI shows.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from core.errors import ConfigError
from core.models import BACKBONES, DEFAULT_BACKBONE, DEFAULT_REGIME, REGIMES, WEIGHT_CHOICES_HELP


def setting(default: Any, label: str, help: str = "", *, min: float | None = None,
            max: float | None = None, step: float | None = None, choices: tuple | None = None,
            optional: bool = False, log: bool = False, group: str | None = None) -> Any:
    """A dataclass field that carries what a widget and a validator need to know about it.

    ``group`` ties fields that a page shows together (an on/off switch and its strength sliders).
    """
    meta = {"label": label, "help": help, "min": min, "max": max, "step": step,
            "choices": choices, "optional": optional, "log": log, "group": group}
    return field(default=default, metadata=meta)


class Config:
    """Mixin: range/choice validation from field metadata, and JSON round-trips."""

    nested: ClassVar[Mapping[str, type]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            meta = f.metadata
            if "label" not in meta:
                continue
            value = getattr(self, f.name)
            label = meta["label"]
            if value is None:
                if not meta["optional"]:
                    raise ConfigError(f"{label} needs a value.")
                continue
            if meta["choices"] is not None and value not in meta["choices"]:
                allowed = ", ".join(repr(c) for c in meta["choices"])
                raise ConfigError(f"{label} must be one of {allowed} (got {value!r}).")
            if meta["min"] is not None or meta["max"] is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{label} must be a number (got {value!r}).")
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"{label} must be a finite number (got {value!r}).")
                low, high = meta["min"], meta["max"]
                if (low is not None and value < low) or (high is not None and value > high):
                    raise ConfigError(
                        f"{label} must be between {_fmt(low)} and {_fmt(high)} (got {_fmt(value)})."
                    )
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"Unknown setting(s) for {cls.__name__}: {', '.join(sorted(unknown))}.")
        values = {}
        for key, value in data.items():
            sub = cls.nested.get(key)
            values[key] = sub.from_dict(value) if sub is not None and isinstance(value, Mapping) else value
        return cls(**values)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any):
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_query(self) -> str:
        """The fields that differ from the defaults, as compact JSON: short enough to live in a page's URL,
        so a browser refresh keeps what the user chose."""
        default = type(self)().to_dict()
        changed = {key: value for key, value in self.to_dict().items() if default.get(key) != value}
        return json.dumps(changed, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_query(cls, text: str):
        """The inverse of ``to_query``; ConfigError for text that is not one (a hand-edited URL)."""
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"{text[:80]!r} is not a saved {cls.__name__}.") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{text[:80]!r} is not a saved {cls.__name__}.")
        try:
            return cls.from_dict(data)
        except TypeError as error:
            raise ConfigError(f"{text[:80]!r} is not a saved {cls.__name__}: {error}") from None


def log_steps(low: float, high: float, mantissas: tuple[int, ...] = (1, 2, 3, 5)) -> list[float]:
    """The values a log-scale setting (a learning rate) steps through: 1, 2, 3, 5 per decade, so one step
    multiplies or divides by about 1.5-2 instead of adding a fixed amount."""
    steps = [float(f"{m}e{e}") for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
             for m in mantissas]
    return [value for value in steps if low <= value <= high]


def format_log_step(value: float) -> str:
    """1e-4, 3e-5, 0.01 -> 1e-2: how learning rates are written in the notebook."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "any"
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.0e}"
    return f"{value:g}" if isinstance(value, float) else str(value)


DATA_SOURCE_HELP = (
    "'demo' (built in, works offline), 'tfds:stanford_dogs' (or another TFDS image dataset), "
    "or 'folder:/path/to/photos' with one sub-folder per class."
)


@dataclass(frozen=True)
class DataConfig(Config):
    """Where the images come from and how much of them to use."""

    source: str = setting("demo", "Data source", DATA_SOURCE_HELP)
    max_train_images: int | None = setting(
        None, "Training images (at most)", "Use a subset for quick runs; empty means all.",
        min=1, max=10_000_000, optional=True)
    max_test_images: int | None = setting(
        None, "Test images (at most)", "Use a subset for quick runs; empty means all.",
        min=1, max=10_000_000, optional=True)
    test_fraction: float = setting(
        0.2, "Test fraction", "For folders without train/ and test/ sub-folders.", min=0.05, max=0.9)
    seed: int = setting(0, "Data seed", "Fixes the split and the subset.", min=0, max=2**31 - 1)

    def validate(self) -> None:
        kind, _, rest = self.source.partition(":")
        if self.source == "demo":
            return
        if kind in ("tfds", "folder") and rest.strip():
            return
        raise ConfigError(f"Data source {self.source!r} is not understood. Use {DATA_SOURCE_HELP}")

    @property
    def kind(self) -> str:
        """'demo', 'tfds' or 'folder'."""
        return self.source.partition(":")[0]

    @property
    def location(self) -> str:
        """The TFDS name or folder path after the prefix ('' for demo)."""
        return self.source.partition(":")[2].strip()

    def summary(self) -> str:
        parts = [self.source]
        if self.max_train_images:
            parts.append(f"≤{self.max_train_images} train")
        if self.max_test_images:
            parts.append(f"≤{self.max_test_images} test")
        return ", ".join(parts)


# ------------------------------------------------------------------------------- model and training
# The backbone and regime tables live in core.models (TensorFlow-free at import); the choices below
# come from them, so adding a backbone is one row there.

MIXED_PRECISION_CHOICES = ("off", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class ModelConfig(Config):
    """Which network, trained which way. ``None`` means "the regime's or backbone's default"."""

    backbone: str = setting(DEFAULT_BACKBONE, "Backbone", "EfficientNet B0 (smallest, fastest) to B7 (largest).",
                            choices=tuple(BACKBONES))
    regime: str = setting(DEFAULT_REGIME, "Training regime",
                          "scratch: all weights learn from random; frozen: only a new head learns on ImageNet "
                          "features; finetune: continue a frozen run with its top layers unfrozen.",
                          choices=tuple(REGIMES))
    weights: str | None = setting(None, "Starting weights",
                                  WEIGHT_CHOICES_HELP + " Empty: the regime's default.", optional=True)
    image_size: int | None = setting(None, "Image size (pixels)",
                                     "Empty: the backbone's native resolution (224 for B0). Smaller trains "
                                     "much faster on a CPU.", min=32, max=1024, step=8, optional=True)
    drop_connect_rate: float = setting(0.2, "Stochastic depth rate",
                                       "EfficientNet's drop_connect_rate: randomly skips blocks while training. "
                                       "Higher regularises more.", min=0.0, max=0.9, step=0.05)
    top_dropout: float = setting(0.2, "Head dropout", "Dropout before the new classifier (frozen regime).",
                                 min=0.0, max=0.9, step=0.05)
    unfreeze_top_layers: int = setting(20, "Layers to unfreeze",
                                       "Fine-tuning: how many layers from the top become trainable (batch "
                                       "normalisation layers always stay frozen).", min=1, max=1000)
    unfreeze_from_block: int | None = setting(None, "Unfreeze from block",
                                              "Fine-tuning: unfreeze whole blocks N..7 and the top instead of "
                                              "a layer count.", min=1, max=7, optional=True)
    parent_run_id: str | None = setting(None, "Frozen run to fine-tune",
                                        "Fine-tuning continues the saved model of this frozen run.",
                                        optional=True)

    def validate(self) -> None:
        for name in ("image_size", "unfreeze_top_layers", "unfreeze_from_block"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                label = type(self).__dataclass_fields__[name].metadata["label"]
                raise ConfigError(f"{label} must be a whole number (got {value!r}).")
        if self.weights is not None and not self.weights.strip():
            raise ConfigError(f"Starting weights must be {WEIGHT_CHOICES_HELP} (got an empty text).")
        if self.regime == "scratch" and self.weights not in (None, "none"):
            raise ConfigError(f"Training from scratch starts from random weights, so Starting weights must be "
                              f"empty or 'none' (got {self.weights!r}). To start from ImageNet, choose the "
                              "frozen regime.")
        if self.regime == "finetune":
            if not self.parent_run_id:
                raise ConfigError("Fine-tuning continues a finished frozen run: choose it in "
                                  "'Frozen run to fine-tune'.")
            if self.weights is not None:
                raise ConfigError(f"Fine-tuning starts from the frozen run's saved model, so leave Starting "
                                  f"weights empty (got {self.weights!r}).")
        elif self.parent_run_id:
            raise ConfigError(f"Only fine-tuning continues another run: clear 'Frozen run to fine-tune' "
                              f"(got {self.parent_run_id!r}) or choose the finetune regime.")

    def summary(self) -> str:
        parts = [self.backbone, REGIMES[self.regime].label.lower()]
        if self.image_size:
            parts.append(f"{self.image_size} px")
        if self.regime == "finetune":
            parts.append(f"from block {self.unfreeze_from_block}" if self.unfreeze_from_block
                         else f"top {self.unfreeze_top_layers} layers")
        return ", ".join(parts)


@dataclass(frozen=True)
class TrainConfig(Config):
    """How long and how fast to train. ``None`` means "the regime's default" (see core.models.REGIMES)."""

    epochs: int | None = setting(None, "Epochs", "Passes over the training images. Empty: the regime's "
                                 "default (the notebook's 30, or 10 for fine-tuning).", min=1, max=1000,
                                 optional=True)
    batch_size: int = setting(32, "Batch size", "Images per training step, over all devices together.",
                              min=1, max=4096)
    learning_rate: float | None = setting(None, "Learning rate", "Empty: the regime's default (1e-3 scratch, "
                                          "1e-4 frozen, 1e-5 fine-tune).", min=1e-7, max=1.0, optional=True,
                                          log=True)
    weight_decay: float | None = setting(None, "Weight decay", "Adam's decoupled weight decay; 0 for none. "
                                         "Empty: the regime's default.", min=0.0, max=1.0, optional=True)
    mixed_precision: str = setting("off", "Mixed precision", "Faster on recent GPUs; ignored on a CPU.",
                                   choices=MIXED_PRECISION_CHOICES)
    seed: int = setting(0, "Training seed", "Fixes the initial weights and the shuffling order.",
                        min=0, max=2**31 - 1)
    feature_cache: bool = setting(True, "Cached features (fast)",
                                  "Frozen regime: run the backbone once per image (per augmented view) and train "
                                  "the head on the stored features, seconds per epoch instead of minutes. Off: "
                                  "the notebook's way, every image through the whole backbone in every epoch, "
                                  "with fresh augmentation each time.", choices=(True, False), group="feature_cache")
    cached_views: int = setting(5, "Augmented views per image",
                                "With cached features and augmentation on: how many augmented versions of each "
                                "training image are extracted; epoch e trains on version e mod this number. More "
                                "views regularise more but take longer to extract.", min=1, max=20,
                                group="feature_cache")

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "seed", "cached_views"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                label = type(self).__dataclass_fields__[name].metadata["label"]
                raise ConfigError(f"{label} must be a whole number (got {value!r}).")
        if not isinstance(self.feature_cache, bool):
            raise ConfigError(f"Cached features (fast) must be switched on (True) or off (False) "
                              f"(got {self.feature_cache!r}).")

    def summary(self) -> str:
        parts = [f"batch {self.batch_size}"]
        if self.epochs:
            parts.insert(0, f"{self.epochs} epochs")
        if self.learning_rate is not None:
            parts.append(f"lr {self.learning_rate:g}")
        if self.mixed_precision != "off":
            parts.append(self.mixed_precision)
        return ", ".join(parts)

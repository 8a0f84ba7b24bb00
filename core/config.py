"""Frozen, validated configurations: the one thing passed across module boundaries.

A config is built once (from widgets on a page, or from flags in a CLI), validated in
``__post_init__`` with messages a learner understands, stored with a run as JSON, and handed whole
to ``core``. Numeric limits and widget labels live in each field's metadata so that pages can
generate their widgets from the dataclass and the messages name the same things the UI shows.

It is longer than most modules because it is one concept, a run's settings: the ``Config`` mixin that validates
and stores them from their field metadata, and the four configs ``RunConfig`` nests, one field per setting the app
offers (``AugmentConfig``'s fields are made from the catalog's ``TRANSFORMS`` rows).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.catalog import (
    ALL_TRANSFORMS_OFF,
    AUGMENT_PRESET_CHANGES,
    BACKBONES,
    DEFAULT_BACKBONE,
    DEFAULT_REGIME,
    LIVE_DEMO,
    LIVE_DEMO_ON_OWN_DATA,
    REGIMES,
    TRANSFORMS,
    WEIGHT_CHOICES_HELP,
    Regime,
    Transform,
)
from core.errors import ConfigError
from core.machine_defaults import MachineDefaults, this_machine


def setting(
    default: Any,
    label: str,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    step: float | None = None,
    choices: tuple | None = None,
    optional: bool | None = None,
    log: bool = False,
    group: str | None = None,
) -> Any:
    """A dataclass field that carries what a widget and a validator need to know about it.

    ``optional``: the field may be empty (None), which means "the regime's or backbone's default"; by default
    exactly the fields whose default is None. ``group`` ties fields that a page shows together (an on/off switch
    and its strength sliders).
    """
    meta = {
        "label": label,
        "help": help,
        "min": min,
        "max": max,
        "step": step,
        "choices": choices,
        "optional": default is None if optional is None else optional,
        "log": log,
        "group": group,
    }
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
                    raise ConfigError(f"{label} must be between {_fmt(low)} and {_fmt(high)} (got {_fmt(value)}).")
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
    steps = [
        float(f"{m}e{e}")
        for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for m in mantissas
    ]
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
    "'folder:/path/to/photos' with one sub-folder per class, or 'local:<name>' for a dataset made on the Data page."
)


def image_limit(label: str) -> Any:
    """A setting for how many images of a split to use at most (empty: all)."""
    return setting(None, label, "Use a subset for quick runs; empty means all.", min=1, max=10_000_000)


@dataclass(frozen=True)
class DataConfig(Config):
    """Where the images come from and how much of them to use."""

    source: str = setting("demo", "Data source", DATA_SOURCE_HELP)
    max_train_images: int | None = image_limit("Training images (at most)")
    max_test_images: int | None = image_limit("Test images (at most)")
    test_fraction: float = setting(
        0.2, "Test fraction", "For folders without train/ and test/ sub-folders.", min=0.05, max=0.9
    )
    seed: int = setting(0, "Data seed", "Fixes the split and the subset.", min=0, max=2**31 - 1)

    def validate(self) -> None:
        kind, _, rest = self.source.partition(":")
        if self.source == "demo":
            return
        if kind in ("tfds", "folder", "local") and rest.strip():
            return
        raise ConfigError(f"Data source {self.source!r} is not understood. Use {DATA_SOURCE_HELP}")

    @property
    def kind(self) -> str:
        """'demo', 'tfds', 'folder' or 'local' (a dataset made in the app, kept under the data directory)."""
        return self.source.partition(":")[0]

    @property
    def location(self) -> str:
        """The TFDS name, folder path or dataset name after the prefix ('' for demo)."""
        return self.source.partition(":")[2].strip()

    def summary(self) -> str:
        parts = [self.source]
        if self.max_train_images:
            parts.append(f"≤{self.max_train_images} train")
        if self.max_test_images:
            parts.append(f"≤{self.max_test_images} test")
        return ", ".join(parts)


# ------------------------------------------------------------------------------- augmentation


def transform_fields(rows: tuple[Transform, ...]) -> Callable[[type], type]:
    """A class decorator for under ``@dataclass``: adds every field of ``rows`` (``Transform.fields``: a switch,
    then strengths and options), grouped under its row's key, before the fields the class declares itself."""

    def add_fields(cls: type) -> type:
        added = {}
        for row in rows:
            for spec in row.fields():
                added[spec.name] = type(spec.default).__name__
                meta = dict(min=spec.min, max=spec.max, step=spec.step, choices=spec.choices, group=row.key)
                setattr(cls, spec.name, setting(spec.default, spec.label, spec.help, **meta))
        cls.__annotations__ = {**added, **cls.__dict__.get("__annotations__", {})}
        return cls

    return add_fields


@dataclass(frozen=True)
@transform_fields(TRANSFORMS)
class AugmentConfig(Config):
    """Which random transformations are applied to training images, and how strongly.

    The defaults are the notebook's four layers. A transformation that is switched off, or whose
    strength is at its neutral value (0, or factor 1 for down-sampling), leaves images untouched.

    The fields come from the rows of ``core.catalog.TRANSFORMS``, in pipeline order: for each row its switch
    ``<key>_on`` (``rotation_on``...), then its strengths (``rotation``, ``translation_height``...) and options
    (``flip_mode``), with their defaults, labels, help and limits; ``seed`` comes last.
    """

    seed: int = setting(0, "Augmentation seed", "The same seed gives the same previews.", min=0, max=2**31 - 1, step=1)

    def validate(self) -> None:
        for row in TRANSFORMS:
            value = getattr(self, row.switch)
            if not isinstance(value, bool):
                raise ConfigError(f"{_label(row.switch)} must be switched on (True) or off (False) (got {value!r}).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"{_label('seed')} must be a whole number (got {self.seed!r}).")

    @property
    def active_transforms(self) -> list:
        """The catalog rows that change images with these settings, in pipeline order."""
        return [row for row in TRANSFORMS if row.is_active(self)]

    def enabled_transforms(self) -> list[str]:
        """Human names of the transformations that change images, in pipeline order."""
        return [row.name for row in self.active_transforms]

    def only(self, switch: str) -> AugmentConfig:
        """These settings with every transformation but the one behind ``switch`` turned off."""
        return dataclasses.replace(self, **{**ALL_TRANSFORMS_OFF, switch: True})

    def recipe(self) -> tuple:
        """What the settings actually do: the active transformations and their strengths (seed aside)."""
        return tuple(
            (row.key, tuple(getattr(self, f) for f in row.strengths + row.options)) for row in self.active_transforms
        )

    def matching_preset(self) -> str | None:
        """The preset that does the same thing (ignoring the seed and switched-off sliders)."""
        recipe = self.recipe()
        return next((name for name, preset in AUGMENT_PRESETS.items() if preset.recipe() == recipe), None)

    def summary(self) -> str:
        """One line, e.g. 'notebook preset: rotation 0.15, translation 0.1/0.1, flip both, contrast 0.1'."""
        parts = [row.describe(self) for row in self.active_transforms]
        preset = self.matching_preset()
        return f"{preset + ' preset' if preset else 'custom'}: {', '.join(parts) or 'no augmentation'}"


def _label(name: str) -> str:
    return AugmentConfig.__dataclass_fields__[name].metadata["label"]


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    name: AugmentConfig(**changes) for name, changes in AUGMENT_PRESET_CHANGES.items()
}
"""The catalog's augmentation presets as configs; 'notebook' (the course notebook's four layers) is the default."""


# ------------------------------------------------------------------------------- model and training
# The choices below come from the catalog's tables, so adding a backbone is one row there.

MIXED_PRECISION_CHOICES = ("auto", "off", "mixed_float16", "mixed_bfloat16")
"""'auto' is the machine's default (``core.machine_defaults``): mixed_float16 on a GPU with tensor cores, else off."""


@dataclass(frozen=True)
class ModelConfig(Config):
    """Which network, trained which way. ``None`` means "the regime's or backbone's default"."""

    backbone: str = setting(
        DEFAULT_BACKBONE, "Backbone", "EfficientNet B0 (smallest, fastest) to B7 (largest).", choices=tuple(BACKBONES)
    )
    regime: str = setting(
        DEFAULT_REGIME,
        "Training regime",
        "; ".join(f"{row.name}: {row.label.lower()}" for row in REGIMES.values()) + ".",
        choices=tuple(REGIMES),
    )
    weights: str | None = setting(None, "Starting weights", WEIGHT_CHOICES_HELP + " Empty: the regime's default.")
    image_size: int | None = setting(
        None,
        "Image size (pixels)",
        "Empty: the backbone's native resolution (224 for B0). Smaller trains much faster on a CPU.",
        min=32,
        max=1024,
        step=8,
    )
    drop_connect_rate: float = setting(
        0.2,
        "Stochastic depth rate",
        "EfficientNet's drop_connect_rate: randomly skips blocks while training. Higher regularises more.",
        min=0.0,
        max=0.9,
        step=0.05,
    )
    top_dropout: float = setting(
        0.2, "Head dropout", "Dropout before the new classifier (frozen regime).", min=0.0, max=0.9, step=0.05
    )
    unfreeze_top_layers: int = setting(
        20,
        "Layers to unfreeze",
        "Fine-tuning: how many layers from the top become trainable (batch normalisation layers always stay frozen).",
        min=1,
        max=1000,
    )
    unfreeze_from_block: int | None = setting(
        None,
        "Unfreeze from block",
        "Fine-tuning: unfreeze whole blocks N..7 and the top instead of a layer count.",
        min=1,
        max=7,
    )
    parent_run_id: str | None = setting(
        None, "Frozen run to fine-tune", "Fine-tuning continues the saved model of this frozen run."
    )

    def validate(self) -> None:
        for name in ("image_size", "unfreeze_top_layers", "unfreeze_from_block"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                label = type(self).__dataclass_fields__[name].metadata["label"]
                raise ConfigError(f"{label} must be a whole number (got {value!r}).")
        if self.weights is not None and not self.weights.strip():
            raise ConfigError(f"Starting weights must be {WEIGHT_CHOICES_HELP} (got an empty text).")
        if self.regime == "scratch" and self.weights not in (None, "none"):
            raise ConfigError(
                f"Training from scratch starts from random weights, so Starting weights must be "
                f"empty or 'none' (got {self.weights!r}). To start from ImageNet, choose the "
                "frozen regime."
            )
        if self.regime == "finetune":
            if not self.parent_run_id:
                raise ConfigError(
                    "Fine-tuning continues a finished frozen run: choose it in 'Frozen run to fine-tune'."
                )
            if self.weights is not None:
                raise ConfigError(
                    f"Fine-tuning starts from the frozen run's saved model, so leave Starting "
                    f"weights empty (got {self.weights!r})."
                )
        elif self.parent_run_id:
            raise ConfigError(
                f"Only fine-tuning continues another run: clear 'Frozen run to fine-tune' "
                f"(got {self.parent_run_id!r}) or choose the finetune regime."
            )

    @property
    def effective_image_size(self) -> int:
        """The input size a run uses: the configured one, else the backbone's native resolution."""
        return self.image_size or BACKBONES[self.backbone].resolution

    @property
    def effective_weights(self) -> str | None:
        """'imagenet', 'none', a path, or None for fine-tuning (weights come from the parent run)."""
        return self.weights if self.weights is not None else REGIMES[self.regime].weights

    def summary(self) -> str:
        parts = [self.backbone, REGIMES[self.regime].label.lower()]
        if self.image_size:
            parts.append(f"{self.image_size} px")
        if self.regime == "finetune":
            parts.append(
                f"from block {self.unfreeze_from_block}"
                if self.unfreeze_from_block
                else f"top {self.unfreeze_top_layers} layers"
            )
        return ", ".join(parts)


@dataclass(frozen=True)
class TrainConfig(Config):
    """How long and how fast to train. ``None`` means "the regime's default" (``RunConfig.effective_*``)."""

    epochs: int | None = setting(
        None,
        "Epochs",
        "Passes over the training images. Empty: the regime's default (the notebook's 30, or 10 for fine-tuning).",
        min=1,
        max=1000,
    )
    batch_size: int | None = setting(
        None,
        "Batch size",
        "Images per training step, over all devices together. Empty: this machine's default (32 on a CPU, "
        "larger on a GPU).",
        min=1,
        max=4096,
    )
    learning_rate: float | None = setting(
        None,
        "Learning rate",
        "Empty: the regime's default (1e-3 scratch, 1e-4 frozen, 1e-5 fine-tune).",
        min=1e-7,
        max=1.0,
        log=True,
    )
    weight_decay: float | None = setting(
        None,
        "Weight decay",
        "Adam's decoupled weight decay; 0 for none. Empty: the regime's default.",
        min=0.0,
        max=1.0,
        step=0.001,
    )
    mixed_precision: str = setting(
        "auto",
        "Mixed precision",
        "Faster on recent GPUs; ignored on a CPU. auto: this machine's default (mixed_float16 on a GPU with "
        "tensor cores, else off).",
        choices=MIXED_PRECISION_CHOICES,
    )
    seed: int = setting(0, "Training seed", "Fixes the initial weights and the shuffling order.", min=0, max=2**31 - 1)
    feature_cache: bool = setting(
        True,
        "Cached features (fast)",
        "Frozen regime: run the backbone once per image (per augmented view) and train "
        "the head on the stored features, seconds per epoch instead of minutes. Off: "
        "the notebook's way, every image through the whole backbone in every epoch, "
        "with fresh augmentation each time.",
        choices=(True, False),
        group="feature_cache",
    )
    cached_views: int = setting(
        5,
        "Augmented views per image",
        "With cached features and augmentation on: how many augmented versions of each "
        "training image are extracted; epoch e trains on version e mod this number. More "
        "views regularise more but take longer to extract.",
        min=1,
        max=20,
        group="feature_cache",
    )

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "seed", "cached_views"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                label = type(self).__dataclass_fields__[name].metadata["label"]
                raise ConfigError(f"{label} must be a whole number (got {value!r}).")
        if not isinstance(self.feature_cache, bool):
            raise ConfigError(
                f"Cached features (fast) must be switched on (True) or off (False) (got {self.feature_cache!r})."
            )

    def summary(self) -> str:
        parts = [f"batch {self.batch_size if self.batch_size is not None else 'auto'}"]
        if self.epochs:
            parts.insert(0, f"{self.epochs} epochs")
        if self.learning_rate is not None:
            parts.append(f"lr {self.learning_rate:g}")
        if self.mixed_precision not in ("off", "auto"):
            parts.append(self.mixed_precision)
        return ", ".join(parts)


# ------------------------------------------------------------------------------- a whole run


@dataclass(frozen=True)
class RunConfig(Config):
    """Everything that defines a run; stored with it as JSON."""

    nested: ClassVar[Mapping[str, type]] = {
        "data": DataConfig,
        "augment": AugmentConfig,
        "model": ModelConfig,
        "train": TrainConfig,
    }

    name: str = setting("", "Run name", "Shown in the run list. Empty: made from the settings.")
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if len(self.name) > 200:
            raise ConfigError(f"Run name must be at most 200 characters (got {len(self.name)}).")

    def display_name(self) -> str:
        return self.name.strip() or (f"{self.model.regime} {self.model.backbone} {self.model.effective_image_size}px")

    @property
    def regime_defaults(self) -> Regime:
        """The catalog row of this run's regime: where the defaults below come from."""
        return REGIMES[self.model.regime]

    @property
    def effective_learning_rate(self) -> float:
        return self.train.learning_rate if self.train.learning_rate is not None else self.regime_defaults.learning_rate

    @property
    def effective_weight_decay(self) -> float:
        return self.train.weight_decay if self.train.weight_decay is not None else self.regime_defaults.weight_decay

    @property
    def effective_epochs(self) -> int:
        return self.train.epochs if self.train.epochs is not None else self.regime_defaults.epochs

    @property
    def effective_batch_size(self) -> int:
        """The configured batch size, else this machine's default for the regime (32 on a CPU)."""
        return self.resolved().train.batch_size

    @property
    def effective_mixed_precision(self) -> str:
        """The configured precision, with 'auto' replaced by this machine's default ('off' on a CPU)."""
        return self.resolved().train.mixed_precision

    def resolved(self, machine: MachineDefaults | None = None) -> RunConfig:
        """This config with the machine's defaults written in: what a run stores when it is created, so a run
        made on a GPU and shown on a CPU says the batch size and precision it used, and a resume on another
        machine keeps them."""
        machine = machine or this_machine()
        train = self.train
        batch = train.batch_size if train.batch_size is not None else machine.batch_size(self.model.regime)
        precision = train.mixed_precision if train.mixed_precision != "auto" else machine.mixed_precision
        if (batch, precision) == (train.batch_size, train.mixed_precision):
            return self
        return self.replace(train=train.replace(batch_size=batch, mixed_precision=precision))


def live_demo_preset(chosen: DataConfig) -> tuple[DataConfig, dict[str, dict[str, Any]]]:
    """The live demo's data and its changes to ``ModelConfig``/``TrainConfig`` for the Data page's choice: a
    dataset made in the app is used as chosen (a learner's own photos are the point), anything else is swapped
    for the demo set's quick subset."""
    if chosen.kind == "local":
        return chosen, LIVE_DEMO_ON_OWN_DATA
    return DataConfig(**LIVE_DEMO["data"]), LIVE_DEMO

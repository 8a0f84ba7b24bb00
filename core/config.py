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

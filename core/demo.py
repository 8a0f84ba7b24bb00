"""The built-in offline dataset: drawn shapes, so the whole app works with no network.

Each image is a function of (class, split, index): the same call always draws the same picture, at
any requested size. Shapes get a random colour, scale, position and rotation over a cluttered,
noisy background, and some classes look alike (circle / ring / crescent, square / hexagon), so the
task is easy for a pretrained backbone but not solved by one epoch of training from scratch.
The set is written once per size as PNG files in the Stanford Dogs folder layout under
``datasets/`` in the data directory, then read like any other folder.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.data_home import subdir
from core.progress import Progress

DEMO_VERSION = 1
TRAIN_PER_CLASS = 150
TEST_PER_CLASS = 50
SPLIT_SEEDS = {"train": 1, "test": 2}
STAGING_STALE_AFTER_S = 24 * 3600
"""A staging folder this old is a leftover even if its process id looks alive (ids are reused); drawing the
largest set takes minutes."""


def _polygon(n: int, radius: float, phase: float = 0.0) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star(radius: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        angle = -math.pi / 2 + math.pi * k / 5
        points.append((r * math.cos(angle), r * math.sin(angle)))
    return points


def _cross(radius: float) -> list[tuple[float, float]]:
    a, b = radius, radius * 0.33
    return [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]


def _arrow(radius: float) -> list[tuple[float, float]]:
    a, b = radius, radius * 0.3
    return [(-a, -b), (0.1 * a, -b), (0.1 * a, -0.7 * a), (a, 0), (0.1 * a, 0.7 * a), (0.1 * a, b), (-a, b)]


# One row per class, in alphabetical order (the order a folder of class sub-folders is read in):
# (name, outline in unit coordinates or a special kind).
SHAPES: list[tuple[str, Callable[[float], list[tuple[float, float]]] | str]] = [
    ("arrow", _arrow),
    ("circle", "circle"),
    ("crescent", "crescent"),
    ("cross", _cross),
    ("hexagon", lambda r: _polygon(6, r)),
    ("ring", "ring"),
    ("square", lambda r: _polygon(4, r, math.pi / 4)),
    ("star", _star),
    ("triangle", lambda r: _polygon(3, r, -math.pi / 2)),
]
CLASS_NAMES = [name for name, _ in SHAPES]


def _rotate(points: list[tuple[float, float]], angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def render(class_index: int, split: str, index: int, size: int) -> Image.Image:
    """Draw one example: deterministic in (class, split, index), any size."""
    rng = np.random.default_rng([DEMO_VERSION, SPLIT_SEEDS[split], class_index, index])
    scale = 4 if size < 128 else 2  # draw large, then shrink: smooth edges at every size
    big = size * scale
    top, bottom = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    ramp = np.linspace(0.0, 1.0, big)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(background, (big, big, 3)).copy())
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):  # clutter: lines and dots that belong to no class
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, big, size=4))
        draw.line([(x0, y0), (x1, y1)], fill=_random_colour(rng), width=int(rng.integers(1, 4) * scale))
    for _ in range(int(rng.integers(2, 6))):
        x, y = (float(v) for v in rng.uniform(0, big, size=2))
        r = float(rng.uniform(0.02, 0.06)) * big
        draw.ellipse([x - r, y - r, x + r, y + r], fill=_random_colour(rng))

    radius = float(rng.uniform(0.18, 0.36)) * big
    cx, cy = (float(v) for v in rng.uniform(radius, big - radius, size=2))
    angle = float(rng.uniform(0, 2 * math.pi))
    colour = _random_colour(rng)
    name, outline = SHAPES[class_index]
    if outline == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif outline == "ring":
        draw.ellipse(
            [cx - radius, cy - radius, cx + radius, cy + radius],
            outline=colour,
            width=max(1, int(radius * float(rng.uniform(0.25, 0.4)))),
        )
    elif outline == "crescent":
        mask = Image.new("L", (big, big), 0)
        mdraw = ImageDraw.Draw(mask)
        mdraw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        ox, oy = 0.5 * radius * math.cos(angle), 0.5 * radius * math.sin(angle)
        mdraw.ellipse([cx + ox - radius, cy + oy - radius, cx + ox + radius, cy + oy + radius], fill=0)
        image.paste(Image.new("RGB", (big, big), colour), (0, 0), mask)
    else:
        draw.polygon(_rotate(outline(radius), angle, cx, cy), fill=colour)

    image = image.resize((size, size), Image.Resampling.LANCZOS)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0)) * size / 64))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, float(rng.uniform(4, 20)), size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def file_name(class_index: int, index: int) -> str:
    return f"{CLASS_NAMES[class_index]}_{index:04d}.png"


def split_items(root: Path, split: str) -> list[tuple[Path, int]]:
    """Every (file, label) of a split, known without drawing anything."""
    per_class = TRAIN_PER_CLASS if split == "train" else TEST_PER_CLASS
    return [
        (root / split / name / file_name(label, i), label)
        for label, name in enumerate(CLASS_NAMES)
        for i in range(per_class)
    ]


def render_file(path: Path, size: int) -> Image.Image:
    """Draw the example that ``path`` (from ``split_items``) names, without reading it from disk."""
    split, name = path.parent.parent.name, path.parent.name
    return render(CLASS_NAMES.index(name), split, int(path.stem.rsplit("_", 1)[1]), size)


def folder_path(size: int) -> Path:
    return subdir("datasets") / f"demo-v{DEMO_VERSION}-{size}px"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()) or "host"


def staging_prefix(root: Path) -> str:
    """``demo-v1-96px.<host>.<pid>.``: a staging folder names who draws into it, so leftovers can be told apart."""
    return f"{root.name}.{_host()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(root: Path) -> list[Path]:
    """Delete the staging folders of ``root`` left by drawings that were killed; returns what was removed.

    A folder whose process (on this host) is gone is removed at once; any other one (another host, a name
    without a process id) only once it is older than ``STAGING_STALE_AFTER_S``.
    """
    pattern = re.compile(re.escape(root.name) + r"\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?[^.]+$")
    removed = []
    for candidate in root.parent.glob(root.name + ".*"):
        match = pattern.match(candidate.name)
        if match is None or not candidate.is_dir() or candidate.is_symlink():
            continue
        try:
            age = time.time() - candidate.stat().st_mtime
        except OSError:
            continue
        gone = match["pid"] is not None and match["host"] == _host() and not _alive(int(match["pid"]))
        if gone or age > STAGING_STALE_AFTER_S:
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def demo_folder(size: int, progress: Progress | None = None) -> Path:
    """The demo set at ``size`` px as a folder with ``train/`` and ``test/``; written on first use.

    Writing goes to a temporary folder that is renamed into place at the end, so an interrupted
    generation never leaves a half-written set that would later be read as complete; one killed before it
    could clean up is removed here, the next time the set is opened or drawn.
    """
    root = folder_path(size)
    remove_stale_staging(root)
    if (root / "COMPLETE").exists():
        return root
    total = len(CLASS_NAMES) * (TRAIN_PER_CLASS + TEST_PER_CLASS)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(root), dir=root.parent))
    done = 0
    try:
        for split in SPLIT_SEEDS:
            for path, _ in split_items(staging, split):
                path.parent.mkdir(parents=True, exist_ok=True)
                render_file(path, size).save(path)
                done += 1
                if progress and (done % 50 == 0 or done == total):
                    progress(done, total, f"Drawing the demo dataset at {size} px")
        (staging / "COMPLETE").write_text(f"demo v{DEMO_VERSION}\n")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root

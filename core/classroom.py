"""Classroom mode: many learners on one server, told apart by the name each browser picks, without accounts.

Off unless ``TRANSFER_LAB_CLASSROOM`` is set (``make run CLASSROOM=1``), so a single user sees no difference.
In a class every run and every dataset made in the app belongs to the learner who made it (the name is kept in
the page's URL, so a refresh keeps it; two browsers that pick the same name are the same learner). The instructor
is whoever knows the class's instructor code (``python -m core.classroom``, printed by ``make run CLASSROOM=1``):
they set the class's limits here, which every launch by a learner is checked against, and may stop or delete
any run. The limits live in ``classroom.json`` in the data directory, so the app, the CLI and the training
workers all read the same ones.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from core.config import Config, RunConfig, setting
from core.data_home import cannot_write, data_home, home_path
from core.errors import ConfigError, TransferLabError

CLASSROOM_ENV = "TRANSFER_LAB_CLASSROOM"
SETTINGS_FILE = "classroom.json"
NAME_MAX = 24
_NAME_CHARS = re.compile(r"^[\w][\w .'-]*$")


def enabled() -> bool:
    """Is this server running a class? (``TRANSFER_LAB_CLASSROOM=1``, set by ``make run CLASSROOM=1``)."""
    return os.environ.get(CLASSROOM_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Learner:
    """Who is using this browser in a class: the name they picked, and whether they gave the instructor code."""

    name: str
    instructor: bool = False

    def owns(self, owner: str | None) -> bool:
        """Names compare without case: 'Ada' and 'ada' are one learner."""
        return owner is not None and owner.casefold() == self.name.casefold()


def learner_name(text: str) -> str:
    """A display name as typed, tidied (spaces collapsed); ConfigError, in words, for one that cannot be used."""
    name = " ".join(unicodedata.normalize("NFC", text or "").split())
    if not name:
        raise ConfigError("Type the name you want the class to see, for example 'Ada' or 'Table 3'.")
    if len(name) > NAME_MAX:
        raise ConfigError(f"Keep your name to {NAME_MAX} characters (it has {len(name)}).")
    if not _NAME_CHARS.match(name):
        raise ConfigError(
            "Use letters, digits, spaces, dots, apostrophes, hyphens or underscores in your name, "
            "starting with a letter or digit."
        )
    return name


@dataclass(frozen=True)
class ClassLimits(Config):
    """What one learner may ask of the shared server; the instructor sets them on the class board."""

    max_queued_per_learner: int = setting(
        2,
        "Runs waiting per learner",
        "How many runs each learner may have waiting in the class queue at once (the one training does not "
        "count). Runs start round-robin across learners, so a long list only makes one learner wait longer.",
        min=1,
        max=36,
        step=1,
    )
    max_image_size: int | None = setting(
        None,
        "Largest image size (px)",
        "Runs with larger images are refused. Leave empty for no limit; 96-160 px keep a class of thirty on "
        "one CPU server moving.",
        min=32,
        max=600,
        step=8,
    )
    max_epochs: int | None = setting(
        None,
        "Most epochs per run",
        "Runs with more epochs are refused. Leave empty for no limit.",
        min=1,
        max=500,
        step=1,
    )

    def check(self, config: RunConfig, queued: int) -> None:
        """ConfigError, naming the limit and the fix, for a run a learner may not queue in this class;
        ``queued`` is how many runs the learner already has waiting."""
        if queued >= self.max_queued_per_learner:
            raise ConfigError(
                f"You already have {queued} run(s) waiting in the class queue, the most the instructor allows "
                f"({self.max_queued_per_learner}). Wait until one starts, or stop one on the Train page's Runs tab."
            )
        size = config.model.effective_image_size
        if self.max_image_size is not None and size > self.max_image_size:
            raise ConfigError(
                f"In this class runs use images of at most {self.max_image_size} px (the instructor's limit), and "
                f"this one would use {size} px: set the image size to {self.max_image_size} or less."
            )
        if self.max_epochs is not None and config.effective_epochs > self.max_epochs:
            raise ConfigError(
                f"In this class runs train at most {self.max_epochs} epoch(s) (the instructor's limit), and this "
                f"one asks for {config.effective_epochs}: lower the epochs."
            )

    def summary(self) -> str:
        parts = [f"{self.max_queued_per_learner} waiting run(s) per learner"]
        if self.max_image_size is not None:
            parts.append(f"images up to {self.max_image_size} px")
        if self.max_epochs is not None:
            parts.append(f"up to {self.max_epochs} epoch(s)")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- stored settings


def settings_path() -> Path:
    return home_path() / SETTINGS_FILE


def _read() -> dict:
    try:
        data = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict) -> None:
    """Whole or not at all: a new file renamed over the old one, readable only by this user (it holds the code)."""
    folder = data_home()
    partial = folder / f".{SETTINGS_FILE}.{secrets.token_hex(4)}"
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(partial, folder / SETTINGS_FILE)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise cannot_write(folder, error) from error


def limits() -> ClassLimits:
    """The class's limits; the defaults when none were set (or the file was damaged)."""
    try:
        return ClassLimits.from_dict(_read().get("limits", {}))
    except (ConfigError, TypeError):
        return ClassLimits()


def set_limits(new: ClassLimits) -> None:
    _write({**_read(), "limits": dataclasses.asdict(new)})


def instructor_code() -> str:
    """The class's instructor code, made on first use and kept in ``classroom.json``."""
    code = _read().get("instructor_code")
    if isinstance(code, str) and code:
        return code
    code = secrets.token_hex(3)
    _write({**_read(), "instructor_code": code})
    return code


def is_instructor_code(text: str | None) -> bool:
    """Does ``text`` match the class's code? (A constant-time comparison: the code is the only key.)"""
    if not text:
        return False
    return hmac.compare_digest(text.strip().lower().encode(), instructor_code().encode())


# ---------------------------------------------------------------------------------------------- the command line


def main(argv: list[str] | None = None) -> int:
    """``python -m core.classroom [--max-queued N] [--max-image-size PX|none] [--max-epochs N|none]``: print the
    instructor code and the class's limits, after changing the limits given."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m core.classroom", description=main.__doc__)
    parser.add_argument("--max-queued", type=int, help="runs each learner may have waiting")
    parser.add_argument("--max-image-size", help="largest image size in px, or 'none'")
    parser.add_argument("--max-epochs", help="most epochs per run, or 'none'")
    args = parser.parse_args(argv)
    changes: dict = {}
    if args.max_queued is not None:
        changes["max_queued_per_learner"] = args.max_queued
    for flag, name in (("max_image_size", "max_image_size"), ("max_epochs", "max_epochs")):
        text = getattr(args, flag)
        if text is not None:
            changes[name] = None if text.strip().lower() == "none" else int(text) if text.strip().isdigit() else text
    try:
        if changes:
            set_limits(limits().replace(**changes))
        print(f"Instructor code: {instructor_code()} (type it on the Class board page)")
        print(f"Class limits: {limits().summary()}")
    except TransferLabError as error:
        print(error)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

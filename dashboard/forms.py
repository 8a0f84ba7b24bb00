"""Widgets generated from a config dataclass's field metadata.

A field declared with ``core.config.setting(...)`` carries its label, help, range, step, choices, whether it
may be empty (``optional``: empty means "the regime's or backbone's default") and whether it moves on a log
scale; this module turns it into the matching widget, so adding a setting to a config adds its widget and a
limit or a label is written once, in the config. Widget keys are ``<prefix>_<field>`` unless a page keeps an
older key; ``load_into_widgets`` pushes a config's values into those keys (for presets).

The widget a field gets:

- on/off (a bool): a toggle;
- choices: a select box, or a row of buttons (``buttons=True``); a page may offer fewer (``choices=``);
- a log-scale number (a learning rate): a select slider over ``core.config.log_steps`` (1, 2, 3, 5 per decade);
- a number that may be empty, or has too many steps to slide through: a number box (empty allowed when
  the field is optional and starts empty);
- another number: a slider;
- anything else: a text box (empty gives None for an optional field).

The starting value comes from ``current``, a config: a page that starts somewhere else than the config's
defaults (the regime's learning rate, the live demo's epochs) builds a config with those values and passes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import streamlit as st

from core.config import format_log_step, log_steps

LOG_HELP = "On a log scale: each step multiplies by about 1.5-2."
MAX_SLIDER_STEPS = 200  # more positions than this and a number box is easier than a slider


def setting_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "label" in f.metadata]


def widget_key(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


def load_into_widgets(config: Any, prefix: str) -> None:
    """Make the widgets show ``config`` on the next render (used when a preset is picked)."""
    for f in setting_fields(type(config)):
        st.session_state[widget_key(prefix, f.name)] = getattr(config, f.name)


def field_named(cls: type, name: str) -> dataclasses.Field:
    return cls.__dataclass_fields__[name]


def label(cls: type, name: str) -> str:
    """A field's label, for a page that shows the field without a widget to change it."""
    return field_named(cls, name).metadata["label"]


def render(current: Any, name: str, prefix: str, container: Any = st, **options: Any) -> Any:
    """``render_field`` for the field ``name`` of ``current``'s config class."""
    return render_field(field_named(type(current), name), current, prefix, container, **options)


def render_field(
    f: dataclasses.Field,
    current: Any,
    prefix: str,
    container: Any = st,
    *,
    disabled: bool = False,
    key: str | None = None,
    choices: tuple | list | None = None,
    format_func: Callable[[Any], str] | None = None,
    buttons: bool = False,
    placeholder: str | None = None,
) -> Any:
    """One widget for one field, initialised from ``current`` unless the user already moved it.

    ``key`` replaces the ``<prefix>_<field>`` key; ``choices`` narrows the field's choices (or offers some for a
    free-text field); ``format_func`` names the choices; ``buttons`` shows choices as a row of buttons (which
    returns None when the chosen one is clicked again); ``placeholder`` is what an empty number box shows.
    """
    meta = f.metadata
    key = key or widget_key(prefix, f.name)
    value = getattr(current, f.name)
    fresh = key not in st.session_state  # otherwise the widget keeps what the user chose
    help = meta["help"] or None
    if meta["log"]:
        help = f"{help} {LOG_HELP}" if help else LOG_HELP
    common = dict(key=key, help=help, disabled=disabled)
    text = meta["label"]
    if isinstance(value, bool):
        return container.toggle(text, **({"value": value} if fresh else {}), **common)
    options = list(choices if choices is not None else meta["choices"] or ())
    if options:
        format_func = format_func or _format_choice
        if buttons:
            return container.segmented_control(
                text, options, **({"default": value} if fresh else {}), format_func=format_func, **common
            )
        return container.selectbox(
            text, options, **({"index": options.index(value)} if fresh else {}), format_func=format_func, **common
        )
    low, high, step = meta["min"], meta["max"], meta["step"]
    if low is not None and high is not None:
        if meta["log"]:
            if value is None:
                raise ValueError(f"{f.name}: a log-scale widget needs a starting value; pass a config with one.")
            steps = log_steps(low, high)
            steps = steps if value in steps else sorted({*steps, value})
            return container.select_slider(
                text, options=steps, **({"value": value} if fresh else {}), format_func=format_log_step, **common
            )
        is_int = not any(isinstance(v, float) for v in (low, high, step))
        cast = int if is_int else float
        step = cast(step) if step is not None else (1 if is_int else (high - low) / 100)
        value_kwargs = {"value": None if value is None else cast(value)} if fresh else {}
        if meta["optional"] or (high - low) / step > MAX_SLIDER_STEPS:  # type a number, don't slide
            return container.number_input(
                text,
                min_value=cast(low),
                max_value=cast(high),
                step=step,
                format=None if is_int else "%g",
                placeholder=placeholder,
                **value_kwargs,
                **common,
            )
        return container.slider(text, min_value=cast(low), max_value=cast(high), step=step, **value_kwargs, **common)
    typed = container.text_input(
        text, **({"value": "" if value is None else str(value)} if fresh else {}), placeholder=placeholder, **common
    )
    return (typed.strip() or None) if meta["optional"] else typed


def _format_choice(choice: Any) -> str:
    return str(choice).replace("_", " ")

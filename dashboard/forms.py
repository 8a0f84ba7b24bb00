"""Widgets generated from a config dataclass's field metadata.

A field declared with ``core.config.setting(...)`` carries its label, help, range, step and choices;
this module turns it into the matching widget, so adding a setting to a config adds its widget.
Widget keys are ``<prefix>_<field>``; ``load_into_widgets`` pushes a config's values into those keys
(for presets), and ``read_from_widgets`` builds the config back, validated by its ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st


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


def render_field(f: dataclasses.Field, current: Any, prefix: str, container: Any = st, *,
                 disabled: bool = False) -> Any:
    """One widget for one field, initialised from ``current`` unless the user already moved it."""
    meta = f.metadata
    key = widget_key(prefix, f.name)
    value = st.session_state.get(key, getattr(current, f.name))
    common = dict(key=key, help=meta["help"] or None, disabled=disabled)
    if key in st.session_state:
        value_kwargs: dict[str, Any] = {}
    else:
        value_kwargs = {"value": value}
    if isinstance(value, bool):
        return container.toggle(meta["label"], **value_kwargs, **common)
    if meta["choices"] is not None:
        options = list(meta["choices"])
        index = {} if key in st.session_state else {"index": options.index(value)}
        return container.selectbox(meta["label"], options, **index, format_func=_format_choice, **common)
    if isinstance(value, (int, float)) and meta["min"] is not None and meta["max"] is not None:
        is_int = isinstance(meta["step"] or value, int) and not isinstance(value, float)
        cast = int if is_int else float
        step = meta["step"] if meta["step"] is not None else (1 if is_int else (meta["max"] - meta["min"]) / 100)
        if is_int and meta["max"] - meta["min"] > 10_000:  # seeds and counts: type a number, don't slide
            return container.number_input(meta["label"], min_value=cast(meta["min"]), max_value=cast(meta["max"]),
                                          step=cast(step), **value_kwargs, **common)
        return container.slider(meta["label"], min_value=cast(meta["min"]), max_value=cast(meta["max"]),
                                step=cast(step), **value_kwargs, **common)
    return container.text_input(meta["label"], **({} if key in st.session_state else {"value": str(value)}), **common)


def _format_choice(choice: Any) -> str:
    return str(choice).replace("_", " ")

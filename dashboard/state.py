"""The choices the pages share (data, augmentation, the run being watched, in a class the learner's name), kept
in session state and mirrored in the page's URL.

Widget state is dropped when a page is left, so each page copies what the user chose into these keys
and initialises its widgets from them when it is shown again. A browser refresh starts a new session:
the URL's query parameters (``?data=...&augment=...&run=...``) bring the choices back, and a URL
copied to a second tab opens with the same choices. In a class (``core.classroom``) the URL also carries the
learner's name (``?learner=Ada``) and, for the instructor, the instructor code (``&code=...``).
"""

import streamlit as st

from core import classroom
from core.catalog import DEFAULT_AUGMENT_PRESET
from core.classroom import Learner
from core.config import AUGMENT_PRESETS, AugmentConfig, Config, DataConfig
from core.errors import ConfigError

DATA_CONFIG, AUGMENT_CONFIG, WATCHED_RUN = "shared.data_config", "shared.augment_config", "shared.watched_run"
LEARNER = "shared.learner"
MAP_HIGHLIGHT = "shared.map_highlight"
URL_KEYS = {DATA_CONFIG: "data", AUGMENT_CONFIG: "augment", WATCHED_RUN: "run"}
LEARNER_URL, CODE_URL = "learner", "code"
DEFAULT_AUGMENT = AUGMENT_PRESETS[DEFAULT_AUGMENT_PRESET]


def _from_url(key: str, cls: type[Config], default: Config) -> Config:
    """The session's choice; on a new session (a refresh), the one the URL carries."""
    if key not in st.session_state:
        text = st.query_params.get(URL_KEYS[key])
        config = default
        if text:
            try:
                config = (
                    AUGMENT_PRESETS[text] if cls is AugmentConfig and text in AUGMENT_PRESETS else cls.from_query(text)
                )
            except ConfigError:
                config = default  # a hand-edited or outdated URL: start from the defaults
        st.session_state[key] = config
    return st.session_state[key]


def _to_url(key: str, value: str | None) -> None:
    if value:
        st.query_params[URL_KEYS[key]] = value
    elif URL_KEYS[key] in st.query_params:
        del st.query_params[URL_KEYS[key]]


def data_config() -> DataConfig:
    return _from_url(DATA_CONFIG, DataConfig, DataConfig())


def set_data_config(config: DataConfig) -> None:
    st.session_state[DATA_CONFIG] = config
    _to_url(DATA_CONFIG, config.to_query() if config != DataConfig() else None)


def augment_config() -> AugmentConfig:
    return _from_url(AUGMENT_CONFIG, AugmentConfig, DEFAULT_AUGMENT)


def set_augment_config(config: AugmentConfig) -> None:
    st.session_state[AUGMENT_CONFIG] = config
    preset = next((name for name, values in AUGMENT_PRESETS.items() if values == config), None)  # short URLs
    _to_url(AUGMENT_CONFIG, None if config == DEFAULT_AUGMENT else (preset or config.to_query()))


def watched_run() -> str | None:
    """The run the Train page's live panel shows (None: the running or newest one)."""
    if WATCHED_RUN not in st.session_state:
        st.session_state[WATCHED_RUN] = st.query_params.get(URL_KEYS[WATCHED_RUN]) or None
    return st.session_state[WATCHED_RUN]


def watch_run(run_id: str | None) -> None:
    st.session_state[WATCHED_RUN] = run_id
    _to_url(WATCHED_RUN, run_id)


def send_to_map(run_id: str | None, test_positions: list[int]) -> None:
    """Ask the Explore page to highlight these test images (positions in the test split) of a run's data, or of the
    Data page's choice when ``run_id`` is None. Kept for the session, not in the URL: a list of images is too long."""
    st.session_state[MAP_HIGHLIGHT] = (run_id, tuple(int(k) for k in test_positions))


def map_highlight() -> tuple[str | None, tuple[int, ...]] | None:
    """(run id or None, test positions) sent to the Explore page, or None."""
    return st.session_state.get(MAP_HIGHLIGHT)


def clear_map_highlight() -> None:
    st.session_state.pop(MAP_HIGHLIGHT, None)


def learner() -> Learner | None:
    """Who uses this browser in a class; None outside a class, and in a class until they give their name."""
    if not classroom.enabled():
        return None
    if LEARNER not in st.session_state:
        try:
            name = classroom.learner_name(st.query_params.get(LEARNER_URL, ""))
        except ConfigError:
            return None  # not chosen yet, or a hand-edited URL: the join form asks
        set_learner(Learner(name, classroom.is_instructor_code(st.query_params.get(CODE_URL))))
    return st.session_state[LEARNER]


def set_learner(chosen: Learner | None) -> None:
    st.session_state[LEARNER] = chosen
    if chosen is None:
        st.query_params.pop(LEARNER_URL, None)
        st.query_params.pop(CODE_URL, None)
        return
    st.query_params[LEARNER_URL] = chosen.name
    if chosen.instructor:
        st.query_params[CODE_URL] = classroom.instructor_code()
    else:
        st.query_params.pop(CODE_URL, None)


def keep_in_url() -> None:
    """Write every choice of this session into the URL: moving to another page starts a URL without them,
    and a refresh there must still find them."""
    for key in URL_KEYS:
        if key in st.session_state:
            value = st.session_state[key]
            if key == DATA_CONFIG:
                set_data_config(value)
            elif key == AUGMENT_CONFIG:
                set_augment_config(value)
            else:
                watch_run(value)
    if st.session_state.get(LEARNER) is not None:
        set_learner(st.session_state[LEARNER])

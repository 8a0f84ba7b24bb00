"""The configs the pages share, kept in session state under plain keys.

Widget state is dropped when a page is left, so each page copies what the user chose into these
keys and initialises its widgets from them when it is shown again.
"""

import streamlit as st

from core.augment import DEFAULT_PRESET, PRESETS, AugmentConfig
from core.config import DataConfig

DATA_CONFIG = "shared.data_config"


def data_config() -> DataConfig:
    return st.session_state.get(DATA_CONFIG, DataConfig())


def set_data_config(config: DataConfig) -> None:
    st.session_state[DATA_CONFIG] = config


AUGMENT_CONFIG = "shared.augment_config"


def augment_config() -> AugmentConfig:
    return st.session_state.get(AUGMENT_CONFIG, PRESETS[DEFAULT_PRESET])


def set_augment_config(config: AugmentConfig) -> None:
    st.session_state[AUGMENT_CONFIG] = config

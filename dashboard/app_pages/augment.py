"""Augment: see what each random transformation does before it is used in training."""

import numpy as np
import streamlit as st

from core import augment, data, heavy_work
from core.catalog import TRANSFORMS
from core.config import AUGMENT_PRESETS, AugmentConfig
from core.errors import TransferLabError
from core.images import decode_image, resize_for_model
from dashboard import forms, state
from dashboard.messages import show_error

PREFIX = "augment"
PREVIEW_SIZE = 224
CUSTOM = "custom"
PRESET_KEY = f"{PREFIX}_preset"


@st.cache_data(show_spinner=False)
def dataset_sample(config, seed: int) -> tuple[np.ndarray, str]:
    image, name = data.sample_images(config, count=1, seed=seed, size=PREVIEW_SIZE)[0]
    return image, name


@st.cache_data(show_spinner="Augmenting…", max_entries=64)
def augmented(image: np.ndarray, config: AugmentConfig, one_at_a_time: bool) -> list[tuple[str, np.ndarray]]:
    """Shared by every session (same picture and settings, same versions); the server's first preview sets up
    TensorFlow for a process many sessions share."""
    heavy_work.share_tensorflow_with_sessions()
    if one_at_a_time:
        return augment.preview_each_transform(image, config)
    return [("", version) for version in augment.preview(image, config, n=9)]


def apply_preset() -> None:
    name = st.session_state[PRESET_KEY]
    if name in AUGMENT_PRESETS:
        seed = st.session_state.get(forms.widget_key(PREFIX, "seed"), 0)
        forms.load_into_widgets(AUGMENT_PRESETS[name].replace(seed=seed), PREFIX)


def reroll() -> None:
    key = forms.widget_key(PREFIX, "seed")
    st.session_state[key] = int(np.random.default_rng().integers(0, 1_000_000))


def picture() -> tuple[np.ndarray, str] | None:
    """The image to augment: a dataset sample or an upload, resized to the preview size."""
    source = (
        st.segmented_control(
            "Picture", ["Dataset sample", "My photo"], default="Dataset sample", key=f"{PREFIX}_source"
        )
        or "Dataset sample"
    )
    if source == "My photo":
        upload = st.file_uploader("Upload a photo", type=None, key=f"{PREFIX}_upload")
        if upload is None:
            st.info("Upload a JPEG, PNG, WebP, BMP, GIF or TIFF photo.")
            return None
        try:
            image = decode_image(upload.getvalue(), upload.name)
        except TransferLabError as error:
            show_error(error)
            return None
        return resize_for_model(image, PREVIEW_SIZE).round().astype(np.uint8), upload.name
    if st.button("Another sample", icon=":material/shuffle:", key=f"{PREFIX}_reshuffle"):
        st.session_state[f"{PREFIX}_sample_seed"] = st.session_state.get(f"{PREFIX}_sample_seed", 0) + 1
    config = state.data_config()
    try:
        return dataset_sample(config, st.session_state.get(f"{PREFIX}_sample_seed", 0))
    except (TransferLabError, IndexError) as error:
        show_error(f"No sample from {config.source}: {error}. Pick another source on the Data page.")
        return None


st.title("Augment")
st.caption(
    "Each slider is one random transformation from the notebook. Training applies exactly this "
    "pipeline to training images only, never to the test images."
)
current = state.augment_config()
controls, results = st.columns([1, 2], gap="large")

with controls:
    preset_slot = st.container()
    seed_cols = st.columns([3, 2], vertical_alignment="bottom")
    seed = forms.render_field(forms.field_named(AugmentConfig, "seed"), current, PREFIX, seed_cols[0])
    seed_cols[1].button("Re-roll", icon=":material/casino:", key=f"{PREFIX}_reroll", on_click=reroll)
    one_at_a_time = st.toggle(
        "One transformation at a time",
        key=f"{PREFIX}_one_at_a_time",
        help="Apply each enabled transformation alone and label it.",
    )
    values = {"seed": seed}
    for row in TRANSFORMS:
        with st.container(border=True):
            on = forms.render_field(forms.field_named(AugmentConfig, row.switch), current, PREFIX)
            values[row.switch] = on
            for name in row.strengths + row.options:
                values[name] = forms.render_field(
                    forms.field_named(AugmentConfig, name), current, PREFIX, disabled=not on
                )
            st.caption(row.note)

try:
    config = AugmentConfig(**values)
    problem = None
except TransferLabError as error:
    config, problem = None, error
# The box names what the sliders do, so it reads 'custom' once they differ from every preset, and picking
# a preset (even the one last picked) is a change that loads it. Drawn after the sliders, shown above them.
st.session_state[PRESET_KEY] = (config.matching_preset() if config else None) or CUSTOM
preset_slot.selectbox(
    "Preset",
    [*AUGMENT_PRESETS, CUSTOM],
    key=PRESET_KEY,
    on_change=apply_preset,
    help="'notebook' is exactly the course notebook's four layers. Moving a slider away from "
    "every preset makes it 'custom'; pick a preset to load its values again.",
)
if problem is not None:
    show_error(problem, results)
    st.stop()
state.set_augment_config(config)

with results:
    st.info(f"**Training will use** {config.summary()}", icon=":material/model_training:")
    chosen = picture()
    if chosen is not None:
        image, name = chosen
        original, grid = st.columns([1, 3])
        original.image(image, caption=f"Original: {name}", width="stretch")
        versions = augmented(image, config, one_at_a_time)
        if not config.enabled_transforms():
            grid.warning("Every transformation is off: training images are used as they are.")
        for start in range(0, len(versions), 3):
            for col, (label, version) in zip(grid.columns(3), versions[start : start + 3]):
                col.image(version, caption=label or None, width="stretch")
    with st.expander("Why augment? (teaching notes)", expanded=False):
        st.markdown(
            "Augmentation makes new training pictures from old ones by random changes that keep the label "
            "true: a beagle turned 20° is still a beagle. The model sees a slightly different picture every "
            "epoch, so it cannot simply memorise the training set.\n\n"
            "In the notebook, the frozen-backbone model reached **about 80%** validation accuracy with these "
            "augmentation layers, and **only about 60%** without them.\n\n"
            + "\n".join(f"- **{row.name}**: {row.note}" for row in TRANSFORMS)
        )

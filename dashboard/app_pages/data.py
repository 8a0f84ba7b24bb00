"""Data: choose a source (or make a dataset of your own photos), see its classes, balance and a grid of samples."""

import streamlit as st

from core import data, figures
from core.config import DataConfig
from core.errors import TransferLabError
from dashboard import dataset_manager, state
from dashboard.feedback import progress_to
from dashboard.messages import literal, show_error

SOURCES = {
    "Demo shapes (offline)": "demo",
    "Stanford Dogs (TFDS)": "tfds:stanford_dogs",
    "Another TFDS dataset": "tfds",
    "My photos (a folder)": "folder",
    "My datasets (made here)": "local",
}
OTHER_TFDS = ["cifar10", "cifar100", "food101"]
GRID_SIZES = {"3 × 3": 9, "4 × 4": 16, "5 × 5": 25}
DEFAULT_GRID = "3 × 3"


# ``fingerprint`` keys the caches by the files of a dataset made here, which change while the page is open.
@st.cache_data(show_spinner="Reading the dataset…")
def describe(config: DataConfig, fingerprint: str = "") -> data.DatasetInfo:
    return data.describe(config)


@st.cache_data(show_spinner="Loading samples…")
def samples(config: DataConfig, count: int, seed: int, fingerprint: str = "") -> list:
    return data.sample_images(config, count=count, seed=seed, size=160)


def source_label(config: DataConfig) -> str:
    for label, source in SOURCES.items():
        if config.source == source or (source != "demo" and config.kind == source):
            return label
    return next(iter(SOURCES))


st.title("Data")
current = state.data_config()
choice = st.radio(
    "Source", list(SOURCES), index=list(SOURCES).index(source_label(current)), horizontal=True, key="data_source"
)
source = SOURCES[choice]
if source == "tfds":
    default = current.location if current.kind == "tfds" and current.location in OTHER_TFDS else OTHER_TFDS[0]
    source = "tfds:" + st.selectbox("TFDS dataset", OTHER_TFDS, index=OTHER_TFDS.index(default), key="data_tfds_name")
elif source == "folder":
    path = st.text_input(
        "Folder of photos",
        value=current.location if current.kind == "folder" else "",
        placeholder="/home/me/dogs  (one sub-folder per breed; optional train/ and test/)",
        key="data_folder_path",
    )
    source = f"folder:{path}" if path.strip() else ""
elif source == "local":
    chosen = dataset_manager.choose_dataset(current)
    source = f"local:{chosen.name}" if chosen else ""

with st.expander("Subset for quick runs"):
    cols = st.columns(2)
    max_train = cols[0].number_input(
        "Training images (0 = all)", min_value=0, step=100, value=current.max_train_images or 0, key="data_max_train"
    )
    max_test = cols[1].number_input(
        "Test images (0 = all)", min_value=0, step=50, value=current.max_test_images or 0, key="data_max_test"
    )

if not source:
    if choice != "My datasets (made here)":
        st.info("Type the path of a folder that holds one sub-folder of photos per class.")
    st.stop()

config = DataConfig(
    source=source, max_train_images=max_train or None, max_test_images=max_test or None, seed=current.seed
)
local = config.kind == "local"
info = problem = None
try:
    fingerprint = data.data_fingerprint(config) if local else ""
    info = describe(config, fingerprint)
except TransferLabError as error:
    problem = error
if local:
    state.set_data_config(config)  # chosen even while not ready to train on: the Train page says why
    dataset_manager.manage(chosen, info)
    if problem:
        st.info(literal(str(problem)), icon=":material/info:")
        st.stop()
    st.divider()
if problem:
    show_error(problem)
    if source.startswith("tfds:"):
        name = source.split(":", 1)[1]
        if st.button(f"Download {name} now", key="data_download", icon=":material/download:"):
            bar = st.progress(0.0, text="Starting…")
            try:
                data.download_tfds(name, progress=progress_to(bar))
                describe.clear()
                st.rerun()
            except TransferLabError as download_error:
                show_error(download_error)
    st.stop()

state.set_data_config(config)
for warning in [] if local else info.warnings:  # a dataset made here: the manager showed its own
    st.warning(warning)

metrics = st.columns(3)
metrics[0].metric("Classes", info.num_classes)
metrics[1].metric("Training images", f"{info.num_train:,}")
metrics[2].metric("Test images", f"{info.num_test:,}")
st.caption(f"Used by the Train page: **{config.summary()}**")

st.subheader("Samples")
controls = st.columns([2, 1, 3])
# required: clicking the chosen size cannot leave the control empty while a grid is shown;
# persist_state: the size chosen is still the one shown (and the one displayed) after visiting another page.
grid_choice = controls[0].segmented_control(
    "Grid", list(GRID_SIZES), default=DEFAULT_GRID, required=True, persist_state="session", key="data_grid"
)
grid = GRID_SIZES[grid_choice or DEFAULT_GRID]
if controls[1].button("Reshuffle", icon=":material/shuffle:", key="data_reshuffle"):
    st.session_state["data_sample_seed"] = st.session_state.get("data_sample_seed", 0) + 1
side = int(grid**0.5)
images = samples(config, grid, st.session_state.get("data_sample_seed", 0), fingerprint)
for row in range(0, len(images), side):
    for col, (image, name) in zip(st.columns(side), images[row : row + side]):
        col.image(image, caption=name, width="stretch")

if info.train_counts:
    st.subheader("Class balance")
    st.plotly_chart(figures.class_balance(info), key="data_balance")

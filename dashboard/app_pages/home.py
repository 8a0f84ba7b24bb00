"""Home: what Transfer Lab is for, the three regimes, this machine, and what works offline."""

import streamlit as st

from core import catalog, data, devices, feature_cache, system

st.title("🐕 Transfer Lab")
st.markdown(
    "See **transfer learning** and **data augmentation** at work: classify dog breeds (Stanford Dogs, "
    "120 classes) with Keras **EfficientNet**, the way the course notebook does, but live. Tweak augmentation "
    "sliders and watch the images change, train the three regimes side by side, then explore where the "
    "model goes wrong and classify your own photos."
)

st.subheader("Three ways to train")
for column, regime in zip(st.columns(len(catalog.REGIMES)), catalog.REGIMES.values()):
    column.markdown(f"**{regime.title}.** {regime.description}")

st.subheader("This machine")
machine = system.machine()
build = system.tensorflow_build(machine.gpus)
device = devices.describe_device()
cols = st.columns(3)
cols[0].metric("Runs on", "GPU" if build.uses_gpu else "CPU", help=f"A run started now trains on: {device}")
cols[1].metric("TensorFlow", build.version or "not installed", help=build.label)
cols[2].metric("Keras", machine.versions.get("keras", "not installed"))
st.caption(f"{machine.accelerator}. TensorFlow: {build.label}. A run started now trains on: {device}.")
if build.fix:
    st.warning(build.fix, icon=":material/memory:")

st.subheader("Available offline right now")
dogs_ready = system.tfds_prepared("stanford_dogs", data.tfds_data_dirs())
st.markdown(
    "- ✅ **Demo shapes**: built in, drawn by the app, no download.\n"
    + (
        "- ✅ **Stanford Dogs** (TFDS): downloaded.\n"
        if dogs_ready
        else "- ⬇️ **Stanford Dogs** (TFDS): not downloaded yet; the Data page can download it when online.\n"
    )
    + "- 📁 **Your own photos**: any folder with one sub-folder per class.\n"
    + "- 🖼️ **My datasets**: made on the Data page from uploads, a zip or the webcam."
)
weights = catalog.imagenet_weights_available()
ready = [name for name, ok in weights.items() if ok]
missing = [name for name, ok in weights.items() if not ok]
st.markdown(
    "**Pretrained ImageNet weights here:** "
    + (", ".join(ready) or "none")
    + ("  \n**Need a download (online, on first use):** " + ", ".join(missing) if missing else "")
)
st.info(catalog.default_backbone_reason(), icon=":material/info:")
st.page_link("app_pages/data.py", label="Choose the data", icon=":material/arrow_forward:")

st.subheader("Feature cache")
cache_bytes = feature_cache.cache_size_bytes()
cache_text, cache_button = st.columns([3, 1], vertical_alignment="center")
cache_text.markdown(
    f"**{cache_bytes / 1e6:,.1f} MB** of stored backbone features in `{feature_cache.cache_folder()}`. "
    "Frozen runs with *Cached features* run each image through the backbone once and keep the result here, "
    "so later epochs, and later runs on the same data, backbone and augmentation, take seconds. Clearing is "
    "safe: features are extracted again when a run needs them."
)
if cache_button.button(
    "Clear the feature cache", key="home_clear_feature_cache", icon=":material/delete_sweep:", disabled=cache_bytes == 0
):
    freed = feature_cache.clear_cache()
    st.toast(f"Freed {freed / 1e6:,.1f} MB.")
    st.rerun()

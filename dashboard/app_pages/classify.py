"""Classify: what does a model say about my photos, and where in each photo is its evidence? With a run trained on
a dataset made in the app, each photo can go into that dataset (or be fixed there, if it is in it already)."""

import csv
import hashlib
import io
from typing import NamedTuple

import numpy as np
import streamlit as st
from PIL import Image

from core import datasets, figures, heavy_work, runs
from core.errors import TransferLabError
from core.serving.classification import Result, classify, unsure_note
from core.serving.classifiers import Classifier, classifier_for_run, imagenet_dog_classifier
from core.serving.colour_maps import DEFAULT_OPACITY, overlay
from core.serving.grad_cam import grad_cam
from core.serving.inputs import open_input
from dashboard import learners, state
from dashboard.dataset_widgets import image_fix
from dashboard.feedback import progress_to
from dashboard.messages import literal, show_error

PREFIX = "classify"
DOG_BREEDS = "imagenet-dog-breeds"
DOG_BREEDS_LABEL = "ImageNet dog breeds (EfficientNet-Lite0, no training)"
CAMERA_NAME = "camera photo.jpg"
DISPLAY_SIDE = 1024  # photos are shown (and explained) at most this wide: the model sees 224 px anyway
MAX_CARDS = 24  # photos shown one by one; the table lists every photo
TABLE_COLUMNS = ("file", "top-1", "probability", "top-5", "error")


@st.cache_resource(show_spinner=False)
def dog_classifier() -> Classifier:
    """Built once per server process. The progress bar is drawn inside, so a cache hit replays it cleanly."""
    heavy_work.share_tensorflow_with_sessions()
    bar = st.progress(0.0, text="Building the ImageNet dog classifier (a few seconds, once)…")
    try:
        classifier = imagenet_dog_classifier(progress=progress_to(bar))
        classifier.warm_up()
        return classifier
    finally:
        bar.empty()


@st.cache_resource(show_spinner="Loading the run's model…", max_entries=4)
def run_classifier(run_id: str, model_file: str, modified_ns: int) -> Classifier:
    """One per saved model file and version: a newer checkpoint of the same run is a new entry."""
    heavy_work.share_tensorflow_with_sessions()
    return classifier_for_run(run_id)


def model_identity(choice: str, records: dict) -> tuple[str, int]:
    """(model file, modification time) naming the exact model behind a choice, for the caches."""
    if choice == DOG_BREEDS:
        return DOG_BREEDS, 0
    path = records[choice].model_path
    try:
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return str(path), 0


def model_label(choice: str, records: dict) -> str:
    if choice == DOG_BREEDS:
        return DOG_BREEDS_LABEL
    record = records[choice]
    accuracy = f" · best val. {record.best_val_accuracy:.3f}" if record.best_val_accuracy is not None else ""
    return f"{record.name} ({record.status}{accuracy})"


def uploaded_photos() -> list[tuple[str, bytes]]:
    """(file name, bytes) of every uploaded photo, then the camera's photo if the camera is on."""
    uploads = st.file_uploader(
        "Photos",
        type=None,
        accept_multiple_files=True,
        key=f"{PREFIX}_uploads",
        help="JPEG, PNG, WebP, BMP, GIF or TIFF; as many as you like.",
    )
    photos = [(upload.name, upload.getvalue()) for upload in uploads or []]
    if st.toggle(
        "Take a photo with the camera",
        key=f"{PREFIX}_use_camera",
        help="The browser asks for permission to use the camera only when this is on.",
    ):
        shot = st.camera_input("Camera", key=f"{PREFIX}_camera")
        if shot is not None:
            photos.append((CAMERA_NAME, shot.getvalue()))
    return photos


@st.cache_data(show_spinner="Classifying…", max_entries=16)
def classified(
    model_key: tuple[str, int],
    photo_keys: tuple[tuple[str, str], ...],
    _classifier: Classifier,
    _photos: list[tuple[str, bytes]],
) -> list[Result]:
    """Keyed by the model and the photos' (name, content hash), so moving a slider does not classify again."""
    return classify(_classifier, _photos)


@st.cache_data(show_spinner=False, max_entries=64)
def shown_photo(digest: str, _name: str, _content: bytes) -> np.ndarray:
    """The upright photo, at most DISPLAY_SIDE pixels wide or high, as uint8 RGB."""
    _, image = open_input((_name, _content))
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(image)


@st.cache_data(show_spinner="Computing Grad-CAM…", max_entries=64)
def evidence(
    digest: str, model_key: tuple[str, int], class_index: int, _classifier: Classifier, _photo: np.ndarray
) -> np.ndarray:
    """Grad-CAM heatmap (0..1, the shown photo's size) for one class: where its evidence lies."""
    return grad_cam(_classifier, Image.fromarray(_photo), class_index)


class OwnDataset(NamedTuple):
    """The dataset made in the app that the chosen run was trained on: its classes, and its images by content."""

    name: str
    class_names: list[str]
    by_digest: dict[str, datasets.StoredImage]


def own_dataset(choice: str, records: dict) -> OwnDataset | None:
    """The chosen run's dataset made in the app, as it is now; None for other models or a deleted dataset."""
    if choice == DOG_BREEDS:
        return None
    config = records[choice].config.data
    if config.kind != "local" or not datasets.exists(config.location):
        return None
    try:
        stored = datasets.images(config.location)  # once per rerun: what find_image reads, for every card
        summary = datasets.summary(config.location)
    except TransferLabError:
        return None
    if not learners.may_change(state.learner(), summary.owner):
        return None  # another learner's dataset, in a class: theirs to change
    return OwnDataset(config.location, summary.class_names, {image.digest: image for image in stored})


def add_photo(dataset: str, file_name: str, content: bytes, class_key: str) -> None:
    """The Add button: put the photo into the chosen class; a toast says what happened."""
    try:
        report = datasets.add_images(dataset, st.session_state[class_key], [(file_name, content)])
    except TransferLabError as error:
        st.toast(str(error), icon=":material/error:")
        return
    if report.added:
        st.toast(f"{report.message()} The next run trains on it.", icon=":material/check:")
    else:
        st.toast(report.message(), icon=":material/warning:")


def dataset_row(index: int, name: str, content: bytes, predicted: str, dataset: OwnDataset) -> None:
    """Under a photo: where it is in the run's dataset (with the fixes), or a class to add it to."""
    digest = datasets.content_digest(content)
    key = f"{PREFIX}_dataset_{index}_{digest}"
    stored = dataset.by_digest.get(digest)
    if stored is not None:
        text, fix = st.columns([2, 1], vertical_alignment="center")
        text.markdown(
            f":material/dataset: In the dataset as **'{literal(stored.class_name)}'** "
            f"(in '{literal(dataset.name)}'): relabel or remove it here if that is wrong."
        )
        image_fix(dataset.name, stored.ref, dataset.class_names, key=key, container=fix)
        return
    class_key = f"{key}_class"
    text, add = st.columns([2, 1], vertical_alignment="center")  # the controls where the fixes will be once added
    text.markdown(
        f":material/add_photo_alternate: Not in '{literal(dataset.name)}' yet: add it to the class this photo "
        "shows, and the next run trains on it too."
    )
    add.selectbox(
        f"Add to '{literal(dataset.name)}' as",
        dataset.class_names,
        index=dataset.class_names.index(predicted) if predicted in dataset.class_names else 0,
        key=class_key,
        label_visibility="collapsed",
        help="The class this photo shows (the model's prediction when it is one of the dataset's classes).",
    )
    add.button(
        f"Add to '{literal(dataset.name)}'",
        key=f"{key}_add",
        icon=":material/add_photo_alternate:",
        on_click=add_photo,
        args=(dataset.name, name, content, class_key),
        width="stretch",
    )


def table_rows(results: list[Result]) -> list[dict]:
    return [
        {
            "file": r.file,
            "top-1": r.label,
            "probability": r.top[0][1] if r.top else None,
            "top-5": "; ".join(f"{label} {p:.3f}" for label, p in r.top),
            "error": r.error,
        }
        for r in results
    ]


def as_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def code(text: str) -> str:
    """A file name shown literally in markdown (underscores would turn into italics)."""
    return "`" + text.replace("`", "'") + "`"


def photo_card(
    index: int,
    result: Result,
    name: str,
    content: bytes,
    digest: str,
    classifier: Classifier,
    model_key: tuple[str, int],
    opacity: float,
    dataset: OwnDataset | None,
) -> None:
    with st.container(border=True):
        if not result.ok:
            show_error(result.error, icon=":material/broken_image:")
            return
        label, probability = result.top[0]
        st.markdown(f"{code(name)} → **{label}** ({probability:.1%})")
        doubt = unsure_note(result, classifier.class_names)
        if doubt:
            st.warning(literal(doubt), icon=":material/help:")
        photo_column, bars_column, evidence_column = st.columns([1, 1.2, 1], gap="medium")
        try:
            photo = shown_photo(digest, name, content)
            photo_column.image(photo, caption=f"Prediction: {label}", width="stretch")
            bars_column.plotly_chart(
                figures.top_k_bars(result.top, title=f"Top {len(result.top)}"),
                key=f"{PREFIX}_bars_{index}",
                config={"displayModeBar": False},
            )
            heatmap = evidence(digest, model_key, result.class_index, classifier, photo)
            evidence_column.image(
                overlay(photo, heatmap, opacity), width="stretch", caption=f"Grad-CAM: evidence for {label}"
            )
            if not heatmap.any():
                evidence_column.caption("Nothing in this photo raised the score of this class.")
        except TransferLabError as error:
            show_error(error)
        if dataset is not None:
            dataset_row(index, name, content, label, dataset)


st.title("Classify")
st.markdown(
    "Ask a model what is in your photos. Each photo gets the model's five most probable classes, and a "
    "**Grad-CAM** map: the parts of the photo whose features raised the score of the predicted class are "
    "painted red and yellow, parts that gave no evidence for it stay blue. It shows *where* the evidence for "
    "the prediction lies (the dog's face, or the grass it sits on?), not whether the prediction is right. "
    "Parts of the photo the model never sees (outside the ImageNet classifier's centre square) stay uncoloured."
)

runs.reconcile()
records = {r.id: r for r in runs.list_runs(owner=learners.scope(state.learner(), "classify_scope")) if r.model_path}
model_column, photos_column = st.columns(2, gap="large")
with model_column:
    choice = st.selectbox(
        "Model",
        [*records, DOG_BREEDS],
        format_func=lambda c: model_label(c, records),
        key=f"{PREFIX}_model",
        help="Your training runs with a saved model, or ImageNet's classifier restricted to "
        "the 120 Stanford Dogs breeds, which needs no training.",
    )
    model_key = model_identity(choice, records)
    try:
        classifier = dog_classifier() if choice == DOG_BREEDS else run_classifier(choice, *model_key)
    except TransferLabError as error:
        show_error(error)
        st.stop()
    st.caption(f"{classifier.num_classes} classes · input: {classifier.preprocessing_description}.")
    if choice == DOG_BREEDS:
        st.caption("It knows only dog breeds: a photo of anything else still gets the most dog-like breed.")
    for note in classifier.notes:
        st.warning(literal(note))
    dataset = own_dataset(choice, records)
    if dataset is not None:
        st.caption(
            f"Trained on your dataset **{literal(dataset.name)}**: each photo below can be added to it, or "
            "relabelled or removed if it is in it already."
        )
with photos_column:
    photos = uploaded_photos()

if not photos:
    st.info("Upload one or more photos (a dog photo works with every model), or take one with the camera.")
    st.stop()

digests = [hashlib.sha256(content).hexdigest() for _, content in photos]
try:
    results = classified(model_key, tuple((name, d) for (name, _), d in zip(photos, digests)), classifier, photos)
except TransferLabError as error:
    show_error(error)
    st.stop()

if len(photos) > 1:
    st.subheader("All photos")
    rows = table_rows(results)
    failed = sum(not r.ok for r in results)
    st.dataframe(
        rows,
        hide_index=True,
        key=f"{PREFIX}_table",
        column_config={
            "probability": st.column_config.NumberColumn(format="%.3f"),
            "top-5": st.column_config.TextColumn(width="medium"),
            "error": st.column_config.TextColumn(width="large"),
        },
    )
    table_footer = st.columns([3, 1], vertical_alignment="center")
    table_footer[0].caption(
        f"{len(results)} photos · {failed} could not be classified."
        if failed
        else f"{len(results)} photos, all classified."
    )
    table_footer[1].download_button(
        "Download CSV",
        as_csv(rows),
        file_name="classified.csv",
        mime="text/csv",
        icon=":material/download:",
        key=f"{PREFIX}_download",
        on_click="ignore",
    )

st.subheader("Photo by photo")
opacity = st.columns(3)[0].slider(
    "Grad-CAM opacity",
    0.0,
    1.0,
    DEFAULT_OPACITY,
    0.05,
    key=f"{PREFIX}_opacity",
    help="0 shows the photo only, 1 the heatmap only.",
)
if len(photos) > MAX_CARDS:
    st.caption(f"The first {MAX_CARDS} of {len(photos)} photos; the table above lists them all.")
for index, (result, (name, content), digest) in enumerate(zip(results, photos, digests)):
    if index == MAX_CARDS:
        break
    photo_card(index, result, name, content, digest, classifier, model_key, opacity, dataset)

"""The Data page's "My datasets" manager: create, fill, fix and manage the datasets made in the app.

A page helper, not a shared widget module: only the Data page uses it, and it lives apart so that page stays
readable. Widgets only; every change is one call to ``core.datasets``. A change made in the script (an upload,
a class renamed) ends in ``st.rerun`` so the counts, thumbnails and the data fingerprint are read afresh; what it
did is kept in session state for the rerun to show. Widget keys start with ``data_``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import streamlit as st

from core import datasets
from core.config import DataConfig
from core.data import DatasetInfo
from core.errors import TransferLabError
from dashboard import learners, state
from dashboard.dataset_widgets import image_fix, trash_section
from dashboard.feedback import progress_to
from dashboard.messages import literal, show_error

CHOSEN = "data_local_name"
PENDING = "data_local_pending"
"""A dataset to choose on the next run (set before the selectbox exists; "" clears the choice)."""
ROUND = "data_upload_round"
"""Part of every uploader's key: bumped after an upload, so the uploaders come back empty."""
REPORT, NOTE = "data_ingest_report", "data_note"
THUMBS_IN_ROW = 8
PER_PAGE = 24
GRID_COLUMNS = 6
THUMB_CELL = 110
"""Pixels: a thumbnail (96 px on its long side) and a margin, so the controls under a row of photos line up."""
SPLIT = re.compile(r"[,\n]")
COUNTED = re.compile(r" \([\d,]+ images?\)$")


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "es" if noun.endswith("s") else "s")


def _done(note: str | None = None) -> None:
    """After a change made in the script: keep what to say, read everything afresh."""
    if note:
        st.session_state[NOTE] = note
    st.rerun()


def _choice(label: str, options: list[str], key: str, **kwargs) -> str | None:
    """A selectbox whose kept value is dropped when it is no longer one of the options (a class renamed)."""
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    return st.selectbox(label, options, key=key, **kwargs)


# ---------------------------------------------------------------- choosing and creating


def _create_form(key: str) -> None:
    with st.form(key, border=False):
        name = st.text_input("Name", placeholder="my dogs", key=f"{key}_name")
        classes = st.text_area(
            "Class names (one per line, or separated by commas)",
            placeholder="beagle\nsamoyed\ncorgi",
            key=f"{key}_classes",
            height=110,
        )
        if not st.form_submit_button("Create", icon=":material/add:", type="primary"):
            return
    try:
        learner = state.learner()
        made = datasets.create_dataset(
            name, [c for c in SPLIT.split(classes) if c.strip()], owner=learner.name if learner else None
        )
    except TransferLabError as error:
        show_error(error)
        return
    st.session_state[PENDING] = made.name
    _done(f"Created '{made.name}' with {_plural(len(made.class_names), 'class')}: now add photos to it.")


def choose_dataset(current: DataConfig) -> datasets.DatasetSummary | None:
    """The dataset chosen (a selectbox, and a form to create one), or None when there is none yet. Its summary is
    the one the selectbox's counts came from: the manager below shows it without listing the folders again."""
    if NOTE in st.session_state:
        st.success(literal(st.session_state.pop(NOTE)), icon=":material/check:")
    owner = learners.scope(state.learner(), "data_scope", "datasets")
    try:
        found = {s.name: s for s in datasets.list_datasets(owner=owner)}
    except TransferLabError as error:
        show_error(error)
        return None
    if not found:
        st.subheader("Create a dataset")
        st.caption("A dataset of your own photos: name it and its classes, then add photos, a zip or snapshots.")
        _create_form("data_create")
        return None
    if PENDING in st.session_state:
        pending = st.session_state.pop(PENDING)
        st.session_state.pop(CHOSEN, None)
        if pending in found:
            st.session_state[CHOSEN] = pending
    names = list(found)
    # The browser holds the label shown ("pets (12 images)"), which an upload makes stale: set the choice
    # afresh on every run, so the label shows the counts of now and the choice survives the change.
    kept = COUNTED.sub("", str(st.session_state.get(CHOSEN, "")))
    if kept not in names:
        kept = current.location if current.kind == "local" and current.location in names else names[0]
    st.session_state[CHOSEN] = kept
    cols = st.columns([3, 2], vertical_alignment="bottom")
    chosen = cols[0].selectbox(
        "Dataset", names, key=CHOSEN, format_func=lambda n: f"{n} ({_plural(found[n].total, 'image')})"
    )
    with cols[1].expander("New dataset", icon=":material/add:"):
        _create_form("data_new")
    return found[chosen]


# ---------------------------------------------------------------- the chosen dataset


def manage(summary: datasets.DatasetSummary, info: DatasetInfo | None) -> None:
    """Everything about one dataset: its numbers, its classes and images, adding images, managing it."""
    name = summary.name
    metrics = st.columns(3)
    metrics[0].metric("Classes", len(summary.class_names))
    metrics[1].metric("Images", f"{summary.total:,}")
    metrics[2].metric(
        "Kept for testing",
        f"{info.num_test:,}" if info else "—",
        help="Images a zip brought in test/ are its test images; the other classes keep about a fifth of "
        "their images (drawn by the data seed) to measure the model on photos it never trained on.",
    )
    for warning in summary.warnings:
        st.warning(literal(warning))
    editable = learners.may_change(state.learner(), summary.owner)
    if not editable:
        st.info(
            literal(
                f"'{name}' is {summary.owner}'s dataset: you can look at it and train on it; only they or the "
                "instructor can change it."
            ),
            icon=":material/group:",
        )
    for class_name in summary.class_names:
        _class_block(name, class_name, summary.counts[class_name], summary.class_names, editable)
    if editable:
        _add_images(name, summary.class_names)
        _manage(name, summary)


def _class_block(name: str, class_name: str, count: int, class_names: list[str], editable: bool = True) -> None:
    with st.container(border=True):
        st.markdown(f"**{literal(class_name)}** · {_plural(count, 'image')}")
        if not count:
            st.caption("No images yet: add some below.")
            return
        try:
            stored = datasets.images(name, class_name)
            st.image([str(datasets.thumbnail(image)) for image in stored[:THUMBS_IN_ROW]], width="content")
        except TransferLabError as error:
            show_error(error)
            return
        # Its label counts the images, and a new label is a new expander: its open state is kept here instead.
        remembered, key = f"data_all_open_{class_name}", f"data_all_{class_name}"
        everything = st.expander(
            f"All {_plural(count, 'image')}",
            expanded=st.session_state.get(remembered, False),
            key=key,
            on_change=_remember,
            args=(key, remembered),
            type="compact",
        )
        with everything:
            if everything.open:
                _image_pages(name, class_name, stored, class_names, editable)


def _remember(key: str, remembered: str) -> None:
    st.session_state[remembered] = bool(st.session_state[key])


def _image_pages(name: str, class_name: str, stored: list, class_names: list[str], editable: bool = True) -> None:
    pages = (len(stored) + PER_PAGE - 1) // PER_PAGE
    page = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"data_page_{class_name}", width=160)
    shown = stored[(page - 1) * PER_PAGE : page * PER_PAGE]
    if editable:
        st.caption("Choose another class under a photo to move it there; Remove puts it in the trash.")
    for start in range(0, len(shown), GRID_COLUMNS):
        for col, image in zip(st.columns(GRID_COLUMNS), shown[start : start + GRID_COLUMNS]):
            cell = col.container(height=THUMB_CELL, border=False, vertical_alignment="center")  # rows line up
            try:
                cell.image(str(datasets.thumbnail(image)), width="content")
            except TransferLabError:
                cell.caption("(cannot show)")
            if editable:
                image_fix(name, image.ref, class_names, key=f"data_fix_{image.ref}", container=col)


# ---------------------------------------------------------------- adding images


def _ingest(run: Callable) -> None:
    """Run one ingest with a progress bar; keep its report for the rerun, or show why it failed."""
    bar = st.progress(0.0, text="Starting…")
    try:
        report = run(progress_to(bar))
    except TransferLabError as error:
        bar.empty()
        show_error(error)
        return
    st.session_state[REPORT] = (report.message(), report.ok, list(report.rejected))
    st.session_state[ROUND] = st.session_state.get(ROUND, 0) + 1
    _done()


def _show_report() -> None:
    if REPORT not in st.session_state:
        return
    message, ok, rejected = st.session_state.pop(REPORT)
    (st.success if ok else st.warning)(literal(message), icon=":material/check:" if ok else ":material/warning:")
    if rejected:
        st.dataframe(
            {"File": [label for label, _ in rejected], "Why it was not added": [why for _, why in rejected]},
            hide_index=True,
        )


def _add_images(name: str, class_names: list[str]) -> None:
    st.subheader("Add images")
    with st.container():  # always there, so the widgets below keep their place when the report goes
        _show_report()
    round_ = st.session_state.get(ROUND, 0)
    target = _choice("To the class", class_names, "data_add_class") if class_names else None
    # Tracked (a key and on_change): the tab chosen stays chosen when an upload reruns the page.
    photos, archive, camera = st.tabs(
        ["Upload photos", "Upload a zip", "Webcam"], key="data_add_tab", on_change="rerun"
    )
    with photos:
        files = st.file_uploader(
            "Photos", accept_multiple_files=True, key=f"data_photos_{round_}", label_visibility="collapsed"
        )
        if target is None:
            st.info("Add a class first (Manage, below), or import a zip: its folders become classes.")
        elif files and st.button(
            f"Add {_plural(len(files), 'photo')} to '{target}'", key="data_add_photos", type="primary"
        ):
            _ingest(
                lambda progress: datasets.add_images(name, target, ((f.name, f.getvalue()) for f in files), progress)
            )
    with archive:
        st.caption(
            "Each folder of the zip becomes a class (a new one, or the class of the same name): "
            "`beagle/*.jpg`, `samoyed/*.jpg`… With `train/` and `test/` folders, the photos under `test/` are "
            "kept for testing. The Stanford Dogs archive works as it is (`Images/n02085620-Chihuahua/…`)."
        )
        zipped = st.file_uploader("Zip", type=["zip"], key=f"data_zip_{round_}", label_visibility="collapsed")
        if zipped is not None and st.button(
            "Import", key="data_import_zip", type="primary", icon=":material/unarchive:"
        ):
            _ingest(lambda progress: datasets.import_zip(name, zipped, progress))  # the upload, never copied
    with camera:
        snapshot = st.camera_input("Snapshot", key=f"data_camera_{round_}", label_visibility="collapsed")
        if target is None:
            st.info("Add a class first (Manage, below).")
        elif snapshot is not None and st.button(
            f"Add this snapshot to '{target}'", key="data_add_snapshot", type="primary"
        ):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            _ingest(
                lambda progress: datasets.add_images(
                    name, target, [(f"snapshot-{stamp}.jpg", snapshot.getvalue())], progress
                )
            )


# ---------------------------------------------------------------- managing


def _change(change: Callable[[], object], note: str) -> None:
    try:
        change()
    except TransferLabError as error:
        show_error(error)
        return
    _done(note)


def _manage(name: str, summary: datasets.DatasetSummary) -> None:
    st.subheader("Manage")
    add, rename, delete = st.columns(3)
    with add.container(border=True):
        with st.form("data_add_class_form", border=False, clear_on_submit=True):
            new = st.text_input("Add a class", placeholder="e.g. golden retriever", key="data_new_class")
            if st.form_submit_button("Add class", icon=":material/add:"):
                _change(lambda: datasets.add_class(name, new), f"Added the class '{new.strip()}' to '{name}'.")
    classes = summary.class_names
    if classes:
        with rename.container(border=True):
            old = _choice("Rename a class", classes, "data_rename_class")
            to = st.text_input("New name", key="data_rename_to")
            if st.button("Rename", key="data_rename", icon=":material/edit:", disabled=not to.strip()):
                _change(lambda: datasets.rename_class(name, old, to), f"Renamed '{old}' to '{to.strip()}'.")
        with delete.container(border=True):
            doomed = _choice("Delete a class", classes, "data_delete_class")
            count = summary.counts.get(doomed, 0)
            sure = st.checkbox(f"Yes, delete '{doomed}' and its {_plural(count, 'image')}", key="data_delete_class_ok")
            if st.button("Delete class", key="data_delete_class_go", icon=":material/delete:", disabled=not sure):
                st.session_state.pop("data_delete_class_ok", None)
                _change(lambda: datasets.delete_class(name, doomed), f"Deleted the class '{doomed}'.")
    trash_section(name, key="data_trash")
    download, remove = st.columns(2)
    with download.container(border=True):
        st.markdown("**Download**")
        st.caption(
            "The whole dataset as a zip (class folders; `train/` and `test/` if some photos are kept for "
            "testing): import it here again, or on another computer."
        )
        st.download_button(
            "Download as zip",
            data=lambda: datasets.dataset_zip(name),
            file_name=f"{name}.zip",
            mime="application/zip",
            key="data_download_zip",
            icon=":material/download:",
            on_click="ignore",
        )
    with remove.container(border=True):
        st.markdown("**Delete this dataset**")
        sure = st.checkbox(
            f"Yes, delete '{name}' and its {_plural(summary.total, 'image')}", key="data_delete_dataset_ok"
        )
        if st.button("Delete dataset", key="data_delete_dataset", icon=":material/delete_forever:", disabled=not sure):
            try:
                datasets.delete_dataset(name)
            except TransferLabError as error:
                show_error(error)
                return
            st.session_state.pop("data_delete_dataset_ok", None)
            st.session_state[PENDING] = ""
            state.set_data_config(DataConfig())
            _done(f"Deleted the dataset '{name}'.")

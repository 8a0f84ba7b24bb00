"""Evaluate: how good is a trained model, and where does it fail? For a run on a dataset made in the app, fix
the images it fails on (relabel, remove) right under them."""

import time
from typing import NamedTuple

import streamlit as st

from core import data, datasets, evaluation, figures, runs
from core.config import DataConfig
from core.errors import TransferLabError
from core.predictions import run_predictions, test_images
from dashboard import learners, state
from dashboard.dataset_widgets import image_fix, trash_section
from dashboard.feedback import progress_to
from dashboard.messages import literal, show_error

NONE = "(none)"


def run_label(run_id: str, records: dict) -> str:
    """Name and launch time (names repeat; the time tells runs apart), and the status unless finished."""
    record = records[run_id]
    status = "" if record.status == runs.COMPLETED else f" ({record.status})"
    return f"{record.name} · {time.strftime('%d %b %H:%M:%S', time.localtime(record.created_at))}{status}"


def predictions_for(run_id: str, records: dict):
    """Predictions with a progress bar the first time (later calls read the cache next to the model)."""
    bar = st.progress(0.0, text=f"Predicting the test split with {records[run_id].name}…")
    try:
        return run_predictions(run_id, progress=progress_to(bar))
    finally:
        bar.empty()


@st.cache_data(show_spinner="Loading the test images…", max_entries=32)
def images_for(run_id: str, indices: tuple[int, ...], fingerprint: str) -> list:
    """Keyed by the data's fingerprint: after a relabel or a removal the same positions are other images."""
    config = runs.get_run(run_id).config
    return test_images(config.data, config.model.effective_image_size, list(indices))


def on_the_map(run_id: str, positions: list[int], key: str) -> None:
    """A button that opens Explore with these test images starred on the feature-space map."""
    if positions and st.button("See them on the Explore map", key=key, icon=":material/scatter_plot:"):
        state.send_to_map(run_id, positions)
        st.switch_page("app_pages/explore.py")


class Cleaning(NamedTuple):
    """What the fix controls under the test images need: the dataset, the ref of each test image (by its
    position in the test split) and the dataset's classes."""

    dataset: str
    refs: list[str]
    class_names: list[str]


def cleaning_for(config: DataConfig, num_examples: int) -> tuple[Cleaning | None, str | None]:
    """The fix controls' data for a run on a dataset made in the app, or None and why not (None: not such a run)."""
    if config.kind != "local":
        return None, None
    name = config.location
    if not datasets.exists(name):
        return None, f"The dataset '{name}' this run was trained on no longer exists: its images cannot be fixed here."
    try:
        files = data.test_image_files(config)
        summary = datasets.summary(name)
    except TransferLabError as error:
        return None, f"The images cannot be fixed here: {error}"
    class_names = summary.class_names
    if not learners.may_change(state.learner(), summary.owner):
        return None, f"'{name}' is {summary.owner}'s dataset: only they or the instructor can fix its images."
    if len(files) != num_examples:
        return None, (
            f"The test split of '{name}' now has {len(files)} images but the evaluation has {num_examples} (some "
            "files could not be read), so images cannot be matched to their files: no fix controls are shown. "
            "Fix the dataset on the Data page."
        )
    return Cleaning(name, [f"{path.parent.name}/{path.name}" for path in files], class_names), None


def gallery(
    run_id: str,
    items: list[tuple[int, str]],
    fingerprint: str,
    cleaning: Cleaning | None,
    key: str,
    columns: int = 6,
) -> None:
    """Test images by example index, each with a caption; with ``cleaning``, a label and a Remove button under
    each (``key`` tells this gallery's widgets from another's showing the same image)."""
    if not items:
        return
    images = images_for(run_id, tuple(index for index, _ in items), fingerprint)
    for start in range(0, len(items), columns):
        row = items[start : start + columns]
        for col, image, (_, caption) in zip(st.columns(columns), images[start : start + columns], row):
            col.image(image, caption=caption, width="stretch")
        if cleaning is not None:  # a row of their own: captions of one, two or three lines leave them aligned
            for col, (index, _) in zip(st.columns(columns), row):
                ref = cleaning.refs[index]
                image_fix(cleaning.dataset, ref, cleaning.class_names, key=f"{key}_{ref}", container=col)


st.title("Evaluate")
runs.reconcile()
records = {r.id: r for r in runs.list_runs(owner=learners.scope(state.learner(), "evaluate_scope")) if r.model_path}
if not records:
    st.info("No run has a saved model yet. Train one on the Train page: a model is saved after every epoch.")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

run_id = st.selectbox("Run", list(records), format_func=lambda rid: run_label(rid, records), key="evaluate_run")
test_data = records[run_id].config.data
differences = {
    rid: evaluation.data_split_difference(test_data, records[rid].config.data) for rid in records if rid != run_id
}
same_test = [rid for rid, difference in differences.items() if difference is None]
other = st.selectbox(
    "Compare with (optional; runs tested on the same images)",
    [NONE, *same_test],
    format_func=lambda rid: rid if rid == NONE else run_label(rid, records),
    key="evaluate_versus",
    help="E.g. a frozen run against its fine-tuned child: the notebook's exercise 4-15.",
)
if len(same_test) < len(differences):
    st.caption(
        f"{len(differences) - len(same_test)} other run(s) were tested on other images (another data "
        "source or test subset), so their numbers cannot be compared with this run's and are not offered.",
        help="\n".join(
            f"- {literal(run_label(rid, records))}: {literal(difference)}"
            for rid, difference in differences.items()
            if difference
        ),
    )

try:
    fingerprint = data.data_fingerprint(test_data)
    predictions = predictions_for(run_id, records)
    metrics = evaluation.compute_metrics(predictions)
    other_predictions = predictions_for(other, records) if other != NONE else None
except TransferLabError as error:
    show_error(error)
    if test_data.kind == "local" and datasets.exists(test_data.location):
        trash_section(test_data.location, key="evaluate_trash")  # a removal may be what broke the test split
    st.stop()
cleaning, no_cleaning = cleaning_for(test_data, predictions.num_examples)

deltas = {}
if other_predictions is not None:
    mismatch = evaluation.predictions_difference(other_predictions, predictions)
    if mismatch:
        show_error(
            f"Not compared with {run_label(other, records)}: {mismatch}. Numbers from different test "
            "images cannot be compared, so no differences are shown."
        )
    else:
        compared = evaluation.compare(evaluation.compute_metrics(other_predictions), metrics)
        deltas = {d.metric: d.delta for d in compared}
        st.caption(
            f"Differences below: this run minus **{literal(run_label(other, records))}**, on the same "
            f"{predictions.num_examples:,} test images."
        )
for col, (label, value) in zip(st.columns(4), metrics.headline().items()):
    delta = deltas.get(label)
    col.metric(label, f"{value:.3f}", delta=f"{delta:+.3f}" if delta is not None else None)
st.caption(
    f"{metrics.num_examples:,} test images · {predictions.num_classes} classes · the model saved at the "
    "best validation accuracy (else the last epoch)."
)
if cleaning is not None:
    st.info(
        f"This run was trained on your dataset **{literal(cleaning.dataset)}**: under each image in the galleries "
        "below, choose its right class to move it there, or remove it to the trash. The numbers are then "
        "re-computed on the changed test split, and the next run trains on the fixed data.",
        icon=":material/cleaning_services:",
    )
elif no_cleaning:
    st.caption(literal(no_cleaning))

st.subheader("Confusion matrix")
order_name = (
    st.segmented_control("Order", list(evaluation.ORDERINGS), default="Class order", key="evaluate_order")
    or "Class order"
)
cm = predictions.confusion_matrix()
heatmap = st.plotly_chart(
    figures.confusion_heatmap(cm, predictions.class_names, evaluation.ORDERINGS[order_name](cm)),
    on_select="rerun",
    selection_mode="points",
    key="evaluate_heatmap",
)
st.caption(
    "Colour: log((count + 1) / row total), the notebook's log view. Bright off-diagonal cells are the "
    "confusions. **Click a cell** to see the test images behind it."
)
cell = figures.selected_cell(heatmap.selection) if heatmap else None
if cell:
    true_class, predicted_class = cell
    examples = evaluation.cell_examples(predictions, true_class, predicted_class)
    names = predictions.class_names
    st.markdown(
        f"**{len(examples)} test image(s) of {literal(names[true_class])} predicted as "
        f"{literal(names[predicted_class])}**"
    )
    gallery(
        run_id,
        [(e.index, f"p({names[predicted_class]}) = {e.predicted_probability:.2f}") for e in examples[:24]],
        fingerprint,
        cleaning,
        key="evaluate_cell",
    )
    on_the_map(run_id, [e.index for e in examples], key="evaluate_cell_map")

left, right = st.columns([3, 2])
with left:
    st.subheader("Per class")
    st.dataframe(
        metrics.per_class_rows(),
        hide_index=True,
        key="evaluate_per_class",
        column_config={name: st.column_config.NumberColumn(format="%.3f") for name in ("precision", "recall", "f1")},
    )
with right:
    st.subheader("Most confused")
    confused = evaluation.most_confused(cm, predictions.class_names)[:15]
    if confused:
        st.dataframe([c._asdict() for c in confused], hide_index=True, key="evaluate_most_confused")
    else:
        st.success("No confusions at all on this test split.")

st.subheader("Top losses")
st.caption("The test images the model was most confidently wrong about (highest cross-entropy loss).")
losses = evaluation.top_losses(predictions, k=12)
gallery(
    run_id,
    [(t.index, f"{t.true} → {t.predicted} ({t.probability:.2f}), loss {t.loss:.2f}") for t in losses],
    fingerprint,
    cleaning,
    key="evaluate_losses",
)
on_the_map(run_id, [t.index for t in losses], key="evaluate_losses_map")
if cleaning is not None:
    trash_section(cleaning.dataset, key="evaluate_trash")

"""Explore: the dataset's images in a backbone's feature space. Why transfer learning works (ImageNet features
cluster the classes, random ones do not), the evidence behind a run's mistakes, and fixing the data there."""

import streamlit as st

from core import data, datasets, explore, figures, heavy_work, runs
from core.config import DataConfig
from core.errors import TransferLabError
from core.predictions import run_predictions
from dashboard import forms, learners, state
from dashboard.feedback import progress_to
from dashboard.messages import literal, show_error

PREFIX = "explore"
NONE = "(none: the Data page's choice)"
MAX_THUMBS = 24
COLUMNS = 8
SIDE_BY_SIDE = ("imagenet", "random")
REMOVE = "Remove (to the trash)"
NOTES = """
**Exercise 4-13** asks what the task-specific head learns from, and what evidence there is that the model will
generalise. Put *ImageNet* and *random weights* side by side: with ImageNet features the classes already form
clusters before any training on your images (a high kNN accuracy, no training at all), so a small head with few
parameters has little left to learn. Random features mix the classes; the same head scores near chance on them.

**Exercise 4-15** asks whether fine-tuning improved the model, and whether there is evidence of learning. Choose
a fine-tuned run and *this run's backbone*: compare its map and kNN accuracy with the ImageNet ones. Clusters that
tighten (and a higher kNN accuracy) are the backbone's features moving towards your classes.
"""


@st.cache_resource(show_spinner=False, max_entries=8)
def features_for(
    config: DataConfig, fingerprint: str, settings: explore.MapSettings, run_id: str | None, model_version: int
) -> explore.MapFeatures:
    """Once per data version, feature settings and model file; a bar while the backbone extracts."""
    heavy_work.share_tensorflow_with_sessions()
    bar = st.progress(0.0, text=f"Preparing {explore.FEATURE_SOURCES[settings.features].label} features…")
    try:
        with heavy_work.bounded():
            return explore.map_features(config, settings, run_id, progress=progress_to(bar))
    finally:
        bar.empty()


@st.cache_data(show_spinner=False, max_entries=16)
def knn_for(key: str, _features: explore.MapFeatures) -> tuple[float, float]:
    return explore.knn_accuracy(_features), explore.chance(_features)


@st.cache_data(show_spinner=False, max_entries=256)
def thumb(path: str, size: int) -> object:
    return explore.thumbnail(path, size)


def projected(features: explore.MapFeatures, settings: explore.MapSettings):
    """The map's coordinates (cached on disk by core); a bar only while they are computed."""
    slot = st.empty()
    with heavy_work.bounded():
        coordinates = explore.project(features, settings, progress=progress_to(slot))
    slot.empty()
    return coordinates


def predictions_for(run_id: str):
    """The run's test predictions, from the cache beside its model (a bar when they are computed again)."""
    heavy_work.share_tensorflow_with_sessions()
    bar = st.progress(0.0, text="Predicting the run's test images…")
    try:
        with heavy_work.bounded():
            return run_predictions(run_id, progress=progress_to(bar))
    finally:
        bar.empty()


def model_version(run_id: str | None) -> int:
    try:
        return runs.get_run(run_id).model_path.stat().st_mtime_ns if run_id else 0
    except (OSError, AttributeError):
        return 0


def gallery(features: explore.MapFeatures, rows: list[int], captions: list[str], size: int = 128) -> None:
    for start in range(0, len(rows), COLUMNS):
        for col, row, caption in zip(st.columns(COLUMNS), rows[start : start + COLUMNS], captions[start:]):
            col.image(thumb(str(features.files[row]), size), caption=caption, width="stretch")


st.title("Explore")
st.caption(
    "Each point is one image, placed by what a backbone sees in it (its pooled features, drawn in 2-D). Images the "
    "backbone finds alike land together. Select points (click, box or lasso) to see their images."
)
records = {r.id: r for r in runs.list_runs(owner=learners.scope(state.learner(), "explore_scope")) if r.model_path}
highlight = state.map_highlight()
if highlight and highlight != st.session_state.get("explore_highlight_seen"):  # just sent: open on its run
    st.session_state["explore_highlight_seen"] = highlight
    st.session_state["explore_run"] = highlight[0] if highlight[0] in records else NONE
run_id = st.selectbox(
    "Run (optional: marks its mistakes and offers its backbone)",
    [NONE, *records],
    format_func=lambda rid: rid if rid == NONE else f"{records[rid].name} ({records[rid].config.model.regime})",
    key="explore_run",
)
run_id = None if run_id == NONE else run_id
config = records[run_id].config.data if run_id else state.data_config()
st.caption(f"Images of **{literal(config.summary())}**" + ("" if run_id else ", chosen on the Data page."))

current = explore.MapSettings()
left, middle, right = st.columns(3)
choices = [name for name, row in explore.FEATURE_SOURCES.items() if run_id or not row.needs_run]
if st.session_state.get("explore_features", choices[0]) not in choices:  # 'run' chosen, then the run cleared
    del st.session_state["explore_features"]
source = forms.render(
    current, "features", PREFIX, left, choices=choices, format_func=lambda n: explore.FEATURE_SOURCES[n].label
)
method = forms.render(current, "method", PREFIX, middle)
with right:
    side_by_side = st.toggle("ImageNet and random weights side by side", key="explore_side_by_side")
with st.expander("Map settings"):
    columns = st.columns(3)
    values = {
        name: forms.render(current, name, PREFIX, col)
        for name, col in zip(("perplexity", "image_size", "seed"), columns)
    }
try:
    settings = explore.MapSettings(features=source, method=method, **values)
    fingerprint = data.data_fingerprint(config)
except TransferLabError as error:
    show_error(error)
    st.stop()

sources = list(SIDE_BY_SIDE) if side_by_side else [settings.features]
maps: dict[str, tuple[explore.MapFeatures, object]] = {}
try:
    for name in sources:
        chosen = settings.replace(features=name)
        uses_run = explore.FEATURE_SOURCES[name].needs_run
        features = features_for(
            config,
            fingerprint,
            chosen.for_features(),
            run_id if uses_run else None,
            model_version(run_id) if uses_run else 0,
        )
        maps[name] = (features, projected(features, chosen))
    predictions = predictions_for(run_id) if run_id else None
except TransferLabError as error:
    show_error(error)
    st.stop()

first = maps[sources[0]][0]
evidence = explore.run_on_map(first, predictions) if predictions is not None else None
if predictions is not None and evidence is None:
    st.caption(
        "The run was tested on other images than these (the data changed since), so its mistakes are not marked."
    )
predicted = evidence.predicted if evidence else [None] * len(first)
highlight_rows = first.rows_of_test_images(list(highlight[1])) if highlight and highlight[0] == run_id else []
hover = [
    f"{first.class_names[label]} · {'test' if test else 'train'} · {path.name}"
    + (f" · predicted {predicted[row]}" if predicted[row] else "")
    for row, (label, test, path) in enumerate(zip(first.labels, first.is_test, first.files))
]

version = st.session_state.get("explore_map_version", 0)  # a fix re-lists the images: old selections mean others
selected: list[int] = []
for col, name in zip(st.columns(len(sources)), sources):
    features, coordinates = maps[name]
    row = explore.FEATURE_SOURCES[name]
    accuracy, chance = knn_for(features.key, features)
    with col:
        st.markdown(f"**{row.label}** · {settings.method}")
        event = st.plotly_chart(
            figures.feature_map(
                coordinates,
                features.labels,
                features.is_test,
                features.class_names,
                hover,
                mistakes=evidence.mistakes if evidence else None,
                highlighted=highlight_rows,
            ),
            on_select="rerun",
            selection_mode=("points", "box", "lasso"),
            key=f"explore_map_{name}_{version}",
        )
        st.metric(
            "kNN accuracy (k = 5, full feature space)",
            f"{accuracy:.1%}",
            help="Each test image gets the class most of its 5 most similar training images (cosine) have: no "
            f"training at all. Guessing the commonest class scores {chance:.1%}.",
        )
        st.caption(row.teaches)
    selected += [
        r for r in explore.selected_rows(event.selection if event else None, len(features)) if r not in selected
    ]
if highlight and not selected:
    selected = highlight_rows
    if highlight_rows:
        st.info(f"{len(highlight_rows)} test image(s) sent from the Evaluate page are starred on the map.")
if highlight and st.button("Clear the images sent from Evaluate", key="explore_clear_highlight"):
    state.clear_map_highlight()
    st.rerun()

with st.expander("What to look for: the notebook's exercises 4-13 and 4-15"):
    st.markdown(NOTES)

outcome = st.session_state.pop("explore_fix_outcome", None)
if outcome:
    before, after, applied = outcome
    st.success(" ".join(applied) or "Nothing changed.")
    st.metric(
        f"Head's test accuracy ({explore.HEAD_EPOCHS} epochs on the cached features, {after.seconds:.1f} s)",
        f"{after.accuracy:.1%}",
        delta=f"{after.accuracy - before.accuracy:+.1%}",
    )

if not selected:
    st.stop()
chosen_rows = explore.describe_rows(first, selected)
st.subheader(f"{len(selected)} selected image(s)")
shown = chosen_rows[:MAX_THUMBS]
gallery(first, [s.row for s in shown], [f"{s.class_name} ({s.split})" for s in shown])
if len(selected) > MAX_THUMBS:
    st.caption(f"The first {MAX_THUMBS} are shown.")

st.subheader("One image up close")
row = st.selectbox(
    "Image",
    [s.row for s in chosen_rows],
    format_func=lambda r: hover[r],
    key="explore_point",
)
image_col, neighbours_col = st.columns([1, 3])
with image_col:
    st.image(thumb(str(first.files[row]), 224), width="stretch")
    st.markdown(f"Label: **{literal(first.class_names[first.labels[row]])}**")
    if predicted[row]:
        st.markdown(f"The run predicts: **{literal(predicted[row])}**")
with neighbours_col:
    nearest = explore.nearest_training(first, row)
    st.markdown(f"Its nearest training images ({explore.FEATURE_SOURCES[sources[0]].label}, cosine):")
    gallery(
        first,
        [n.row for n in nearest],
        [f"{first.class_names[first.labels[n.row]]} · {n.similarity:.2f}" for n in nearest],
    )

if config.kind != "local":
    st.caption("To relabel or remove images from here, make them a dataset of your own on the Data page (My datasets).")
    st.stop()
summary = datasets.summary(config.location)
if not learners.may_change(state.learner(), summary.owner):
    st.caption(
        f"'{literal(config.location)}' is {literal(learners.owner_label(summary.owner))}'s dataset: only they "
        "or the instructor can change its images."
    )
    st.stop()
st.subheader("Fix the selected images and retrain")
action = st.selectbox("Move them to", [*summary.class_names, REMOVE], key="explore_fix_action")
if st.button(
    f"Apply to {len(selected)} image(s) and retrain the head",
    key="explore_fix",
    icon=":material/build:",
    type="primary",
):
    changes = [explore.Change(r, None if action == REMOVE else action) for r in selected]
    try:
        with st.spinner("Changing the images and retraining the head on the cached features…"), heavy_work.bounded():
            result = explore.fix_and_retrain(first, changes, others=[maps[name][0] for name in sources[1:]])
    except TransferLabError as error:
        show_error(error)
        st.stop()
    st.session_state["explore_fix_outcome"] = (result.before, result.after, result.applied)
    st.session_state["explore_map_version"] = version + 1
    state.clear_map_highlight()  # test positions name other images once the split is listed again
    st.rerun()

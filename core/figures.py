"""Every chart the app shows, as plotly figures built from plain numbers.

Pages call these and pass the result to ``st.plotly_chart``; nothing here knows about Streamlit.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.data import DatasetInfo
from core.evaluation import log_confusion

TRAIN_COLOUR = "#2563eb"
TEST_COLOUR = "#f59e0b"


def class_balance(info: DatasetInfo) -> go.Figure:
    """Images per class in each split, as grouped bars (horizontal when there are many classes)."""
    many = info.num_classes > 20
    fig = go.Figure()
    for split, counts, colour in (("train", info.train_counts, TRAIN_COLOUR), ("test", info.test_counts, TEST_COLOUR)):
        if not counts:
            continue
        if many:
            fig.add_bar(y=info.class_names, x=counts, name=split, orientation="h", marker_color=colour)
        else:
            fig.add_bar(x=info.class_names, y=counts, name=split, marker_color=colour)
    fig.update_layout(
        barmode="group",
        title="Images per class",
        height=max(320, 14 * info.num_classes) if many else 360,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=1.08, x=1, xanchor="right"),
    )
    axis = dict(title="images")
    fig.update_xaxes(**axis) if many else fig.update_yaxes(**axis)
    return fig


CONFUSION_COLOURSCALE = "Viridis"  # the notebook's imshow default: bright cells are frequent
CONFUSION_HOVER = (
    "True: <b>%{y}</b><br>Predicted: <b>%{x}</b><br>Images: %{customdata[2]}"
    "<br>Share of the true class: %{customdata[3]:.1%}<extra></extra>"
)


def confusion_heatmap(cm: np.ndarray, class_names: Sequence[str], order: Sequence[int] | None = None) -> go.Figure:
    """The notebook's log confusion matrix as an interactive heatmap (y = true class, x = predicted).

    Colour is ``core.evaluation.log_confusion`` (``log((count + 1) / row total)``); rows of classes
    with no test images are left blank. ``order`` (e.g. ``core.evaluation.cluster_order(cm)``)
    permutes rows and columns alike. Hovering shows both class names, the count and the share of
    the true class's images.

    Clicking: plotly heatmaps cannot be selected, so every non-empty cell also carries an invisible
    square marker (trace 1) that can; a clicked cell gets a white outline. Both traces carry
    ``customdata = [true index, predicted index, count, row share]`` in the *original* class
    indices, whatever the order. With
    ``event = st.plotly_chart(fig, on_select="rerun", selection_mode="points")``,
    ``selected_cell(event.selection)`` returns ``(true index, predicted index)`` of the clicked cell,
    or None; ``core.evaluation.cell_examples`` then lists its test images. (Checked in Chromium with
    Streamlit 1.67: a click selects one point of trace 1, whose ``customdata`` arrives as
    ``{"0": i, "1": j, "2": count, "3": share}`` because plotly ships numpy arrays as typed arrays;
    ``selected_cell`` reads that and the list form.)
    """
    cm = np.asarray(cm)
    n = len(cm)
    order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    names = np.array(_unique_labels([class_names[i] for i in order]), dtype=object)
    counts = cm[np.ix_(order, order)]
    totals = counts.sum(axis=1)
    z = log_confusion(counts)
    z[totals == 0] = np.nan
    shares = counts / np.maximum(totals, 1)[:, None]
    rows, cols = np.meshgrid(order, order, indexing="ij")
    customdata = np.stack([rows, cols, counts, shares], axis=-1).astype(np.float32)
    few = n <= 40
    height = int(min(max(450, (22 if few else 13) * n + 220), 2000))
    cell_px = float(np.clip((height - 220) / max(n, 1), 6, 60))
    filled_r, filled_c = np.nonzero(counts)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            customdata=customdata,
            colorscale=CONFUSION_COLOURSCALE,
            hoverongaps=False,
            colorbar=dict(title=dict(text="Log count<br><sup>log((count+1)/row total)</sup>", side="right")),
            hovertemplate=CONFUSION_HOVER,
            name="confusion",
        )
    )
    fig.add_scatter(
        x=names[filled_c],
        y=names[filled_r],
        customdata=customdata[filled_r, filled_c],
        mode="markers",
        hovertemplate=CONFUSION_HOVER,
        showlegend=False,
        name="cells",
        marker=dict(symbol="square-open", size=cell_px, color="white", opacity=0, line=dict(width=2)),
        selected=dict(marker=dict(opacity=1)),
        unselected=dict(marker=dict(opacity=0)),
    )
    font_size = 11 if few else 8
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        clickmode="event+select",
        dragmode="zoom",
        hovermode="closest",
    )
    fig.update_xaxes(
        title="Predicted class",
        type="category",
        tickangle=-45 if few else -90,
        tickfont=dict(size=font_size),
        automargin=True,
        showgrid=False,
    )
    fig.update_yaxes(
        title="True class",
        type="category",
        autorange="reversed",
        tickfont=dict(size=font_size),
        automargin=True,
        showgrid=False,
    )
    return fig


def selected_cell(selection: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """``(true index, predicted index)`` of the confusion cell a Streamlit selection points at, or None."""
    points = (selection or {}).get("points") or []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, Mapping):  # a typed array slice arrives as {"0": ..., "1": ...}
            data = [data.get(str(i), data.get(i)) for i in range(2)]
        if isinstance(data, (list, tuple)) and len(data) >= 2 and None not in data[:2]:
            return int(data[0]), int(data[1])
    return None


def _unique_labels(names: list[str]) -> list[str]:
    """Category axes merge equal labels; number repeated names so every class keeps its own row."""
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return labels


# ---------------------------------------------------------------- training curves

CURVES = (  # (metric, legend, panel, dashed)
    ("accuracy", "train accuracy", 1, False),
    ("val_accuracy", "validation accuracy", 1, False),
    ("top5_accuracy", "top-5 train accuracy", 1, True),
    ("val_top5_accuracy", "top-5 validation accuracy", 1, True),
    ("loss", "train loss", 2, False),
    ("val_loss", "validation loss", 2, False),
)
MAX_EPOCH_TICKS = 10
RUN_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f")


def _curve_panels(title_suffix: str = "") -> go.Figure:
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"model accuracy{title_suffix}", f"model loss{title_suffix}"),
        horizontal_spacing=0.08,
    )
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="loss", rangemode="tozero", row=1, col=2)
    fig.update_layout(
        height=380,
        margin=dict(l=10, r=10, t=40, b=10),
        hovermode="x unified",
        legend=dict(orientation="h", y=-0.22),
        uirevision="keep",
    )
    return fig


def epoch_tick_step(last_epoch: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... that puts at most MAX_EPOCH_TICKS ticks up to ``last_epoch``."""
    steps = (factor * 10**power for power in itertools.count() for factor in (1, 2, 5))
    return next(step for step in steps if last_epoch / step <= MAX_EPOCH_TICKS)


def _whole_epoch_ticks(fig: go.Figure, xs: Sequence[int]) -> None:
    """Epochs are counted, not measured: plotly's own ticks would fall on 1.5, 2.5..."""
    fig.update_xaxes(tick0=0, dtick=epoch_tick_step(max(xs, default=1)), tickformat="d")


def training_curves(epochs: list, offset: int = 0) -> go.Figure:
    """The notebook's two charts for one run: accuracy (and top-5) and loss, per epoch.

    ``epochs`` are records with the metric attributes of ``core.runs.EpochRecord``; ``offset``
    shifts the epoch numbers (a fine-tune run continues after its parent's epochs).
    """
    fig = _curve_panels()
    xs = [offset + e.epoch for e in epochs]
    for metric, legend, panel, dashed in CURVES:
        colour = TRAIN_COLOUR if not metric.startswith("val_") else TEST_COLOUR
        fig.add_scatter(
            x=xs,
            y=[getattr(e, metric) for e in epochs],
            name=legend,
            mode="lines+markers",
            line=dict(color=colour, dash="dot" if dashed else "solid"),
            row=1,
            col=panel,
        )
    _whole_epoch_ticks(fig, xs)
    return fig


def compare_runs(runs: list[tuple[str, list, int]]) -> go.Figure:
    """Several runs on the same axes, one colour per run (a legend group each).

    ``runs`` holds ``(name, epochs, offset)``; solid lines are validation, dotted lines training,
    so scratch vs frozen vs fine-tune reads as one chart.
    """
    fig = _curve_panels(" (solid: validation, dotted: training)")
    all_epochs = []
    for index, (name, epochs, offset) in enumerate(runs):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        xs = [offset + e.epoch for e in epochs]
        all_epochs += xs
        for metric, panel in (("val_accuracy", 1), ("accuracy", 1), ("val_loss", 2), ("loss", 2)):
            training = not metric.startswith("val_")
            fig.add_scatter(
                x=xs,
                y=[getattr(e, metric) for e in epochs],
                mode="lines+markers",
                name=f"{name} ({'train' if training else 'validation'})",
                legendgroup=f"run{index}",
                showlegend=metric in ("val_accuracy", "accuracy"),
                line=dict(color=colour, dash="dot" if training else "solid"),
                row=1,
                col=panel,
            )
    _whole_epoch_ticks(fig, all_epochs)
    return fig


# ---------------------------------------------------------------- classifying photos

PREDICTION_COLOUR = "#2563eb"
OTHER_CLASS_COLOUR = "#94a3b8"


def top_k_bars(top: Sequence[tuple[str, float]], title: str = "") -> go.Figure:
    """A photo's most probable classes as horizontal bars, the most probable on top and highlighted.

    ``top`` is ``(class name, probability)`` pairs, most probable first (``Result.top`` of
    ``core.serving.classification``). The axis always spans 0..1, so a hesitant model looks hesitant next
    to a confident one.
    """
    labels = _unique_labels([str(name) for name, _ in top])
    probabilities = [float(p) for _, p in top]
    fig = go.Figure(
        go.Bar(
            x=probabilities,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in probabilities],
            textposition="auto",
            cliponaxis=False,
            marker_color=[PREDICTION_COLOUR if i == 0 else OTHER_CLASS_COLOUR for i in range(len(labels))],
            hovertemplate="<b>%{y}</b><br>probability %{x:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, 1], tickformat=".0%", dtick=0.25, title_text="probability", fixedrange=True)
    fig.update_yaxes(autorange="reversed", fixedrange=True, automargin=True)
    fig.update_layout(
        title=title or None,
        height=80 + 34 * max(len(labels), 1),
        margin=dict(l=10, r=30, t=40 if title else 10, b=10),
        showlegend=False,
    )
    return fig


# ---------------------------------------------------------------- the Explore page's feature map

MAP_SYMBOLS = {False: "circle", True: "diamond"}  # training points, test points
MISTAKE_COLOUR = "#dc2626"
HIGHLIGHT_COLOUR = "#111827"
MAP_HOVER = "<b>%{text}</b><extra></extra>"


def class_colours(count: int) -> list[str]:
    """One colour per class: plotly's ten for up to ten classes, its 24 + 24 after that (repeating past 48)."""
    from plotly.colors import qualitative

    palette = qualitative.Plotly if count <= len(qualitative.Plotly) else qualitative.Dark24 + qualitative.Light24
    return [palette[i % len(palette)] for i in range(count)]


def feature_map(
    coordinates: np.ndarray,
    labels: np.ndarray,
    is_test: np.ndarray,
    class_names: Sequence[str],
    hover: Sequence[str],
    *,
    title: str = "",
    mistakes: np.ndarray | None = None,
    highlighted: Sequence[int] = (),
    height: int = 560,
) -> go.Figure:
    """One point per image at its 2-D projection, coloured by class; training points round, test points diamonds.

    Every point carries its row (the index into ``coordinates``) as ``customdata``, whatever trace it is in, so
    ``core.explore.selected_rows`` maps a click, box or lasso selection back to images. ``mistakes`` (a boolean per
    row) rings the test points a run got wrong in red; ``highlighted`` rows (sent from the Evaluate page) get a
    dark ring. ``hover`` is each row's text (class, file, split, prediction).
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    labels, is_test = np.asarray(labels), np.asarray(is_test, dtype=bool)
    colours = class_colours(len(class_names))
    fig = go.Figure()

    def add(rows: np.ndarray, **trace: Any) -> None:
        fig.add_scatter(
            x=coordinates[rows, 0].tolist(),
            y=coordinates[rows, 1].tolist(),
            customdata=[[int(row)] for row in rows],
            text=[hover[row] for row in rows],
            hovertemplate=MAP_HOVER,
            mode="markers",
            **trace,
        )

    for label, name in enumerate(class_names):
        for test in (False, True):
            rows = np.flatnonzero((labels == label) & (is_test == test))
            if len(rows):
                add(
                    rows,
                    name=f"{name} ({'test' if test else 'train'})",
                    legendgroup=name,
                    marker=dict(color=colours[label], symbol=MAP_SYMBOLS[test], size=9 if test else 7, opacity=0.85),
                )
    if mistakes is not None and np.any(mistakes):
        add(
            np.flatnonzero(mistakes),
            name="misclassified by the run",
            marker=dict(symbol="circle-open", size=15, color=MISTAKE_COLOUR, line=dict(width=2)),
        )
    if len(highlighted):
        add(
            np.asarray(highlighted, dtype=np.int64),
            name="sent from Evaluate",
            marker=dict(symbol="star-open", size=18, color=HIGHLIGHT_COLOUR, line=dict(width=2)),
        )
    fig.update_layout(
        title=title or None,
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        dragmode="lasso",
        clickmode="event+select",
        hovermode="closest",
        legend=dict(itemsizing="constant", font=dict(size=10)),
    )
    fig.update_xaxes(showticklabels=False, zeroline=False, title=None)
    fig.update_yaxes(showticklabels=False, zeroline=False, title=None, scaleanchor="x", scaleratio=1)
    return fig

"""Every chart the app shows, as plotly figures built from plain numbers.

Pages call these and pass the result to ``st.plotly_chart``; nothing here knows about Streamlit.
"""

from __future__ import annotations

import plotly.graph_objects as go

from core.data import DatasetInfo

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
        barmode="group", title="Images per class", height=max(320, 14 * info.num_classes) if many else 360,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=1.08, x=1, xanchor="right"),
    )
    axis = dict(title="images")
    fig.update_xaxes(**axis) if many else fig.update_yaxes(**axis)
    return fig

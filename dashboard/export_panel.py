"""The Train page's Export section for the chosen run: convert to the formats people deploy, follow the
conversion, read its verification, download what verified.

Conversions run in their own process (``core.exports.start_exports``); this panel only reads their status files,
in a fragment that refreshes every 2 s while one runs and once more when the last one ends.
"""

from __future__ import annotations

import streamlit as st

from core import exports, runs
from core.errors import TransferLabError
from core.export import download_stem
from dashboard.messages import show_error

POLL_S = 2.0
MARKS = {
    exports.NOT_CONVERTED: "–",
    exports.QUEUED: "⏳ queued",
    exports.RUNNING: "⚙️ converting",
    exports.FAILED: "❌ failed",
    exports.OUTDATED: "↻ outdated",
}


def export_panel(run_id: str) -> None:
    """Export the chosen run: once it has a saved model, a Convert button per format (or all) and the results."""
    try:
        record = runs.get_run(run_id)
    except TransferLabError:
        return
    st.subheader("Export", anchor=False)
    if record.model_path is None:
        st.caption("Export becomes possible once the run has saved a model (after its first epoch).")
        return
    st.caption(
        "Take the model anywhere: each export is checked on the run's test split against the Keras model "
        "before it is offered."
    )
    choice, button = st.columns([3, 1], vertical_alignment="bottom")
    names = [exports.ALL, *exports.FORMATS]
    picked = choice.selectbox(
        "Format",
        names,
        key="export_format",
        format_func=lambda name: "All formats" if name == exports.ALL else exports.FORMATS[name].label,
    )
    if button.button("Convert", key="export_convert", icon=":material/deployed_code:"):
        try:
            exports.start_exports(run_id, picked)
        except TransferLabError as error:
            show_error(error)
    busy = any(state.busy for state in exports.export_states(run_id))
    st.fragment(export_results, run_every=POLL_S if busy else None)(run_id, record)


def export_results(run_id: str, record) -> None:
    try:
        states = exports.export_states(run_id)
    except TransferLabError:  # the run was deleted since the page drew it
        return
    busy = any(state.busy for state in states)
    polling = f"export_polling_{run_id}"
    if st.session_state.get(polling) and not busy:  # the last conversion ended: redraw without polling
        st.session_state[polling] = False
        st.rerun(scope="app")
    st.session_state[polling] = busy
    for state in states:
        if state.busy:
            st.progress(state.fraction, text=f"{state.export_format.label}: {state.phase}")
    st.dataframe([row(state) for state in states], hide_index=True, key="export_table", width="stretch")
    for state in states:
        if state.state == exports.FAILED:
            show_error(f"{state.export_format.label}: {state.error}")
        elif state.state == exports.OUTDATED:
            st.info(f"{state.export_format.label}: {state.error}", icon=":material/update:")
    stem = download_stem(record)
    for state in states:
        if state.state == exports.DONE:
            download(state, f"{stem}-{state.export_format.name}.zip")


def row(state: exports.ExportState) -> dict:
    report = state.report if state.state == exports.DONE else None
    status = MARKS.get(state.state, "")
    if report is not None:
        status = "✅ verified" if report.passed else f"⚠️ below {report.threshold:.2f}"
    return {
        "format": state.export_format.label,
        "for": state.export_format.use,
        "status": status,
        "size (MB)": f"{report.size_mb:.1f}" if report else "",
        "agreement": f"{report.agreement:.3f}" if report else "",
        "accuracy": f"{report.accuracy:.3f}" if report else "",
        "latency (ms)": f"{report.latency_ms:.1f}" if report else "",
    }


def download(state: exports.ExportState, file_name: str) -> None:
    """A verified export is a plain download; a flagged one says why and waits for "download anyway"."""
    name, report = state.export_format.name, state.report
    if not state.verified:
        st.warning(
            f"{state.export_format.label} agrees with the Keras model on only {report.agreement:.1%} of "
            f"{report.images} test images (at least {report.threshold:.0%} is expected): it would give other "
            "answers than the model you trained.",
            icon=":material/warning:",
        )
        if not st.checkbox(f"Download the {state.export_format.label} export anyway", key=f"export_anyway_{name}"):
            return
    st.download_button(
        f"{state.export_format.label} (.zip)",
        state.archive.read_bytes,
        file_name=file_name,
        mime="application/zip",
        key=f"export_download_{name}",
        icon=":material/download:",
        on_click="ignore",
    )

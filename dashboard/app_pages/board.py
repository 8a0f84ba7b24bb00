"""Class board (classroom mode only): every learner's best run in one table and one chart, the class queue in
the order it will train, and for the instructor: stop or delete any run, and the class's limits."""

import time

import streamlit as st

from core import class_board, classroom, figures, runs
from core.classroom import ClassLimits
from core.errors import TransferLabError
from dashboard import forms, learners, state
from dashboard.messages import literal, show_error

PREFIX = "board"
CURVES_SHOWN = 8  # more lines than this and the chart stops being readable


def run_label(record: runs.RunRecord) -> str:
    return (
        f"{learners.owner_label(record.owner)} · {record.name} · "
        f"{time.strftime('%H:%M', time.localtime(record.created_at))} · {record.status}"
    )


@st.fragment(run_every=3.0)
def standings() -> None:
    rows = class_board.learner_rows()
    if not rows:
        st.info("No runs yet: when learners launch runs on the Train page, their best ones appear here.")
        return
    st.dataframe(
        [
            {
                "learner": learners.owner_label(row.learner or None),
                "best run": row.best.name,
                "best val. acc.": row.best.best_val_accuracy,
                "status": row.best.status,
                "regime": row.best.regime,
                "runs": row.runs_made,
                "active": row.active,
                "settings": row.settings,
            }
            for row in rows
        ],
        hide_index=True,
        width="stretch",
        key=f"{PREFIX}_table",
        column_config={
            "best val. acc.": st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0),
            "runs": st.column_config.NumberColumn(width="small"),
            "active": st.column_config.NumberColumn(width="small", help="Runs of this learner waiting or training"),
            "settings": st.column_config.TextColumn(width="large"),
        },
    )
    scored = [row for row in rows if row.best.epochs_done][:CURVES_SHOWN]
    if scored:
        st.plotly_chart(
            figures.compare_runs(
                [
                    (f"{learners.owner_label(row.learner or None)}: {row.best.name}", runs.epochs(row.best.id), 0)
                    for row in scored
                ]
            ),
            key=f"{PREFIX}_curves",
        )
        if len(rows) > len(scored):
            st.caption(f"Curves of the {len(scored)} best runs with a finished epoch.")
    waiting = runs.queue()
    training = runs.running_run()
    st.markdown("**Class queue** (round-robin across learners)")
    if training is None and not waiting:
        st.caption("Nothing is training or waiting.")
        return
    st.dataframe(
        ([{"": "training", "learner": learners.owner_label(training.owner), "run": training.name}] if training else [])
        + [
            {"": f"{position}.", "learner": learners.owner_label(r.owner), "run": r.name}
            for position, r in enumerate(waiting, start=1)
        ],
        hide_index=True,
        key=f"{PREFIX}_queue",
    )


def manage_runs() -> None:
    """Stop or delete any learner's run."""
    records = {r.id: r for r in runs.list_runs()}
    if not records:
        return
    chosen = st.selectbox("Run", list(records), format_func=lambda rid: run_label(records[rid]), key=f"{PREFIX}_run")
    record = records[chosen]
    stop = ("Stop it", "stop", ":material/stop_circle:", runs.request_stop, "Stopping")
    delete = ("Delete it", "delete", ":material/delete:", runs.delete_run, "Deleted")
    label, key, icon, act, done = stop if record.is_active else delete
    if st.button(label, key=f"{PREFIX}_{key}", icon=icon):
        try:
            act(record.id, learner)
        except TransferLabError as error:
            show_error(error)
        else:
            st.toast(f"{done} {record.name}.")
            st.rerun()


def limits_form() -> None:
    current = classroom.limits()
    with st.form(f"{PREFIX}_limits_form"):
        values = {
            f.name: forms.render_field(f, current, PREFIX, key=f"{PREFIX}_{f.name}")
            for f in forms.setting_fields(ClassLimits)
        }
        saved = st.form_submit_button("Save the limits", icon=":material/save:")
    if saved:
        try:
            classroom.set_limits(ClassLimits(**values))
        except TransferLabError as error:
            show_error(error)
        else:
            st.toast("Saved: every launch from now on is checked against them.")
            st.rerun()


st.title("Class board")
learner = state.learner()
if learner is None:  # the page is listed only in a class; an old bookmark outside one
    st.info("The class board exists in classroom mode: start the app with `make run CLASSROOM=1`.")
    st.stop()
runs.reconcile()
st.caption(
    f"Limits for learners: {literal(classroom.limits().summary())}. Runs start round-robin across learners, "
    "so one learner's long list never holds up the class."
)
standings()
if learner.instructor:
    st.subheader("Instructor")
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Any run**")
        manage_runs()
    with right:
        st.markdown("**The class's limits**")
        limits_form()
else:
    st.caption(
        "Instructors: join with the instructor code (Change name, in the sidebar) to stop or delete any run and "
        "set the class's limits."
    )
state.keep_in_url()

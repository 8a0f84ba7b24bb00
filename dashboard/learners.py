"""A class's learners in the pages: joining with a name, "my runs" or "the whole class", who may change what.

Outside a class (``core.classroom.enabled()`` false) nothing here draws anything: ``scope`` is the whole store
and everyone may change everything, so a single user sees no difference.
"""

import streamlit as st

from core import classroom
from core.classroom import Learner
from core.errors import TransferLabError
from dashboard import state
from dashboard.messages import literal, show_error

MINE, CLASS = "Mine", "Whole class"


def join() -> Learner | None:
    """In a class: the learner of this browser, after asking their name once (the page stops until they give
    it). Outside a class: None. The sidebar shows who is signed in, with a way to change it."""
    if not classroom.enabled():
        return None
    learner = state.learner()
    if learner is None:
        _join_form()
        st.stop()
    with st.sidebar:
        role = "instructor" if learner.instructor else "learner"
        st.caption(f"In class as **{literal(learner.name)}** ({role})")
        if st.button("Change name", key="class_leave", icon=":material/logout:", type="tertiary"):
            state.set_learner(None)
            st.rerun()
    return learner


def _join_form() -> None:
    st.title("Join the class")
    st.write(
        "This Transfer Lab is shared by a class. Pick the name the class will see beside your runs and datasets: "
        "it stays in this page's address, so a refresh keeps it (and two browsers with the same name are the "
        "same learner)."
    )
    with st.form("class_join", border=True):
        name = st.text_input("Your name", max_chars=classroom.NAME_MAX, key="class_join_name", placeholder="Ada")
        code = st.text_input(
            "Instructor code (instructors only)",
            type="password",
            key="class_join_code",
            help="Printed by `python -m core.classroom` on the server. Leave it empty if you are a learner.",
        )
        joined = st.form_submit_button("Join", type="primary", icon=":material/login:")
    if not joined:
        return
    try:
        chosen = Learner(classroom.learner_name(name), instructor=classroom.is_instructor_code(code))
    except TransferLabError as error:
        show_error(error)
        return
    if code.strip() and not chosen.instructor:
        show_error("That is not this class's instructor code: check it, or leave it empty to join as a learner.")
        return
    state.set_learner(chosen)
    st.rerun()


def scope(learner: Learner | None, key: str, noun: str = "runs") -> str | None:
    """The owner to list (the learner's own) or None (everyone's): a 'Mine | Whole class' switch in a class,
    nothing outside one."""
    if learner is None:
        return None
    chosen = st.segmented_control(
        f"Whose {noun}", [MINE, CLASS], default=MINE, key=key, format_func=lambda o: f"My {noun}" if o == MINE else o
    )
    return learner.name if (chosen or MINE) == MINE else None


def may_change(learner: Learner | None, owner: str | None) -> bool:
    """Outside a class anyone may; in one, the learner who owns it and the instructor."""
    return learner is None or learner.instructor or learner.owns(owner)


def owner_label(owner: str | None) -> str:
    return owner or "instructor"

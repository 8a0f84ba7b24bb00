"""Transfer Lab: the Streamlit entry point. Run with `make run` (or `streamlit run dashboard/app.py`)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from core import classroom  # noqa: E402
from core.data_home import write_problem  # noqa: E402
from core.errors import DataHomeUnavailable  # noqa: E402
from dashboard import learners, state  # noqa: E402

st.set_page_config(page_title="Transfer Lab", page_icon="🐕", layout="wide")
# In a class (make run CLASSROOM=1) the instructor's board joins the pages.
BOARD = [st.Page("app_pages/board.py", title="Class board", icon=":material/groups:", url_path="board")]
navigation = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/data.py", title="Data", icon=":material/photo_library:", url_path="data"),
        st.Page("app_pages/augment.py", title="Augment", icon=":material/auto_awesome:", url_path="augment"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
        st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:", url_path="evaluate"),
        st.Page("app_pages/classify.py", title="Classify", icon=":material/pets:", url_path="classify"),
        st.Page("app_pages/explore.py", title="Explore", icon=":material/scatter_plot:", url_path="explore"),
    ]
    + (BOARD if classroom.enabled() else [])
)
# A data directory that is read-only, full or a file: said on every page, which still shows what it can read.
problem = write_problem()
if problem:
    st.warning(problem, icon=":material/warning:")
try:
    learners.join()  # in a class: asks this browser's name once, then every page knows whose runs are whose
    navigation.run()
except DataHomeUnavailable as error:
    if str(error) != problem:
        st.error(str(error))
state.keep_in_url()  # after the page: it may have changed the choices

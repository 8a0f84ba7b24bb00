"""The progress callback every long operation takes: ``progress(done, total, message)``.

One alias so that loading data, building models, extracting features and training all report the same
way, and a page can hand any of them the same progress bar.
"""

from collections.abc import Callable

Progress = Callable[[int, int, str], None]

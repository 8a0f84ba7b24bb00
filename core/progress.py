"""The one progress callback type every long step takes.

``progress(done, total, message)``: ``done`` of ``total`` units (batches, files, epochs) are finished, and
``message`` says what is being done, in words a person reads (the CLI prints it, pages show a bar). A
callback may raise to abandon the work it reports on. No TensorFlow here, so any module may import it.
"""

from typing import Callable

Progress = Callable[[int, int, str], None]

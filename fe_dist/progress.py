"""`Progress`: a per-epoch progress bar on rank 0 when it writes to a terminal.

In logs and CI (not a terminal), and by default under mpirun or horovodrun, only the one line
per epoch is printed. ``FE_DIST_PROGRESS=1`` or ``Estimator(progress=True)`` draws it anyway.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from fe_dist.distributed import launched_distributed


def default_enabled(stream: TextIO) -> bool:
    """Whether to draw the bar when the program does not say: ``FE_DIST_PROGRESS=1`` draws it,
    ``FE_DIST_PROGRESS=0`` does not; otherwise only on a terminal and not under a distributed
    launcher. Open MPI gives its ranks a pseudo-terminal when mpirun itself runs in one, so
    under mpirun (and horovodrun) a "terminal" is usually a log being written."""
    setting = os.environ.get("FE_DIST_PROGRESS", "").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)()) and not launched_distributed()


class Progress:
    """Draws ``epoch e [#####.....] s/n steps`` in place, at most every ``interval`` seconds.

    Args:
        stream: Where to draw.
        interval: Seconds between redraws (drawing costs nothing on the steps in between).
        enabled: Draw or not; None decides by `default_enabled`.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 0.2,
                 enabled: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.enabled = default_enabled(self.stream) if enabled is None else enabled
        self.interval = interval
        self._next = 0.0

    def update(self, epoch: int, step: int, steps: int, width: int = 30) -> None:
        """Show that ``step`` of ``steps`` steps of ``epoch`` are done."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next and step < steps:
            return
        self._next = now + self.interval
        filled = int(width * step / max(steps, 1))
        self.stream.write(f"\repoch {epoch} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{step}/{steps} steps")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the bar before the epoch's line is printed."""
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

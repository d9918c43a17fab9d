"""`Progress`: a per-epoch progress bar on rank 0 when it writes to a terminal.

In logs and CI (not a terminal) only the one line per epoch is printed.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Draws ``epoch e [#####.....] s/n steps`` in place, at most every ``interval`` seconds.

    Args:
        stream: Where to draw; nothing is drawn unless it is a terminal.
        interval: Seconds between redraws (drawing costs nothing on the steps in between).
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.stream = stream or sys.stdout
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
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

"""`Watchdog`: ends a stalled distributed job instead of letting it hang.

Under Horovod's Gloo controller a collective that one rank never joins waits forever, and
under MPI Horovod's stall inspector only warns unless told to shut down. fe_dist's own watchdog
works the same on both: while training, every step reports progress; a rank that makes no
progress for ``FE_DIST_STALL_TIMEOUT`` seconds (default 300) prints where it is waiting and
exits, and the launcher then ends the other ranks.

A rank that fires waits a short grace period between its message and its exit: the launcher
kills every rank as soon as one exits, and the rank that went astray (the one whose line is most
useful) usually reaches its own deadline within a second or two of the ranks waiting for it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

DEFAULT_TIMEOUT = 300.0
EXIT_CODE = 75


def grace_seconds(timeout: float) -> float:
    """Seconds between a stall message and the exit, so other stalled ranks print theirs."""
    return min(10.0, max(2.0, timeout / 2))


class Watchdog:
    """Watches one rank's progress from a daemon thread.

    Args:
        rank: This rank.
        size: Number of ranks.
        timeout: Seconds without progress, while armed, that count as a stall.
    """

    def __init__(self, rank: int, size: int, timeout: float | None = None) -> None:
        self.rank = rank
        self.size = size
        self.timeout = timeout if timeout is not None else float(
            os.environ.get("FE_DIST_STALL_TIMEOUT", DEFAULT_TIMEOUT))
        self.hosts = ""  # which host holds which rank, for the stall message (set after sync)
        self._where = "start"
        self._last = time.monotonic()
        self._armed = False
        self._lock = threading.Lock()
        thread = threading.Thread(target=self._watch, name="fe_dist-watchdog", daemon=True)
        thread.start()

    def progress(self, where: str) -> None:
        """Record that this rank is alive and about to do ``where``."""
        self._where, self._last = where, time.monotonic()

    @property
    def armed(self) -> bool:
        """Whether the watchdog is watching now."""
        return self._armed

    def arm(self, armed: bool) -> None:
        """Watch (True) or stop watching (False), e.g. outside ``fit``."""
        with self._lock:
            self._armed = armed
            self._last = time.monotonic()

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            with self._lock:
                waited = time.monotonic() - self._last
                if not self._armed or waited < self.timeout:
                    continue
            sys.stderr.write(
                f"\nfe_dist: stall: rank {self.rank} of {self.size} made no progress for "
                f"{waited:.0f} s; it is at {self._where}. A collective waits until every rank "
                "joins it, so ranks stopped in a collective are waiting for a rank that is "
                "elsewhere (its own line says where) or gone, or on a host this one cannot reach "
                "(a rank with no line of its own is the likely one)."
                + (f" This job's {self.hosts}." if self.hosts else "") +
                f" Ending this job (FE_DIST_STALL_TIMEOUT={self.timeout:g} s).\n")
            sys.stderr.flush()
            time.sleep(grace_seconds(self.timeout))
            os._exit(EXIT_CODE)

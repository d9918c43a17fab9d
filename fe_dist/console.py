"""A quiet console: TensorFlow's C++ start-up lines kept out of every rank's output.

TensorFlow 2.21 writes, on every start and on every rank, lines that are no use to a user of
fe_dist and read like errors on a CPU machine::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

They are written by C++ code straight to file descriptor 2 at ``import tensorflow`` (before
TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL``, so that variable cannot silence them) and when the
devices are first listed (cuInit; an ERROR-level line, shown at ``TF_CPP_MIN_LOG_LEVEL=2``).
`quiet_native_stderr` sends descriptor 2 to a temporary file while those two things happen and
then writes back every line except the known ones, so anything else, a real error included,
still reaches the user (a little later).

Settings (environment):
    FE_DIST_QUIET: "0" writes everything back (nothing filtered). Default "1", or "0" when the
        user set ``TF_CPP_MIN_LOG_LEVEL=0`` (asking for TensorFlow's INFO lines).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import tempfile
from typing import Iterator

# The lines filtered, by pattern. cuInit's failure is only noise where no NVIDIA driver is
# installed; on a GPU machine it is a real error and is kept (see `_noise`).
_ALWAYS = (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"^I0000 .*\] oneDNN custom operations are on",
    r"^I0000 .*\] Could not find cuda drivers on your machine",
    r"^I0000 .*cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate",
)
_NO_DRIVER = (r"^E0000 .*\] failed call to cuInit",)


def enabled() -> bool:
    """Whether known start-up lines are filtered (``FE_DIST_QUIET``, see the module)."""
    default = "0" if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0" else "1"
    return os.environ.get("FE_DIST_QUIET", default).strip() not in ("0", "false", "no", "off")


def has_nvidia_driver() -> bool:
    """True when an NVIDIA driver is loaded (a failed cuInit is then a real error)."""
    return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))


def _noise() -> re.Pattern:
    patterns = _ALWAYS + (() if has_nvidia_driver() else _NO_DRIVER)
    return re.compile("|".join(f"(?:{p})" for p in patterns))


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """While the block runs, hold back what is written to file descriptor 2 (C++ and Python
    alike); afterwards write it back without the known start-up lines. Does nothing when
    filtering is off or descriptor 2 cannot be redirected."""
    if not enabled():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded, closed)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            noise = _noise()
            kept = [line for line in text.splitlines(keepends=True) if not noise.search(line)]
            if kept:
                os.write(2, "".join(kept).encode())


def start_tensorflow() -> None:
    """Import TensorFlow and list its devices (the two moments its C++ start-up lines are
    written) with those lines filtered. When the program imported TensorFlow itself before
    fe_dist, the import-time lines are already out; the device listing's still are not."""
    with quiet_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()

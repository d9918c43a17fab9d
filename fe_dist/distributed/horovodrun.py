"""horovodrun without TensorFlow's start-up lines from horovodrun's own process.

Before it starts a job, horovodrun checks how Horovod was built (``gloo_built``, ``mpi_built``
in horovod/common/util.py): each check forks a child that imports ``horovod.tensorflow``, so
TensorFlow, whose C++ start-up lines (see fe_dist/console.py) go to the descriptor 2 the child
shares with horovodrun. They appear without a ``[rank]`` prefix, and no rank's fe_dist can
filter them.

`main` is horovodrun's command line (``python -m fe_dist.launch``, ``fe-horovodrun``) run in
a process that has imported fe_dist, so TensorFlow, with those lines filtered
(`fe_dist.console`): a check's child is a fork of it, finds TensorFlow loaded and prints none of
them (checked on this machine: the lines are gone with nothing else done). The arguments,
everything else horovodrun prints, and its exit status are horovodrun's: the job runs in
``horovod.runner.launch.run_commandline``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from typing import Iterator

from horovod.runner import launch as hvd_launch

import fe_dist  # noqa: F401 - imports TensorFlow with its start-up lines filtered


@contextlib.contextmanager
def _spawn_children_skip_main() -> Iterator[None]:
    """horovodrun starts each rank through a ``multiprocessing`` spawn child, which first re-runs
    the main module unless it is a package's ``__main__``. Run from a script (the
    ``fe-horovodrun`` console script), that re-run would import fe_dist, so TensorFlow, once
    more per rank (about 3 s of CPU each); naming ``fe_dist.launch.__main__`` as the main
    module's spec while the job runs makes those children skip it (the spawned code is
    Horovod's, nothing of the main module's)."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if main is None or name == "__main__" or name.endswith(".__main__"):
        yield
        return
    saved = main.__spec__
    main.__spec__ = importlib.util.find_spec("fe_dist.launch.__main__")
    try:
        yield
    finally:
        main.__spec__ = saved


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """horovodrun's command line, without TensorFlow's start-up lines from its own process.

    Args:
        argv: horovodrun's arguments (default ``sys.argv[1:]``), passed on unchanged.
        prog: the program name its usage and errors show (default ``sys.argv[0]``).

    Raises:
        SystemExit: as horovodrun does (``--help``, ``--version``, ``--check-build``, a usage
            error).
        RuntimeError: as horovodrun does, when a rank fails (exit status 1).
    """
    sys.argv = [prog or sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    with _spawn_children_skip_main():
        hvd_launch.run_commandline()

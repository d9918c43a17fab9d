"""The ranks of a run: one `Context` per process, made on first use.

The backend is chosen once per process:

- ``init(comm=...)`` with an mpi4py communicator: Horovod on those ranks.
- launched by ``horovodrun`` or ``mpirun`` (their environment variables are set): Horovod.
- otherwise, plain ``python``: the local single-process context.

``FE_DIST_BACKEND=local|horovod|mpi`` forces a backend (``mpi``: plain MPI collectives through
mpi4py, for ``mpirun`` launches, without Horovod's background thread). This package is the only place in fe_dist
that imports horovod.
"""

from __future__ import annotations

import os
from typing import Any

from fe_dist.distributed.context import ALLREDUCE_MODES, COMPRESSIONS, Context
from fe_dist.errors import ConfigError

# Set by horovodrun (Gloo and MPI), by Open MPI's mpirun, and by MPICH/PMIx launchers.
_LAUNCHER_VARIABLES = ("HOROVOD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")

_context: Context | None = None


def launched_distributed() -> bool:
    """True when a distributed launcher started this process."""
    return any(v in os.environ for v in _LAUNCHER_VARIABLES)


def init(comm: Any = None, backend: str | None = None) -> Context:
    """Make this process's context (once; later calls return the same one).

    Call it before creating TensorFlow tensors so the rank can be pinned to its GPU and threads;
    fe_dist calls it for you in `fe.build`, `fe.Pipeline` and `fe.Estimator`.

    Args:
        comm: An mpi4py communicator whose ranks train together (for fe_dist inside an MPI
            program, e.g. on a sub-communicator). Needs Horovod built with MPI.
        backend: "local", "horovod" or None (choose from the environment).
    """
    global _context
    if _context is not None:
        if comm is not None:
            raise ConfigError("fe_dist.distributed.init(comm=...) came after the context was made. "
                              "Call it first, before fe.build, fe.Pipeline or fe.Estimator.")
        return _context
    backend = backend or os.environ.get("FE_DIST_BACKEND", "auto")
    if backend not in ("auto", "local", "horovod", "mpi"):
        raise ConfigError(f"Unknown fe_dist backend {backend!r}: use 'local', 'horovod', 'mpi' "
                          "or 'auto'.")
    if backend == "auto":
        backend = "horovod" if comm is not None or launched_distributed() else "local"
    if backend == "mpi":
        try:
            from fe_dist.distributed.mpi import MPIContext
        except ImportError as err:
            raise ConfigError(f"FE_DIST_BACKEND=mpi needs mpi4py ({err}): pip install mpi4py, "
                              "and launch with mpirun.") from err
        _context = MPIContext(comm=comm)
    elif backend == "horovod":
        try:
            from fe_dist.distributed.horovod import HorovodContext
        except ImportError as err:
            raise ConfigError(
                f"This process was launched for distributed training but Horovod is not usable "
                f"({err}). Install it (see README, 'bash .ci/setup'), or run with plain python "
                "for single-process training.") from err
        _context = HorovodContext(comm=comm)
    else:
        from fe_dist.distributed.local import LocalContext
        _context = LocalContext()
    return _context


def get_context() -> Context:
    """This process's context, made on first use."""
    return _context if _context is not None else init()


__all__ = ["ALLREDUCE_MODES", "COMPRESSIONS", "Context", "get_context", "init",
           "launched_distributed"]

"""The ranks of a run: one `Context` per process, made on first use.

The backend is chosen once per process (``FE_DIST_BACKEND=auto``, the default):

- plain ``python``: the local single-process context.
- launched by ``horovodrun --gloo`` (or elastic): Horovod.
- launched by an MPI launcher (``mpirun``, ``horovodrun --mpi``), or handed an mpi4py
  communicator with ``init(comm=...)``: fe_dist's own MPI backend (mpi4py collectives, one fused
  ``MPI_Allreduce`` per step, no Horovod background thread) when the ranks are CPU-only, mpi4py
  is installed and no ``HOROVOD_*`` setting is in the environment; Horovod otherwise (GPUs get
  its NCCL path; a ``HOROVOD_*`` setting says the user tunes Horovod). On CPU ranks the MPI backend
  measured 1.26x Horovod's throughput on the small-model benchmark (benchmarks/allreduce_knobs.py).

``FE_DIST_BACKEND=local|horovod|mpi`` forces a backend. This package is the only place in
fe_dist that imports horovod.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from fe_dist.distributed.context import Context, raised_on_every_rank
from fe_dist.distributed.gradients import (ALLREDUCE_MODES, COMPRESSIONS, GradientReducer,
                                          TrafficCounters)
from fe_dist.errors import ConfigError

# Set by horovodrun (Gloo and MPI), by Open MPI's mpirun, and by MPICH/PMIx launchers.
_LAUNCHER_VARIABLES = ("HOROVOD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")
_MPI_VARIABLES = _LAUNCHER_VARIABLES[1:]

_context: Context | None = None


def launched_distributed() -> bool:
    """True when a distributed launcher started this process."""
    return any(v in os.environ for v in _LAUNCHER_VARIABLES)


def _auto_backend(comm: Any) -> str:
    """The backend for ``FE_DIST_BACKEND=auto`` (see the module docstring)."""
    if comm is None and not launched_distributed():
        return "local"
    mpi_launch = comm is not None or any(v in os.environ for v in _MPI_VARIABLES)
    tunes_horovod = any(k.startswith("HOROVOD_") for k in os.environ)  # horovodrun --gloo too
    if mpi_launch and not tunes_horovod and importlib.util.find_spec("mpi4py") is not None:
        import tensorflow as tf
        if not tf.config.list_physical_devices("GPU"):
            return "mpi"
    return "horovod"


def init(comm: Any = None, backend: str | None = None) -> Context:
    """Make this process's context (once; later calls return the same one).

    Call it before creating TensorFlow tensors so the rank can be pinned to its GPU and threads;
    fe_dist calls it for you in `fe.build`, `fe.Pipeline` and `fe.Estimator`.

    Args:
        comm: An mpi4py communicator whose ranks train together (for fe_dist inside an MPI
            program, e.g. on a sub-communicator). With the Horovod backend, Horovod must be
            built with MPI.
        backend: "local", "horovod", "mpi" or None (choose from the environment).
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
        backend = _auto_backend(comm)
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


__all__ = ["ALLREDUCE_MODES", "COMPRESSIONS", "Context", "GradientReducer", "TrafficCounters",
           "get_context", "init", "launched_distributed", "raised_on_every_rank"]

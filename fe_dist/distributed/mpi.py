"""`MPIContext`: collectives straight through MPI (mpi4py), without Horovod.

The default for CPU ranks launched by ``mpirun`` or ``horovodrun --mpi`` (see
`fe_dist.distributed`), or forced with ``FE_DIST_BACKEND=mpi``. Horovod negotiates every
collective in a background thread and hands tensors through it; on CPU ranks that costs about a
third of the step on the small-model benchmark. Here each step's gradients are summed by one
blocking ``MPI_Allreduce`` of a single fused buffer, called from the step itself.

MPI has no 16-bit float type, so float16 buffers (``gradient_compression="fp16"``) travel as
2-byte elements (``MPI_UINT16_T``) and a user-defined MPI operation adds them as numpy float16:
the wire carries float16, as with Horovod's ``Compression.fp16``.
"""

from __future__ import annotations

import collections
from typing import Any, NoReturn

import numpy as np
import tensorflow as tf
from mpi4py import MPI

from fe_dist.distributed.context import ABORT_EXIT_CODE, Context, _write_stderr
from fe_dist.distributed.pinning import pin
from fe_dist.distributed.watchdog import Watchdog

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert

# Entries kept in `MPIContext.allreduce_log` (one per MPI_Allreduce; a long run drops the oldest).
LOG_LENGTH = 100_000


def _float16_sum(inbuf: Any, inoutbuf: Any, datatype: Any) -> None:
    """MPI reduction of float16 values sent as 2-byte elements: ``inoutbuf += inbuf``."""
    total = np.frombuffer(inoutbuf, dtype=np.float16)
    np.add(total, np.frombuffer(inbuf, dtype=np.float16), out=total)


class MPIContext(Context):
    """The ranks of an MPI communicator.

    Args:
        comm: The communicator to train on; None for ``MPI.COMM_WORLD``.
    """

    backend = "mpi"

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        super().__init__(rank=self.comm.rank, size=self.comm.size, local_rank=local.rank,
                         local_size=local.size)
        self.controller = "mpi4py"
        # What this backend handed to MPI_Allreduce: (element dtype, elements, bytes) per call,
        # so tests check the executed collectives rather than fe_dist's own counters.
        self.allreduce_log: collections.deque[tuple[str, int, int]] = collections.deque(
            maxlen=LOG_LENGTH)
        self._float16_op = MPI.Op.Create(_float16_sum, commute=True)
        self._start(*pin(self.local_rank, self.local_size))
        if self.size > 1:
            self.watchdog = Watchdog(self.rank, self.size)

    def abort(self, message: str) -> NoReturn:
        """Print ``message`` and end every rank with ``MPI_Abort``: a plain exit would block in
        ``MPI_Finalize`` while the other ranks wait in a collective."""
        _write_stderr(message)
        self.comm.Abort(ABORT_EXIT_CODE)
        raise SystemExit(ABORT_EXIT_CODE)  # not reached: MPI_Abort does not return

    def broadcast_object(self, obj: Any, name: str, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj: Any, name: str) -> list[Any]:
        return self.comm.allgather(obj)

    @_static_helper
    def _allreduce_sum(self, tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
        # One fused buffer per dtype group keeps it to one MPI call. MPI matches calls by order,
        # not name: every rank runs the same plan, and the op is stateful, so TensorFlow keeps
        # program order between reductions in a step.
        if self.size == 1:
            # The sum over one rank: no copy through numpy and MPI (`mpirun -np 1`, the
            # baseline of a scaling run, trains at the single process's speed).
            return list(tensors)
        dtype = tensors[0].dtype
        if any(t.dtype != dtype for t in tensors):
            return [self._allreduce_sum([t], name)[0] for t in tensors]
        flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)
        summed = tf.numpy_function(self._sum_buffer, [flat], dtype, stateful=True)
        summed.set_shape(flat.shape)
        sizes = [int(np.prod(t.shape.as_list())) for t in tensors]
        return [tf.reshape(part, t.shape) for part, t in zip(tf.split(summed, sizes), tensors)]

    def _sum_buffer(self, buffer: np.ndarray) -> np.ndarray:
        buffer = np.ascontiguousarray(buffer)
        out = np.empty_like(buffer)
        if buffer.dtype == np.float16:  # no MPI float16 type: 2-byte elements, our own sum
            self.comm.Allreduce([buffer.view(np.uint16), MPI.UINT16_T],
                                [out.view(np.uint16), MPI.UINT16_T], op=self._float16_op)
        else:
            self.comm.Allreduce(buffer, out, op=MPI.SUM)
        self.allreduce_log.append((buffer.dtype.name, buffer.size, buffer.nbytes))
        return out

    def _broadcast_tensor(self, tensor: tf.Tensor, name: str, root: int) -> tf.Tensor:
        value = np.array(tensor.numpy(), order="C").reshape(-1)  # 0-d values too
        self.comm.Bcast(value, root=root)
        return tf.reshape(tf.convert_to_tensor(value), tensor.shape)

    def barrier(self) -> None:
        self.comm.Barrier()

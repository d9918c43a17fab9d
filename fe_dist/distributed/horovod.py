"""`HorovodContext`: Horovod's core collectives (Gloo or MPI controller).

Horovod's Keras helpers (`hvd.keras`, `DistributedGradientTape`, `broadcast_variables`) target
Keras 2 and fail on Keras 3 variables, so only the core ops are used: `grouped_allreduce`,
`broadcast` on plain tensors, and the object collectives.
"""

from __future__ import annotations

from typing import Any

import horovod.tensorflow as hvd
import tensorflow as tf

from fe_dist.distributed.context import Context
from fe_dist.distributed.pinning import pin


class HorovodContext(Context):
    """Ranks launched by `horovodrun` or `mpirun`, or the ranks of an mpi4py communicator.

    Args:
        comm: An mpi4py communicator to train on (e.g. a sub-communicator of COMM_WORLD); None
            uses every launched rank.
    """

    backend = "horovod"

    def __init__(self, comm: Any = None) -> None:
        if comm is None:
            hvd.init()
        else:
            hvd.init(comm=comm)
        super().__init__(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),
                         local_size=hvd.local_size())
        self.controller = "mpi" if hvd.mpi_enabled() else "gloo"
        self._start(*pin(self.local_rank, self.local_size))

    def broadcast_object(self, obj: Any, name: str, root: int = 0) -> Any:
        return hvd.broadcast_object(obj, root_rank=root, name=name)

    def allgather_object(self, obj: Any, name: str) -> list[Any]:
        return hvd.allgather_object(obj, name=name)

    def _allreduce_sum(self, tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
        return hvd.grouped_allreduce(tensors, op=hvd.Sum, name=name)

    def _broadcast_tensor(self, tensor: tf.Tensor, name: str, root: int) -> tf.Tensor:
        return hvd.broadcast(tensor, root_rank=root, name=name)

    def barrier(self) -> None:
        # Horovod's TF binding has no barrier op; a tiny allreduce waits for every rank as well.
        self._allreduce_sum([tf.zeros([1])], name="fe.barrier")[0].numpy()

"""`LocalContext`: one process, no Horovod. The twin of `HorovodContext` for size 1."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from fe_dist.distributed.context import Context
from fe_dist.distributed.pinning import pin

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert


class LocalContext(Context):
    """A run of one rank: every collective is the identity."""

    backend = "local"

    def __init__(self) -> None:
        super().__init__(rank=0, size=1, local_rank=0, local_size=1)
        self._start(*pin(local_rank=0, local_size=1))

    def broadcast_object(self, obj: Any, name: str, root: int = 0) -> Any:
        return obj

    def allgather_object(self, obj: Any, name: str) -> list[Any]:
        return [obj]

    @_static_helper
    def _allreduce_sum(self, tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
        return list(tensors)

    def _broadcast_tensor(self, tensor: tf.Tensor, name: str, root: int) -> tf.Tensor:
        return tensor

    def barrier(self) -> None:
        pass

"""`TensorOp`: an op on whole batches of tensors, usable in a Pipeline or a Network."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from fe_dist.op.op import Op


class TensorOp(Op):
    """An op whose ``forward`` takes and returns batched ``tf.Tensor`` values."""


def map_inputs(fn: Callable[[tf.Tensor], tf.Tensor],
               data: tf.Tensor | list[tf.Tensor]) -> tf.Tensor | list[tf.Tensor]:
    """``fn`` applied to the one input tensor, or to each of several (one output per input)."""
    return [fn(x) for x in data] if isinstance(data, list) else fn(data)

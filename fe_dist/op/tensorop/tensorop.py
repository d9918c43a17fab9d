"""`TensorOp`: an op on whole batches of tensors, usable in a Pipeline or a Network."""

from fe_dist.op.op import Op


class TensorOp(Op):
    """An op whose ``forward`` takes and returns batched ``tf.Tensor`` values."""

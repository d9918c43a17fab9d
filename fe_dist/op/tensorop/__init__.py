"""Tensor ops: applied to whole batches, in the Pipeline (tf.data) or the Network."""

from fe_dist.op.tensorop.minmax import Minmax
from fe_dist.op.tensorop.resize import Resize
from fe_dist.op.tensorop.scale import Scale
from fe_dist.op.tensorop.tensorop import TensorOp

__all__ = ["Minmax", "Resize", "Scale", "TensorOp"]

"""FastEstimator 1.x's ``fe.op.tensorop``: fe_dist's tensor ops, under FastEstimator's names."""

from fe_dist.op.tensorop import Minmax, Resize, Scale, TensorOp
from fe_dist.fe1.op.tensorop import loss, model

__all__ = ["Minmax", "Resize", "Scale", "TensorOp", "loss", "model"]

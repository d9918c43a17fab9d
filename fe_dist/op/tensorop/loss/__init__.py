"""Loss ops: per-sample losses, and the eval metrics that go with them."""

from fe_dist.op.tensorop.loss.categorical_crossentropy import CategoricalCrossentropy
from fe_dist.op.tensorop.loss.loss import LossOp
from fe_dist.op.tensorop.loss.sparse_categorical_crossentropy import SparseCategoricalCrossentropy

__all__ = ["CategoricalCrossentropy", "LossOp", "SparseCategoricalCrossentropy"]

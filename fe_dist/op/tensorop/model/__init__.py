"""Ops that run a model."""

from fe_dist.op.tensorop.model.model import ModelOp

__all__ = ["ModelOp"]

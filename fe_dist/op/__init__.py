"""Ops: named transformations of a batch dictionary."""

from fe_dist.op.op import Op

__all__ = ["Op"]

"""FastEstimator 1.x's ``fe.op.numpyop.meta``."""

from fe_dist.op.numpyop.meta.one_of import OneOf
from fe_dist.op.numpyop.meta.sometimes import Sometimes

__all__ = ["OneOf", "Sometimes"]

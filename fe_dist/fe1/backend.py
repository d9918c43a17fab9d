"""FastEstimator 1.x's ``fe.backend``: to_number."""

from fe_dist.fe1.util import to_number

__all__ = ["to_number"]

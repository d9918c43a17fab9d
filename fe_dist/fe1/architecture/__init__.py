"""FastEstimator 1.x's ``fe.architecture``."""

from fe_dist.fe1.architecture import tensorflow

__all__ = ["tensorflow"]

"""FastEstimator 1.x's ``fe.dataset.data``: the data sets fe_dist ships (no downloads)."""

from fe_dist.fe1.dataset.data import mnist

__all__ = ["mnist"]

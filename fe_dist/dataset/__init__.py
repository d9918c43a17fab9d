"""Data sets that ship with fe_dist or load from local files (never from the network)."""

from fe_dist.dataset import mnist

__all__ = ["mnist"]

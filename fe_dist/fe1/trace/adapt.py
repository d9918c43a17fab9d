"""FastEstimator 1.x's ``fe.trace.adapt``: LRScheduler (times from 1) and EarlyStopping."""

from fe_dist.fe1.schedule import LRScheduler
from fe_dist.trace.adapt import EarlyStopping

__all__ = ["EarlyStopping", "LRScheduler"]
